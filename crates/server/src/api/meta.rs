//! Service endpoints: `/healthz`, `/metrics`, `/api/v1/openapi.json`, `/api/v1/whoami`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use jdos_types::api::WhoAmI;
use jdos_types::{keys, Host, HostState};
use serde_json::Value;

use super::{Body, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::kv;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", healthz)
            .doc("meta", "Liveness: answers ok")
            .returns_body(Body::Text)
            .public(),
        Route::new(Method::GET, "/metrics", metrics)
            .doc("meta", "Prometheus metrics (text exposition format)")
            .returns_body(Body::Text)
            .public(),
        Route::new(Method::GET, "/api/v1/openapi.json", openapi)
            .doc("meta", "This document")
            .returns_body(Body::AnyJson)
            .public(),
        Route::new(Method::GET, "/api/v1/whoami", whoami)
            .doc("meta", "The caller's token name, role and department")
            .returns::<WhoAmI>(),
    ]
}

async fn healthz() -> &'static str {
    "ok"
}

async fn openapi(Extension(doc): Extension<Arc<Value>>) -> Json<Value> {
    Json(doc.as_ref().clone())
}

async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.name,
        role: caller.role,
        department: caller.department,
    })
}

async fn metrics(State(st): State<AppState>) -> Result<impl IntoResponse, HttpError> {
    let mut out = String::new();
    st.metrics().render_requests(&mut out);
    // Hosts by state: a scan of the hosts, paid per scrape, not per request.
    let hosts: Vec<Host> = kv::list_all(st.store(), keys::HOSTS).await?;
    let mut by_state: BTreeMap<&str, u64> = [
        HostState::Ready,
        HostState::Suspect,
        HostState::Down,
        HostState::Draining,
        HostState::Degraded,
    ]
    .iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    let mut cordoned = 0u64;
    for h in &hosts {
        *by_state.entry(h.state.as_str()).or_default() += 1;
        cordoned += u64::from(h.cordoned);
    }
    out.push_str("# HELP jdos_hosts Registered hosts by state.\n# TYPE jdos_hosts gauge\n");
    for (s, n) in by_state {
        let _ = writeln!(out, "jdos_hosts{{state=\"{s}\"}} {n}");
    }
    out.push_str("# HELP jdos_hosts_cordoned Cordoned hosts.\n# TYPE jdos_hosts_cordoned gauge\n");
    let _ = writeln!(out, "jdos_hosts_cordoned {cordoned}");
    st.failover().metrics.render(&mut out);
    st.tsdb().render_own(&mut out);
    let rev = st.store().revision().await?;
    out.push_str("# HELP jdos_store_revision Current revision of the state store.\n# TYPE jdos_store_revision gauge\n");
    let _ = writeln!(out, "jdos_store_revision {rev}");
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}
