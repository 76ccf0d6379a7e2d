//! Container and host metrics: ingest from agents, aggregated range queries and the
//! latest sample per series (`jdos metrics`, `jdos top`). A developer token sees only its
//! department's series.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::Json;
use jdos_types::metrics::{
    names, Aggregation, BucketFn, IngestSummary, LatestSample, MetricBatch, MetricPoint,
    MetricQuery, QueryResult, ResultSeries, SeriesSamples,
};
use jdos_types::Role;

use super::{Param, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{ApiJson, ApiQuery};
use crate::monitoring::MetricsStore;
use crate::openapi::Documented;
use crate::state::AppState;

/// Largest ingest body (a batch of ~1 M samples in JSON).
pub const MAX_INGEST_BYTES: usize = 64 << 20;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::POST,
            "/api/v1/metrics/ingest",
            ingest.layer(DefaultBodyLimit::max(MAX_INGEST_BYTES)),
        )
        .doc(
            "metrics",
            "Append a batch of samples (agents; admin tokens for imports)",
        )
        .accepts::<MetricBatch>()
        .returns::<IngestSummary>(),
        Route::new(
            Method::POST,
            "/api/v1/agents/{host}/metrics",
            agent_ingest.layer(DefaultBodyLimit::max(MAX_INGEST_BYTES)),
        )
        .doc(
            "metrics",
            "An agent's batch of its host's samples; Bearer = its agent token. The host label is forced to the agent's host and the department filled in from each app",
        )
        .accepts::<MetricBatch>()
        .returns::<IngestSummary>(),
        Route::new(Method::GET, "/api/v1/metrics/query", query)
            .doc(
                "metrics",
                "Aggregate a metric over a range at a step, optionally grouped by a label",
            )
            .query(&QUERY_PARAMS)
            .returns::<QueryResult>(),
        Route::new(Method::GET, "/api/v1/metrics/prometheus", prometheus)
            .doc(
                "metrics",
                "Latest container and host samples in the Prometheus text format, for scraping (metric optional)",
            )
            .query(&PROM_PARAMS)
            .returns_body(super::Body::Text),
        Route::new(Method::GET, "/api/v1/metrics/latest", latest)
            .doc(
                "metrics",
                "The newest sample of every series of a metric matching the filters",
            )
            .query(&QUERY_PARAMS[..9])
            .returns::<Vec<LatestSample>>(),
    ]
}

const QUERY_PARAMS: [Param; 15] = [
    Param {
        name: "metric",
        ty: "string",
        description: "metric name (container_cpu_usage_cores, host_load1 …)",
    },
    Param {
        name: "app",
        ty: "string",
        description: "only this app",
    },
    Param {
        name: "env",
        ty: "string",
        description: "only this env",
    },
    Param {
        name: "group",
        ty: "string",
        description: "only this group",
    },
    Param {
        name: "instance",
        ty: "string",
        description: "only this container identity",
    },
    Param {
        name: "host",
        ty: "string",
        description: "only this host",
    },
    Param {
        name: "department",
        ty: "string",
        description: "only this department",
    },
    Param {
        name: "datacenter",
        ty: "string",
        description: "only this datacenter",
    },
    Param {
        name: "interface",
        ty: "string",
        description: "only this network interface",
    },
    Param {
        name: "agg",
        ty: "string",
        description: "sum (default), avg, max, min or p95 across series",
    },
    Param {
        name: "fn",
        ty: "string",
        description:
            "per series within a step: mean (default), max, min, last, or rate (default for _total)",
    },
    Param {
        name: "by",
        ty: "string",
        description: "one result per value of this label: instance, group, app, host, department …",
    },
    Param {
        name: "start",
        ty: "integer",
        description: "unix ms (default end − 1 h)",
    },
    Param {
        name: "end",
        ty: "integer",
        description: "unix ms, exclusive (default now)",
    },
    Param {
        name: "step",
        ty: "integer",
        description:
            "ms (default range / 60, at least 10 s); whole hours read the hourly downsample",
    },
];

const PROM_PARAMS: [Param; 9] = [
    Param {
        name: "metric",
        ty: "string",
        description: "only this metric (default: all)",
    },
    QUERY_PARAMS[1],
    QUERY_PARAMS[2],
    QUERY_PARAMS[3],
    QUERY_PARAMS[4],
    QUERY_PARAMS[5],
    QUERY_PARAMS[6],
    QUERY_PARAMS[7],
    Param {
        name: "max_age",
        ty: "integer",
        description: "only series with a sample in the last this many seconds (default 300)",
    },
];

/// Query of the Prometheus export: filters plus how fresh a series must be.
/// (No `serde(flatten)` of [`MetricQuery`]: flattening breaks numbers in query strings.)
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
struct PromQuery {
    metric: String,
    app: Option<String>,
    env: Option<String>,
    group: Option<String>,
    instance: Option<String>,
    host: Option<String>,
    department: Option<String>,
    datacenter: Option<String>,
    max_age: Option<i64>,
}

async fn prometheus(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(pq): ApiQuery<PromQuery>,
) -> Result<impl axum::response::IntoResponse, HttpError> {
    let scope = scope(&caller)?;
    let q = MetricQuery {
        metric: pq.metric,
        app: pq.app,
        env: pq.env,
        group: pq.group,
        instance: pq.instance,
        host: pq.host,
        department: pq.department,
        datacenter: pq.datacenter,
        ..MetricQuery::default()
    };
    let sel = MetricsStore::selector_of(&q, scope.as_deref())?;
    let max_age = pq.max_age.unwrap_or(300);
    if max_age <= 0 {
        return Err(HttpError::invalid(
            "max_age",
            "max_age must be positive (seconds)",
        ));
    }
    let since = st.now_ms() as i64 - max_age * 1000;
    let tsdb = st.tsdb().clone();
    let text = tokio::task::spawn_blocking(move || tsdb.exposition(&sel, since))
        .await
        .map_err(|e| HttpError::internal(format!("export worker failed: {e}")))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

/// The department a caller's queries are limited to (developers only).
fn scope(caller: &Caller) -> Result<Option<String>, HttpError> {
    match caller.role {
        Role::Admin | Role::Ops => Ok(None),
        Role::Developer => caller.department.clone().map(Some).ok_or_else(|| {
            HttpError::forbidden("a developer token without a department sees no metrics")
        }),
    }
}

async fn ingest(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(batch): ApiJson<MetricBatch>,
) -> Result<Json<IngestSummary>, HttpError> {
    caller.require(&[Role::Admin], "push metrics")?;
    let tsdb = st.tsdb().clone();
    let span = tracing::debug_span!("metrics.ingest", actor = %caller.name);
    let summary = tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let labels = MetricsStore::labels_of(&batch, &[])?;
        tsdb.ingest(&batch, &labels)
    })
    .await
    .map_err(|e| HttpError::internal(format!("ingest worker failed: {e}")))??;
    Ok(Json(summary))
}

async fn agent_ingest(
    State(st): State<AppState>,
    super::agents::AgentBearer(token): super::agents::AgentBearer,
    crate::extract::ApiPath(host): crate::extract::ApiPath<String>,
    ApiJson(mut batch): ApiJson<MetricBatch>,
) -> Result<Json<IngestSummary>, HttpError> {
    super::agents::authenticate_agent(&st, &host, &token).await?;
    // Developers' views are scoped by department, so the department must come from the
    // app record, not from what an agent says.
    let mut departments: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in &mut batch.series {
        s.labels.remove("department");
        let Some(app) = s.labels.get("app").cloned() else {
            continue;
        };
        if !departments.contains_key(&app) {
            let d =
                crate::kv::get_json::<jdos_types::App>(st.store(), &jdos_types::keys::app(&app))
                    .await?
                    .map(|a| a.value.department);
            departments.insert(app.clone(), d);
        }
        if let Some(Some(d)) = departments.get(&app) {
            s.labels.insert("department".into(), d.clone());
        }
    }
    let tsdb = st.tsdb().clone();
    let span = tracing::debug_span!("metrics.agent_ingest", %host);
    let summary = tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let labels = MetricsStore::labels_of(&batch, &[("host", &host)])?;
        tsdb.ingest(&batch, &labels)
    })
    .await
    .map_err(|e| HttpError::internal(format!("ingest worker failed: {e}")))??;
    Ok(Json(summary))
}

async fn query(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<MetricQuery>,
) -> Result<Json<QueryResult>, HttpError> {
    let scope = scope(&caller)?;
    let tsdb = st.tsdb().clone();
    let now = st.now_ms() as i64;
    let r = tokio::task::spawn_blocking(move || tsdb.query(&q, now, scope.as_deref()))
        .await
        .map_err(|e| HttpError::internal(format!("query worker failed: {e}")))??;
    Ok(Json(r))
}

async fn latest(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<MetricQuery>,
) -> Result<Json<Vec<LatestSample>>, HttpError> {
    let scope = scope(&caller)?;
    let tsdb = st.tsdb().clone();
    let r = tokio::task::spawn_blocking(move || tsdb.latest(&q, scope.as_deref()))
        .await
        .map_err(|e| HttpError::internal(format!("query worker failed: {e}")))??;
    Ok(Json(r))
}

fn sample_labels() -> BTreeMap<String, String> {
    [
        ("app", "shop"),
        ("env", "production"),
        ("group", "web"),
        ("instance", "shop.production.web.0"),
        ("department", "retail"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Documented for MetricBatch {
    fn schema_name() -> String {
        "MetricBatch".into()
    }
    fn sample() -> Self {
        MetricBatch {
            common: [
                ("host".to_string(), "lf-h001".to_string()),
                ("datacenter".to_string(), "langfang".to_string()),
            ]
            .into(),
            series: vec![SeriesSamples {
                name: names::CONTAINER_CPU_USAGE.into(),
                labels: sample_labels(),
                t: vec![1_700_000_000_000, 1_700_000_010_000],
                v: vec![0.42, 0.47],
            }],
        }
    }
}

impl Documented for IngestSummary {
    fn schema_name() -> String {
        "IngestSummary".into()
    }
    fn sample() -> Self {
        IngestSummary {
            accepted: 2,
            out_of_order: 0,
            too_old: 0,
            invalid_series: 0,
            new_series: 1,
        }
    }
}

const AGGS: [&str; 5] = ["sum", "avg", "max", "min", "p95"];
const FNS: [&str; 5] = ["last", "mean", "max", "min", "rate"];

impl Documented for QueryResult {
    fn schema_name() -> String {
        "MetricQueryResult".into()
    }
    fn sample() -> Self {
        QueryResult {
            metric: names::CONTAINER_CPU_USAGE.into(),
            start: 1_700_000_000_000,
            end: 1_700_003_600_000,
            step: 60_000,
            agg: Aggregation::Sum,
            bucket: BucketFn::Mean,
            by: Some("group".into()),
            result: vec![ResultSeries {
                group: Some("web".into()),
                series: 3,
                points: vec![MetricPoint {
                    t: 1_700_000_000_000,
                    v: 1.25,
                    n: 3,
                }],
            }],
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("agg", AGGS.to_vec()), ("fn", FNS.to_vec())]
    }
}

impl Documented for LatestSample {
    fn schema_name() -> String {
        "LatestSample".into()
    }
    fn sample() -> Self {
        LatestSample {
            name: names::CONTAINER_CPU_USAGE.into(),
            labels: sample_labels(),
            t: 1_700_000_000_000,
            v: 0.42,
        }
    }
}
