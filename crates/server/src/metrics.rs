//! Prometheus metrics: request counts by route, method and status, a request
//! latency histogram by route and method, hosts by state and the store
//! revision, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Tables {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

/// In-process request metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `route` (the route template, not the raw path,
    /// so that the label set stays bounded).
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        *t.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let h = t
            .latency
            .entry((route.to_string(), method.to_string()))
            .or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
    }

    /// Renders the request metrics in the Prometheus text format.
    pub fn render_requests(&self, out: &mut String) {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP jdos_http_requests_total HTTP requests answered, by route template, method and status.\n");
        out.push_str("# TYPE jdos_http_requests_total counter\n");
        for ((route, method, status), n) in &t.requests {
            let _ = writeln!(
                out,
                "jdos_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP jdos_http_request_duration_seconds Time to answer an HTTP request.\n");
        out.push_str("# TYPE jdos_http_request_duration_seconds histogram\n");
        for ((route, method), h) in &t.latency {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "jdos_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "jdos_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "jdos_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "jdos_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The method as a metric label: the standard methods by name, anything else
/// as `other`. HTTP allows any token as a method and the label set must stay
/// bounded, or anonymous requests with made-up methods grow the tables (and
/// every scrape) without limit.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Middleware counting every request and timing it.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = method_label(req.method()).to_string();
    let span = tracing::debug_span!("request", %method, %route);
    let resp = tracing::Instrument::instrument(next.run(req), span).await;
    state.metrics().observe(
        &route,
        &method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
