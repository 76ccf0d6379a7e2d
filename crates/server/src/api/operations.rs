//! Operations on groups and apps, each answered with the task that carries
//! it out (`202 Accepted`; follow it with `GET /api/v1/tasks/{id}`):
//! scale, snapshot scale-out, batch scale, resize, migrate, rollout, delete.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_types::api::SnapshotScaleRequest;
use jdos_types::group::ContainerTemplate;
use jdos_types::{keys, App, Group, GroupKey, Role, Task};
use jdos_workflow::NewTask;
use serde::{Deserialize, Serialize};

use super::tasks::workflow_error;
use super::Route;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath};
use crate::kv;
use crate::openapi::Documented;
use crate::ops::{
    BatchScaleParams, DeleteAppParams, DeleteGroupParams, MigrateParams, ReplicaChange,
    ResizeParams, RollingParams, ScaleParams, Selector, SnapshotScaleParams,
};
use crate::state::AppState;

const GROUP: &str = "/api/v1/groups/{app}/{env}/{group}";

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/groups/{app}/{env}/{group}/scale", scale_handler)
            .doc("operations", "Scale a group to a number of replicas (a scale task)")
            .accepts::<ScaleRequest>()
            .returns::<Task>()
            .status(202),
        Route::new(
            Method::POST,
            "/api/v1/groups/{app}/{env}/{group}/snapshot-scale",
            snapshot_scale_handler,
        )
        .doc(
            "operations",
            "Commit a running container of a group to an image and scale out with clones of it (a snapshot_scale task)",
        )
        .accepts::<SnapshotScaleRequest>()
        .returns::<Task>()
        .status(202),
        Route::new(Method::POST, "/api/v1/groups/{app}/{env}/{group}/resize", resize_handler)
            .doc(
                "operations",
                "Resize a group's containers: live where the host has room, else migrated (a resize task)",
            )
            .accepts::<ResizeRequest>()
            .returns::<Task>()
            .status(202),
        Route::new(Method::POST, "/api/v1/groups/{app}/{env}/{group}/migrate", migrate_handler)
            .doc(
                "operations",
                "Move containers of a group to other hosts with the same IPs (a migrate task)",
            )
            .accepts::<MigrateRequest>()
            .returns::<Task>()
            .status(202),
        Route::new(Method::POST, "/api/v1/groups/{app}/{env}/{group}/rollout", rollout_handler)
            .doc(
                "operations",
                "Rolling restart or update of a group, max_unavailable at a time (a rolling task)",
            )
            .accepts::<RolloutRequest>()
            .returns::<Task>()
            .status(202),
        Route::new(Method::DELETE, GROUP, delete_group_handler)
            .doc(
                "operations",
                "Delete a group: pre-stop hooks, remove its containers, then the group (a delete_group task)",
            )
            .returns::<Task>()
            .status(202),
        Route::new(Method::POST, "/api/v1/apps/{name}/delete", delete_app_handler)
            .doc(
                "operations",
                "Delete an app with all its groups and containers (a delete_app task)",
            )
            .returns::<Task>()
            .status(202),
        Route::new(Method::POST, "/api/v1/scale", batch_handler)
            .doc(
                "operations",
                "Scale every group a selector picks by N, +N, -N or ±P% (a batch_scale task with a scale task per group)",
            )
            .accepts::<BatchScaleParams>()
            .returns::<Task>()
            .status(202),
    ]
}

const OP_ROLES: &[Role] = &[Role::Admin, Role::Ops, Role::Developer];

/// Body of `POST …/scale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// Target replicas.
    pub replicas: u32,
    /// Seconds to wait for new containers to run (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Body of `POST …/resize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeRequest {
    /// New cpu in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// New memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Seconds to wait for migrated containers (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Body of `POST …/migrate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateRequest {
    /// Container indexes to move …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<u32>,
    /// … or every container of the group on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// Seconds each phase may wait (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Body of `POST …/rollout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRequest {
    /// Containers down at once (default 1).
    #[serde(default = "one")]
    pub max_unavailable: u32,
    /// Restart even containers whose template did not change.
    #[serde(default)]
    pub restart: bool,
    /// A new template (absent: restart with the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<ContainerTemplate>>,
    /// Seconds each batch may take (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

/// The group and its app's department, checking the caller may act on it.
async fn group_in_scope(
    st: &AppState,
    caller: &Caller,
    key: &GroupKey,
) -> Result<(Group, String), HttpError> {
    caller.require(OP_ROLES, "operate groups")?;
    let app = kv::get_json::<App>(st.store(), &keys::app(&key.app))
        .await?
        .ok_or_else(|| HttpError::not_found("app", &key.app))?
        .value;
    caller.require_scope(&app.department, &format!("app {:?}", key.app))?;
    let group = kv::get_json::<Group>(st.store(), &keys::group(key))
        .await?
        .ok_or_else(|| HttpError::not_found("group", &key.to_string()))?
        .value;
    Ok((group, app.department))
}

/// Submits a task on behalf of `caller`.
async fn submit(
    st: &AppState,
    mut req: NewTask,
    department: Option<String>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    req.department = department;
    let engine = st.require_engine()?;
    let task = engine.submit(req).await.map_err(workflow_error)?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

fn draft(
    st: &AppState,
    caller: &Caller,
    action: &str,
    key: &GroupKey,
) -> crate::events::EventDraft {
    let mut d = st.draft(caller, action, "group", &key.to_string());
    d.app = Some(key.app.clone());
    d
}

async fn scale_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<ScaleRequest>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.scale", &key), async {
        let p = ScaleParams {
            group: key.clone(),
            replicas: body.replicas,
            timeout_secs: body.timeout_secs,
        };
        p.validate()?;
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn snapshot_scale_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<SnapshotScaleRequest>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.snapshot_scale", &key), async {
        let p = SnapshotScaleParams {
            group: key.clone(),
            replicas: body.replicas,
            source_index: body.source_index,
            any_host: body.any_host,
            timeout_secs: body.timeout_secs,
        };
        p.validate()?;
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn resize_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<ResizeRequest>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.resize", &key), async {
        let p = ResizeParams {
            group: key.clone(),
            cpu_millis: body.cpu_millis,
            memory_bytes: body.memory_bytes,
            timeout_secs: body.timeout_secs,
        };
        p.validate()?;
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn migrate_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<MigrateRequest>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.migrate", &key), async {
        let p = MigrateParams {
            group: key.clone(),
            indexes: body.indexes,
            from_host: body.from_host,
            timeout_secs: body.timeout_secs,
        };
        p.validate()?;
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn rollout_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.rollout", &key), async {
        let p = RollingParams {
            group: key.clone(),
            max_unavailable: body.max_unavailable,
            restart: body.restart || body.template.is_none(),
            template: body.template,
            timeout_secs: body.timeout_secs,
        };
        p.validate()?;
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn delete_group_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    st.audited(draft(&st, &caller, "group.delete", &key), async {
        let (_, dept) = group_in_scope(&st, &caller, &key).await?;
        let p = DeleteGroupParams {
            group: key.clone(),
            timeout_secs: None,
        };
        submit(&st, p.task(&caller.name), Some(dept)).await
    })
    .await
}

async fn delete_app_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let mut d = st.draft(&caller, "app.delete", "app", &name);
    d.app = Some(name.clone());
    st.audited(d, async {
        caller.require(OP_ROLES, "delete apps")?;
        let app = kv::get_json::<App>(st.store(), &keys::app(&name))
            .await?
            .ok_or_else(|| HttpError::not_found("app", &name))?
            .value;
        caller.require_scope(&app.department, &format!("app {name:?}"))?;
        let p = DeleteAppParams {
            app: name.clone(),
            timeout_secs: None,
        };
        submit(&st, p.task(&caller.name), Some(app.department)).await
    })
    .await
}

async fn batch_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(mut p): ApiJson<BatchScaleParams>,
) -> Result<(StatusCode, Json<Task>), HttpError> {
    let d = st.draft(&caller, "group.batch_scale", "groups", &p.selector.render());
    st.audited(d, async {
        caller.require(OP_ROLES, "scale groups")?;
        if caller.role == Role::Developer {
            // A developer's batch is its own department's.
            match (&p.selector.department, &caller.department) {
                (None, Some(mine)) => p.selector.department = Some(mine.clone()),
                (Some(d), mine) if Some(d) != mine.as_ref() => {
                    return Err(HttpError::forbidden(
                        "a developer token scales its own department's groups only",
                    )
                    .with_field("selector.department"))
                }
                _ => {}
            }
        }
        p.validate()?;
        let dept = p.selector.department.clone();
        submit(&st, p.task(&caller.name), dept).await
    })
    .await
}

impl Documented for ScaleRequest {
    fn schema_name() -> String {
        "ScaleRequest".into()
    }
    fn sample() -> Self {
        ScaleRequest {
            replicas: 40,
            timeout_secs: Some(300),
        }
    }
}

impl Documented for SnapshotScaleRequest {
    fn schema_name() -> String {
        "SnapshotScaleRequest".into()
    }
    fn sample() -> Self {
        SnapshotScaleRequest {
            replicas: 12,
            source_index: Some(0),
            any_host: false,
            timeout_secs: Some(300),
        }
    }
}

impl Documented for ResizeRequest {
    fn schema_name() -> String {
        "ResizeRequest".into()
    }
    fn sample() -> Self {
        ResizeRequest {
            cpu_millis: Some(500),
            memory_bytes: Some(256 << 20),
            timeout_secs: Some(300),
        }
    }
}

impl Documented for MigrateRequest {
    fn schema_name() -> String {
        "MigrateRequest".into()
    }
    fn sample() -> Self {
        MigrateRequest {
            indexes: vec![3, 7],
            from_host: Some("lf-r1-h07".into()),
            timeout_secs: Some(300),
        }
    }
}

impl Documented for RolloutRequest {
    fn schema_name() -> String {
        "RolloutRequest".into()
    }
    fn sample() -> Self {
        RolloutRequest {
            max_unavailable: 2,
            restart: false,
            template: Some(Box::new(ContainerTemplate {
                image: "jdos-busybox:latest".into(),
                command: vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()],
                resources: jdos_types::Resources::new(250, 64 << 20),
                ports: vec![80],
                ..Default::default()
            })),
            timeout_secs: Some(300),
        }
    }
}

impl Documented for BatchScaleParams {
    fn schema_name() -> String {
        "BatchScaleRequest".into()
    }
    fn sample() -> Self {
        BatchScaleParams {
            selector: Selector {
                department: Some("retail".into()),
                labels: [("tier".to_string(), "web".to_string())].into(),
                env: Some("production".into()),
                datacenter: Some("langfang".into()),
            },
            replicas: ReplicaChange::Percent(50),
            timeout_secs: Some(300),
        }
    }
}
