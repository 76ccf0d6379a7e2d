//! `GET /api/v1/events`: the audit trail, filtered and paginated. A
//! developer sees only its department's events.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_types::api::ListResponse;
use std::time::Duration;

use jdos_types::api::EventHead;
use jdos_types::{keys, Event, EventResult, Role};
use serde::Deserialize;

use super::list::{PageParams, MAX_LIMIT, SCAN_FACTOR};
use super::{Param, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/events", list_handler)
            .doc(
                "events",
                "List events, oldest first; with wait_ms, long-poll for the next matching one",
            )
            .query(&PARAMS)
            .returns::<ListResponse<Event>>(),
        Route::new(Method::GET, "/api/v1/events/head", head_handler)
            .doc(
                "events",
                "The newest event sequence number: follow the trail from here with after=",
            )
            .returns::<EventHead>(),
    ]
}

const PARAMS: [Param; 10] = [
    Param {
        name: "app",
        ty: "string",
        description: "only events of this app",
    },
    Param {
        name: "object_kind",
        ty: "string",
        description: "only events about this kind of object (host, app, token…)",
    },
    Param {
        name: "object",
        ty: "string",
        description: "only events about this object",
    },
    Param {
        name: "action",
        ty: "string",
        description: "only this action (host.cordon…)",
    },
    Param {
        name: "result",
        ty: "string",
        description: "only events with this result (success, failure)",
    },
    Param {
        name: "since_ms",
        ty: "integer",
        description: "only events at or after this unix time in ms",
    },
    Param {
        name: "after_seq",
        ty: "integer",
        description: "only events after this sequence number (to follow the trail; alias `after`)",
    },
    Param {
        name: "wait_ms",
        ty: "integer",
        description: "long-poll: when nothing matches yet, wait up to this long (at most 30000) for a matching event",
    },
    Param {
        name: "limit",
        ty: "integer",
        description: "page size (default 500, at most 5000)",
    },
    Param {
        name: "continue",
        ty: "string",
        description: "the `continue` of the previous page",
    },
];

/// Query of `GET /api/v1/events`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventFilter {
    /// App.
    #[serde(default)]
    pub app: Option<String>,
    /// Object kind.
    #[serde(default)]
    pub object_kind: Option<String>,
    /// Object.
    #[serde(default)]
    pub object: Option<String>,
    /// Action.
    #[serde(default)]
    pub action: Option<String>,
    /// Unix ms lower bound.
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Result.
    #[serde(default)]
    pub result: Option<EventResult>,
    /// Sequence lower bound (exclusive).
    #[serde(default, alias = "after")]
    pub after_seq: Option<u64>,
    /// Long-poll: wait up to this many ms for a first match.
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation: the last sequence number seen.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn head_handler(
    State(st): State<AppState>,
    _caller: Caller,
) -> Result<Json<EventHead>, HttpError> {
    let seq = kv::get_json::<u64>(st.store(), crate::events::EVENT_SEQ_KEY)
        .await?
        .map_or(0, |v| v.value);
    Ok(Json(EventHead { seq }))
}

impl Documented for EventHead {
    fn schema_name() -> String {
        "EventHead".into()
    }
    fn sample() -> Self {
        EventHead { seq: 4242 }
    }
}

/// Longest a long-poll waits.
pub const MAX_WAIT_MS: u64 = 30_000;

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventFilter>,
) -> Result<Json<ListResponse<Event>>, HttpError> {
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    if wait.is_zero() {
        return Ok(Json(list(&st, &caller, &q).await?));
    }
    // Long-poll: watch the events prefix from before the first read, so an
    // event committed between the read and the watch is not missed.
    let from = st.store().revision().await? + 1;
    let first = list(&st, &caller, &q).await?;
    if !first.items.is_empty() || first.continue_token.is_some() {
        return Ok(Json(first));
    }
    let mut watch = st.store().watch(keys::EVENTS, from).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            // Nothing new before the deadline: an empty page.
            Err(_) => return Ok(Json(first)),
            // The store ended the watch (shutdown, or this watcher fell
            // behind): answer what is there; the client asks again.
            Ok(None) => return Ok(Json(list(&st, &caller, &q).await?)),
            Ok(Some(batch)) => {
                batch?;
                let page = list(&st, &caller, &q).await?;
                if !page.items.is_empty() || page.continue_token.is_some() {
                    return Ok(Json(page));
                }
            }
        }
    }
}

/// One page of the events `q` selects that the caller may see.
pub async fn list(
    st: &AppState,
    caller: &Caller,
    q: &EventFilter,
) -> Result<ListResponse<Event>, HttpError> {
    let page = PageParams {
        limit: q.limit,
        continue_token: None,
    };
    let limit = page.limit()?;
    let after = match &q.continue_token {
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            HttpError::invalid(
                "continue",
                "bad continue token: pass the `continue` of the previous page",
            )
        })?),
        None => None,
    };
    let after = after.max(q.after_seq);
    let developer_dept =
        (caller.role == Role::Developer).then(|| caller.department.clone().unwrap_or_default());
    let found = kv::scan_filtered(
        st.store(),
        keys::EVENTS,
        after.map(keys::event),
        limit,
        (limit * SCAN_FACTOR).max(MAX_LIMIT),
        |e: &Event| {
            developer_dept
                .as_ref()
                .is_none_or(|d| e.department.as_ref() == Some(d))
                && q.app.as_ref().is_none_or(|a| e.app.as_ref() == Some(a))
                && q.object_kind.as_ref().is_none_or(|k| &e.object_kind == k)
                && q.object.as_ref().is_none_or(|o| &e.object == o)
                && q.action.as_ref().is_none_or(|a| &e.action == a)
                && q.result.is_none_or(|r| e.result == r)
                && q.since_ms.is_none_or(|t| e.time_ms >= t)
        },
    )
    .await?;
    let continue_token = found
        .continue_after
        .as_deref()
        .and_then(|k| k.strip_prefix(keys::EVENTS))
        .and_then(|s| s.parse::<u64>().ok())
        .map(|n| n.to_string());
    Ok(ListResponse {
        items: found.items,
        continue_token,
    })
}
