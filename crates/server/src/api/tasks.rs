//! Tasks of the workflow engine: list, get (the step timeline), cancel. A
//! developer sees and cancels only its department's tasks.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_types::api::ListResponse;
use jdos_types::task::{Progress, Step};
use jdos_types::{Role, Task, TaskState};
use jdos_workflow::{TaskFilter, WorkflowError};
use serde::Deserialize;

use super::{Param, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/tasks", list_handler)
            .doc("tasks", "List tasks, newest first (a developer sees its department's only)")
            .query(&LIST_PARAMS)
            .returns::<ListResponse<Task>>(),
        Route::new(Method::GET, "/api/v1/tasks/{id}", get_handler)
            .doc("tasks", "Get a task with its step timeline and progress")
            .returns::<Task>(),
        Route::new(Method::POST, "/api/v1/tasks/{id}/cancel", cancel_handler)
            .doc(
                "tasks",
                "Cancel a task: a pending one at once, a running one at its next step boundary (then its compensation runs)",
            )
            .returns::<Task>(),
    ]
}

const LIST_PARAMS: [Param; 6] = [
    Param {
        name: "app",
        ty: "string",
        description: "only tasks of this app",
    },
    Param {
        name: "state",
        ty: "string",
        description: "only tasks in this state (pending, running, succeeded, failed, cancelled)",
    },
    Param {
        name: "kind",
        ty: "string",
        description: "only tasks of this kind (deploy, scale, batch_scale, resize, migrate, rolling, delete_group, delete_app)",
    },
    Param {
        name: "department",
        ty: "string",
        description: "only tasks of this department",
    },
    Param {
        name: "active",
        ty: "boolean",
        description: "only unfinished tasks",
    },
    Param {
        name: "limit",
        ty: "integer",
        description: "at most this many (default 100, at most 5000)",
    },
];

/// Query of `GET /api/v1/tasks`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskQuery {
    /// App.
    #[serde(default)]
    pub app: Option<String>,
    /// State.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// Kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Department.
    #[serde(default)]
    pub department: Option<String>,
    /// Unfinished only.
    #[serde(default)]
    pub active: bool,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
}

const READ_ROLES: &[Role] = &[Role::Admin, Role::Ops, Role::Developer];

/// A workflow error as an API error.
pub fn workflow_error(e: WorkflowError) -> HttpError {
    match &e {
        WorkflowError::NotFound(id) => HttpError::not_found("task", id),
        WorkflowError::Invalid { field, message } => HttpError::invalid(field, message.clone()),
        WorkflowError::UnknownKind(_) => HttpError::invalid("kind", e.to_string()),
        WorkflowError::Timeout { .. } => {
            HttpError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
        }
        WorkflowError::Store(s) => s.clone().into(),
    }
}

/// True when `caller` may see `task`: admin and ops see all, a developer
/// its department's.
fn visible(caller: &Caller, task: &Task) -> bool {
    match &task.department {
        Some(d) => caller.in_scope(d),
        None => matches!(caller.role, Role::Admin | Role::Ops),
    }
}

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<ListResponse<Task>>, HttpError> {
    caller.require(READ_ROLES, "list tasks")?;
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=5000).contains(&n) => n,
        Some(n) => {
            return Err(HttpError::invalid(
                "limit",
                format!("limit must be between 1 and 5000, got {n}"),
            ))
        }
    };
    let engine = st.require_engine()?;
    let department = match caller.role {
        Role::Developer => caller.department.clone(),
        _ => q.department.clone(),
    };
    if caller.role == Role::Developer && q.department.is_some() && q.department != caller.department
    {
        return Err(HttpError::forbidden(
            "a developer token lists its own department's tasks only",
        ));
    }
    let filter = TaskFilter {
        app: q.app,
        state: q.state,
        kind: q.kind,
        department,
        active_only: q.active,
        limit,
    };
    let items = engine.list(&filter).await.map_err(workflow_error)?;
    Ok(Json(ListResponse {
        items: items.into_iter().filter(|t| visible(&caller, t)).collect(),
        continue_token: None,
    }))
}

async fn load(st: &AppState, caller: &Caller, id: &str) -> Result<Task, HttpError> {
    let engine = st.require_engine()?;
    match engine.get(id).await.map_err(workflow_error)? {
        Some(t) if visible(caller, &t) => Ok(t),
        // Not told apart from a missing one: ids are not secrets, but a
        // developer has no business with another department's tasks.
        _ => Err(HttpError::not_found("task", id)),
    }
}

async fn get_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Task>, HttpError> {
    caller.require(READ_ROLES, "read tasks")?;
    Ok(Json(load(&st, &caller, &id).await?))
}

async fn cancel_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Task>, HttpError> {
    let draft = st.draft(&caller, "task.cancel", "task", &id);
    st.audited(draft, async {
        caller.require(READ_ROLES, "cancel tasks")?;
        load(&st, &caller, &id).await?;
        let engine = st.require_engine()?;
        Ok(Json(
            engine
                .cancel(&id, &caller.name)
                .await
                .map_err(workflow_error)?,
        ))
    })
    .await
}

impl Documented for Task {
    fn schema_name() -> String {
        "Task".into()
    }
    fn sample() -> Self {
        Task {
            id: "20261122T061500123-4f2a9c".into(),
            kind: "scale".into(),
            app: "shop".into(),
            actor: "alice".into(),
            params: serde_json::json!({"group": {"app": "shop", "env": "production", "group": "web"}, "replicas": 40}),
            state: TaskState::Running,
            steps: vec![
                Step {
                    name: "set_replicas".into(),
                    state: TaskState::Succeeded,
                    attempts: 1,
                    started_at_ms: 1_700_000_000_000,
                    finished_at_ms: 1_700_000_000_020,
                    message: "replicas 20 → 40".into(),
                },
                Step {
                    name: "wait_running".into(),
                    state: TaskState::Running,
                    attempts: 0,
                    started_at_ms: 1_700_000_000_400,
                    finished_at_ms: 0,
                    message: "12/20 running".into(),
                },
            ],
            department: Some("retail".into()),
            object: "group shop/production/web".into(),
            data: serde_json::json!({"target": 40}),
            progress: Some(Progress {
                done: 12,
                total: 20,
                unit: "containers".into(),
            }),
            error: String::new(),
            worker: Some("server-1".into()),
            not_before_ms: 0,
            cancel_requested: false,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_001_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![(
            "state",
            vec!["pending", "running", "succeeded", "failed", "cancelled"],
        )]
    }
}
