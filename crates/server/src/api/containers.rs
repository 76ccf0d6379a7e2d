//! Containers: list them by app, group, host or phase. A developer sees its
//! department's only.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_types::api::ListResponse;
use jdos_types::container::DesiredState;
use jdos_types::resources::MIB;
use jdos_types::{keys, Container, ContainerPhase, GroupKey, InstanceId, Resources};
use serde::Deserialize;

use super::list::PageParams;
use super::scope::AppScope;
use super::{Param, Route, PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/api/v1/containers", list_handler)
        .doc(
            "containers",
            "List containers (a developer sees its department's only)",
        )
        .query(&LIST_PARAMS)
        .returns::<ListResponse<Container>>()]
}

const LIST_PARAMS: [Param; 7] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "app",
        ty: "string",
        description: "only containers of this app",
    },
    Param {
        name: "env",
        ty: "string",
        description: "only this environment (with app)",
    },
    Param {
        name: "group",
        ty: "string",
        description: "only this group (with app and env)",
    },
    Param {
        name: "host",
        ty: "string",
        description: "only containers placed on this host",
    },
    Param {
        name: "phase",
        ty: "string",
        description: "only containers in this phase (running, starting, failed …)",
    },
];

/// Query of `GET /api/v1/containers`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerFilter {
    /// App.
    #[serde(default)]
    pub app: Option<String>,
    /// Environment.
    #[serde(default)]
    pub env: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Host.
    #[serde(default)]
    pub host: Option<String>,
    /// Phase.
    #[serde(default)]
    pub phase: Option<ContainerPhase>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ContainerFilter>,
) -> Result<Json<ListResponse<Container>>, HttpError> {
    let scope = AppScope::of(st.store(), &caller).await?;
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    // Narrow the scan to the most specific key prefix the filters allow.
    let prefix = match (&q.app, &q.env, &q.group) {
        (Some(a), Some(e), Some(g)) => keys::containers_of_group(&GroupKey::new(a, e, g)),
        (Some(a), Some(e), None) => format!("{}{e}/", keys::containers_of_app(a)),
        (Some(a), _, _) => keys::containers_of_app(a),
        _ => keys::CONTAINERS.to_string(),
    };
    let found = kv::scan_filtered(
        st.store(),
        &prefix,
        page.start_after(keys::CONTAINERS)?,
        page.limit()?,
        page.max_scan()?,
        |c: &Container| {
            scope.allows(&c.id.app)
                && q.env.as_ref().is_none_or(|e| &c.id.env == e)
                && q.group.as_ref().is_none_or(|g| &c.id.group == g)
                && q.host.as_ref().is_none_or(|h| c.host.as_ref() == Some(h))
                && q.phase.is_none_or(|p| c.phase == p)
        },
    )
    .await?;
    Ok(Json(super::list::to_response(found, keys::CONTAINERS)))
}

impl Documented for Container {
    fn schema_name() -> String {
        "Container".into()
    }
    fn sample() -> Self {
        Container {
            id: InstanceId::new(&GroupKey::new("web", "production", "web-lf"), 0),
            datacenter: "langfang".into(),
            host: Some("langfang-s1-r1-h1".into()),
            host_epoch: 1,
            network: Some("prod-a".into()),
            ip: Some(std::net::Ipv4Addr::new(10, 100, 0, 10)),
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(250, 64 * MIB),
            desired: DesiredState::Running,
            phase: ContainerPhase::Running,
            restarts: 0,
            message: "healthy".into(),
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            ("desired", vec!["running", "stopped", "deleted"]),
            (
                "phase",
                vec![
                    "pending",
                    "scheduled",
                    "starting",
                    "running",
                    "unhealthy",
                    "stopped",
                    "failed",
                    "lost",
                ],
            ),
        ]
    }
}
