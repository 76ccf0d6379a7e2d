//! Apps: create, list, get, replace, delete. A developer token sees and
//! changes only its own department's apps.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::api::ListResponse;
use jdos_types::{keys, App, Role, Validate};
use serde::Deserialize;

use super::list::PageParams;
use super::{Param, Route, PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::Mutation;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv::{self, Versioned};
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/apps", create_handler)
            .doc("apps", "Create an app")
            .accepts::<App>()
            .returns::<App>()
            .status(201),
        Route::new(Method::GET, "/api/v1/apps", list_handler)
            .doc("apps", "List apps (a developer sees its department's only)")
            .query(&LIST_PARAMS)
            .returns::<ListResponse<App>>(),
        Route::new(Method::GET, "/api/v1/apps/{name}", get_handler)
            .doc("apps", "Get an app")
            .returns::<App>(),
        Route::new(Method::PUT, "/api/v1/apps/{name}", replace_handler)
            .doc(
                "apps",
                "Replace an app's owner, department, level, description and labels",
            )
            .accepts::<App>()
            .returns::<App>(),
        Route::new(Method::DELETE, "/api/v1/apps/{name}", delete_handler)
            .doc(
                "apps",
                "Delete an app that has no groups left; answers the deleted app",
            )
            .returns::<App>(),
    ]
}

const LIST_PARAMS: [Param; 3] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "department",
        ty: "string",
        description: "only apps of this department",
    },
];

const APP_ROLES: &[Role] = &[Role::Admin, Role::Ops, Role::Developer];

fn app_draft(
    st: &AppState,
    caller: &Caller,
    action: &str,
    name: &str,
) -> crate::events::EventDraft {
    let mut d = st.draft(caller, action, "app", name);
    d.app = Some(name.to_string());
    d
}

async fn create_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(app): ApiJson<App>,
) -> Result<(StatusCode, Json<App>), HttpError> {
    let draft = app_draft(&st, &caller, "app.create", &app.name);
    st.audited(draft, async {
        caller.require(APP_ROLES, "create apps")?;
        Ok((StatusCode::CREATED, Json(create(&st, &caller, app).await?)))
    })
    .await
}

/// Creates an app; 409 when one of that name exists.
#[tracing::instrument(skip_all, fields(app = %app.name))]
pub async fn create(st: &AppState, caller: &Caller, mut app: App) -> Result<App, HttpError> {
    app.validate()?;
    caller.require_scope(&app.department, &format!("app {:?}", app.name))?;
    app.created_at_ms = st.now_ms();
    let key = keys::app(&app.name);
    st.mutate(|| {
        let app = app.clone();
        let key = key.clone();
        async move {
            if let Some(cur) = kv::get_json::<App>(st.store(), &key).await? {
                // App names are global, so the conflict itself must be told;
                // whose app it is is told only to a caller who may see it.
                let message = if caller.in_scope(&cur.value.department) {
                    format!(
                        "app {:?} already exists (department {:?}): pick another name or update it with PUT",
                        app.name, cur.value.department
                    )
                } else {
                    format!(
                        "app {:?} already exists in another department: pick another name",
                        app.name
                    )
                };
                return Err(HttpError::conflict(message).with_field("name"));
            }
            let m = Mutation {
                compares: vec![Compare::absent(key.as_str())],
                ops: vec![TxnOp::put(key.as_str(), json::encode(&app)?)],
                event: app_draft(st, caller, "app.create", &app.name)
                    .app(&app.name, &app.department)
                    .message(format!("owner {}, level {}", app.owner, app.business_level.as_str())),
            };
            Ok((m, app))
        }
    })
    .await
}

/// Query of `GET /api/v1/apps`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppFilter {
    /// Only this department.
    #[serde(default)]
    pub department: Option<String>,
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
    ApiQuery(q): ApiQuery<AppFilter>,
) -> Result<Json<ListResponse<App>>, HttpError> {
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    let found = page
        .list(st.store(), keys::APPS, |a: &App| {
            caller.in_scope(&a.department)
                && q.department.as_ref().is_none_or(|d| &a.department == d)
        })
        .await?;
    Ok(Json(found))
}

async fn get_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<App>, HttpError> {
    let app = load(&st, &name).await?.value;
    caller.require_scope(&app.department, &format!("app {name:?}"))?;
    Ok(Json(app))
}

async fn replace_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(app): ApiJson<App>,
) -> Result<Json<App>, HttpError> {
    let draft = app_draft(&st, &caller, "app.update", &name);
    st.audited(draft, async {
        caller.require(APP_ROLES, "change apps")?;
        Ok(Json(replace(&st, &caller, &name, app).await?))
    })
    .await
}

/// Replaces an existing app (its name and creation time stay).
#[tracing::instrument(skip(st, caller, app))]
pub async fn replace(
    st: &AppState,
    caller: &Caller,
    name: &str,
    app: App,
) -> Result<App, HttpError> {
    let mut errs = app.validate().err().unwrap_or_default();
    if app.name != name {
        errs.add(
            "name",
            "mismatch",
            format!(
                "the body's name {:?} differs from the path's {name:?}: apps cannot be renamed",
                app.name
            ),
        );
    }
    errs.into_result()?;
    st.mutate(|| {
        let app = app.clone();
        async move {
            let cur = load(st, name).await?;
            caller.require_scope(&cur.value.department, &format!("app {name:?}"))?;
            caller.require_scope(
                &app.department,
                &format!("the new department of app {name:?}"),
            )?;
            let mut next = app;
            next.created_at_ms = cur.value.created_at_ms;
            let m = Mutation {
                compares: vec![Compare::mod_revision(keys::app(name), cur.mod_revision)],
                ops: vec![TxnOp::put(keys::app(name), json::encode(&next)?)],
                event: app_draft(st, caller, "app.update", name)
                    .app(name, &next.department)
                    .message(if cur.value.department != next.department {
                        format!("moved from department {}", cur.value.department)
                    } else {
                        "updated".to_string()
                    }),
            };
            Ok((m, next))
        }
    })
    .await
}

async fn delete_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<App>, HttpError> {
    let draft = app_draft(&st, &caller, "app.delete", &name);
    st.audited(draft, async {
        caller.require(APP_ROLES, "delete apps")?;
        Ok(Json(delete(&st, &caller, &name).await?))
    })
    .await
}

/// Deletes an app with no groups and no containers left.
#[tracing::instrument(skip(st, caller))]
pub async fn delete(st: &AppState, caller: &Caller, name: &str) -> Result<App, HttpError> {
    st.mutate(|| async move {
        let cur = load(st, name).await?;
        caller.require_scope(&cur.value.department, &format!("app {name:?}"))?;
        if kv::any_under(st.store(), &keys::groups_of_app(name)).await?
            || kv::any_under(st.store(), &keys::containers_of_app(name)).await?
        {
            return Err(HttpError::conflict(format!(
                "app {name:?} still has groups or containers: scale them to zero and delete them first"
            )));
        }
        let m = Mutation {
            compares: vec![Compare::mod_revision(keys::app(name), cur.mod_revision)],
            ops: vec![TxnOp::delete(keys::app(name))],
            event: app_draft(st, caller, "app.delete", name).app(name, &cur.value.department),
        };
        Ok((m, cur.value))
    })
    .await
}

/// Reads an app, 404 when missing.
pub async fn load(st: &AppState, name: &str) -> Result<Versioned<App>, HttpError> {
    kv::get_json(st.store(), &keys::app(name))
        .await?
        .ok_or_else(|| HttpError::not_found("app", name))
}
