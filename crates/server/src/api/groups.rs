//! Groups: list and describe. Groups are written by `POST /api/v1/apply`
//! and changed by the operations (scale, resize, …); a developer sees its
//! department's only.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_types::api::{GroupDetail, ListResponse};
use jdos_types::{keys, Container, Group, GroupKey};
use serde::Deserialize;

use super::apps;
use super::list::PageParams;
use super::scope::AppScope;
use super::{Param, Route, PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{ApiPath, ApiQuery};
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/groups", list_handler)
            .doc(
                "groups",
                "List groups (a developer sees its department's only)",
            )
            .query(&LIST_PARAMS)
            .returns::<ListResponse<Group>>(),
        Route::new(
            Method::GET,
            "/api/v1/groups/{app}/{env}/{group}",
            get_handler,
        )
        .doc("groups", "Get a group with its containers")
        .returns::<GroupDetail>(),
    ]
}

const LIST_PARAMS: [Param; 5] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "app",
        ty: "string",
        description: "only groups of this app",
    },
    Param {
        name: "env",
        ty: "string",
        description: "only groups of this environment",
    },
    Param {
        name: "datacenter",
        ty: "string",
        description: "only groups in this datacenter",
    },
];

/// Query of `GET /api/v1/groups`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupFilter {
    /// App.
    #[serde(default)]
    pub app: Option<String>,
    /// Environment.
    #[serde(default)]
    pub env: Option<String>,
    /// Datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
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
    ApiQuery(q): ApiQuery<GroupFilter>,
) -> Result<Json<ListResponse<Group>>, HttpError> {
    let scope = AppScope::of(st.store(), &caller).await?;
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    // An app filter narrows the scan to that app's keys; the continuation
    // stays relative to the groups prefix so both forms page alike.
    let prefix = match &q.app {
        Some(a) => keys::groups_of_app(a),
        None => keys::GROUPS.to_string(),
    };
    let found = kv::scan_filtered(
        st.store(),
        &prefix,
        page.start_after(keys::GROUPS)?,
        page.limit()?,
        page.max_scan()?,
        |g: &Group| {
            scope.allows(&g.app)
                && q.env.as_ref().is_none_or(|e| &g.env == e)
                && q.datacenter.as_ref().is_none_or(|d| &g.datacenter == d)
        },
    )
    .await?;
    Ok(Json(super::list::to_response(found, keys::GROUPS)))
}

async fn get_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
) -> Result<Json<GroupDetail>, HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    Ok(Json(describe(&st, &caller, &key).await?))
}

/// A group and its containers; 404 when missing, 403 outside the caller's
/// department.
pub async fn describe(
    st: &AppState,
    caller: &Caller,
    key: &GroupKey,
) -> Result<GroupDetail, HttpError> {
    let a = apps::load(st, &key.app).await?;
    caller.require_scope(&a.value.department, &format!("app {:?}", key.app))?;
    let group = load(st, key).await?;
    let containers: Vec<Container> =
        kv::list_all(st.store(), &keys::containers_of_group(key)).await?;
    Ok(GroupDetail { group, containers })
}

/// Reads a group, 404 when missing.
pub async fn load(st: &AppState, key: &GroupKey) -> Result<Group, HttpError> {
    Ok(kv::get_json::<Group>(st.store(), &keys::group(key))
        .await?
        .ok_or_else(|| HttpError::not_found("group", &key.to_string()))?
        .value)
}

impl Documented for Group {
    fn schema_name() -> String {
        "Group".into()
    }
    fn sample() -> Self {
        let (_, groups) = jdos_types::AppSpec::sample()
            .to_records()
            .expect("the AppSpec sample is valid");
        groups.into_iter().next().expect("the sample has a group")
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            ("strategy", vec!["spread", "binpack"]),
            ("mode", vec!["reactive", "predictive"]),
        ]
    }
}

impl Documented for GroupDetail {
    fn schema_name() -> String {
        "GroupDetail".into()
    }
    fn sample() -> Self {
        GroupDetail {
            group: Group::sample(),
            containers: vec![Container::sample()],
        }
    }
}
