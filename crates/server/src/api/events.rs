//! `GET /api/v1/events`: the audit trail, filtered and paginated. A
//! developer sees only its department's events.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_types::api::ListResponse;
use jdos_types::{keys, Event, Role};
use serde::Deserialize;

use super::list::{PageParams, MAX_LIMIT, SCAN_FACTOR};
use super::{Param, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::kv;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/api/v1/events", list_handler)
        .doc("events", "List events, oldest first")
        .query(&PARAMS)
        .returns::<ListResponse<Event>>()]
}

const PARAMS: [Param; 8] = [
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
        name: "since_ms",
        ty: "integer",
        description: "only events at or after this unix time in ms",
    },
    Param {
        name: "after_seq",
        ty: "integer",
        description: "only events after this sequence number (to follow the trail)",
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
    /// Sequence lower bound (exclusive).
    #[serde(default)]
    pub after_seq: Option<u64>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation: the last sequence number seen.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventFilter>,
) -> Result<Json<ListResponse<Event>>, HttpError> {
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
    Ok(Json(ListResponse {
        items: found.items,
        continue_token,
    }))
}
