//! `POST /api/v1/apply`: declarative apps. The body is an [`AppSpec`]; the
//! answer is the diff against what is stored and, unless `?dry_run=true`,
//! the tasks started to converge the groups. Applying the same spec twice
//! writes nothing and starts nothing.
//!
//! The app record, the group records and the tasks commit in one store
//! transaction with the `app.apply` event, so a crash never keeps a group
//! change without the task that carries it out.

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::apply::{self, ApplyDiff, ApplyResult, ChangeKind, GroupChange};
use jdos_types::spec::AppSpec;
use jdos_types::{keys, App, Group, GroupKey, Role, Task, ValidationErrors};
use jdos_workflow::TaskFilter;
use serde::Deserialize;

use super::tasks::workflow_error;
use super::{Param, Route};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{Commit, EventDraft, Mutation};
use crate::extract::{ApiJson, ApiQuery};
use crate::kv::{self, Versioned};
use crate::openapi::Documented;
use crate::ops::{self, DeleteGroupParams, DeployParams, RollingParams, ScaleParams};
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::POST, "/api/v1/apply", apply_handler)
        .doc(
            "apps",
            "Apply an app spec: create or update the app and its groups and start the tasks that converge them; ?dry_run=true answers the diff only",
        )
        .query(&PARAMS)
        .accepts::<AppSpec>()
        .returns::<ApplyResult>()]
}

const PARAMS: [Param; 1] = [Param {
    name: "dry_run",
    ty: "boolean",
    description: "compute and answer the diff, write nothing",
}];

/// Query of `POST /api/v1/apply`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApplyParams {
    /// Answer the diff only.
    #[serde(default)]
    pub dry_run: bool,
}

const APPLY_ROLES: &[Role] = &[Role::Admin, Role::Ops, Role::Developer];

fn draft(st: &AppState, caller: &Caller, name: &str) -> EventDraft {
    let mut d = st.draft(caller, "app.apply", "app", name);
    d.app = Some(name.to_string());
    d
}

async fn apply_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ApplyParams>,
    ApiJson(spec): ApiJson<AppSpec>,
) -> Result<Json<ApplyResult>, HttpError> {
    let d = draft(&st, &caller, &spec.name);
    if q.dry_run {
        // A dry run writes nothing, not even a failure event.
        caller.require(APPLY_ROLES, "apply app specs")?;
        return Ok(Json(apply(&st, &caller, &spec, true).await?));
    }
    st.audited(d, async {
        caller.require(APPLY_ROLES, "apply app specs")?;
        Ok(Json(apply(&st, &caller, &spec, false).await?))
    })
    .await
}

/// What is stored for an app: the app and its groups, with revisions.
struct Current {
    app: Option<Versioned<App>>,
    groups: Vec<Versioned<Group>>,
}

async fn load_current(st: &AppState, name: &str) -> Result<Current, HttpError> {
    let app = kv::get_json::<App>(st.store(), &keys::app(name)).await?;
    let mut groups = Vec::new();
    jdos_store::for_each_page(st.store(), &keys::groups_of_app(name), 500, |kvs| {
        for kv in kvs {
            groups.push(Versioned {
                value: json::decode::<Group>(kv)?,
                mod_revision: kv.mod_revision,
            });
        }
        Ok::<_, jdos_store::StoreError>(())
    })
    .await?;
    Ok(Current { app, groups })
}

/// Validates `spec`, diffs it against the store and, unless `dry_run`,
/// commits the changes and their tasks. Every spec error is reported at
/// once (400) and nothing is written.
#[tracing::instrument(skip_all, fields(app = %spec.name, dry_run))]
pub async fn apply(
    st: &AppState,
    caller: &Caller,
    spec: &AppSpec,
    dry_run: bool,
) -> Result<ApplyResult, HttpError> {
    let (mut app, groups) = spec.to_records()?;
    caller.require_scope(&app.department, &format!("app {:?}", app.name))?;
    // The optimistic loop of `AppState::mutate`, written out because a dry
    // run or a no-op answers without committing anything.
    for _ in 0..MAX_REPLANS {
        let cur = load_current(st, &app.name).await?;
        if let Some(c) = &cur.app {
            caller.require_scope(&c.value.department, &format!("app {:?}", app.name))?;
            app.created_at_ms = c.value.created_at_ms;
        } else {
            app.created_at_ms = st.now_ms();
        }
        let groups = reconcile_with_current(groups.clone(), &cur)?;
        let cur_groups: Vec<Group> = cur.groups.iter().map(|g| g.value.clone()).collect();
        let diff = apply::diff(
            cur.app.as_ref().map(|a| &a.value),
            &cur_groups,
            &app,
            &groups,
        );
        let mut result = ApplyResult {
            dry_run,
            diff,
            tasks: Vec::new(),
        };
        if dry_run || result.diff.is_noop() {
            return Ok(result);
        }
        let Some((m, tasks)) = plan(st, caller, &app, &groups, &cur, &result.diff).await? else {
            return Ok(result);
        };
        // The tasks' `task.submit` events go in the apply's own commit.
        let submitted = ops::submitted_events(&tasks);
        match st
            .events()
            .commit_with(st.store(), m, submitted, st.now_ms())
            .await?
        {
            Commit::Done { .. } => {
                tracing::info!(
                    summary = %summary(&result.diff),
                    tasks = tasks.len(),
                    "applied"
                );
                result.tasks = tasks;
                return Ok(result);
            }
            Commit::Stale => continue,
        }
    }
    Err(HttpError::conflict(
        "the app kept changing under this apply: try again",
    ))
}

/// Re-plans after a concurrent writer changed what an apply read.
const MAX_REPLANS: usize = 16;

/// Checks the spec's groups against the stored ones (a group cannot move to
/// another datacenter) and keeps an autoscaled group's current replicas
/// while they are within its policy: the autoscaler owns them there.
fn reconcile_with_current(mut groups: Vec<Group>, cur: &Current) -> Result<Vec<Group>, HttpError> {
    let mut e = ValidationErrors::new();
    for (i, g) in groups.iter_mut().enumerate() {
        let Some(c) = cur.groups.iter().find(|c| c.value.key() == g.key()) else {
            continue;
        };
        let c = &c.value;
        if c.datacenter != g.datacenter {
            e.add(
                format!("groups[{i}].datacenter"),
                "immutable",
                format!(
                    "group {} runs in {}: a group cannot move to {}; add a new group there (and remove this one)",
                    g.key(),
                    c.datacenter,
                    g.datacenter
                ),
            );
        }
        if let Some(a) = &g.autoscaling {
            if (a.min_replicas..=a.max_replicas).contains(&c.replicas) {
                g.replicas = c.replicas;
            }
        }
    }
    e.into_result()?;
    Ok(groups)
}

/// Most store operations one apply may commit, besides its event (etcd
/// refuses transactions of more than 128 operations by default; the event
/// and the event counter take two more).
pub const MAX_APPLY_OPS: usize = 118;

/// The tasks that converge one changed group: a `deploy` for a new group;
/// a `scale` for a replica change, then a `rolling` update (25% of the
/// replicas at a time, at least one) for a template change; a
/// `delete_group` for a removed one, unless one is already under way.
fn group_tasks(
    change: &GroupChange,
    caller: &Caller,
    deleting: &[GroupKey],
) -> Vec<jdos_workflow::NewTask> {
    let actor = caller.name.as_str();
    let key = change.key.clone();
    let mut out = Vec::new();
    match change.change {
        ChangeKind::Unchanged => {}
        ChangeKind::Create => out.push(
            DeployParams {
                group: key,
                timeout_secs: None,
            }
            .task(actor),
        ),
        ChangeKind::Update => {
            let replicas = change.new_replicas.unwrap_or(0);
            if change.replicas_changed() {
                out.push(
                    ScaleParams {
                        group: key.clone(),
                        replicas,
                        timeout_secs: None,
                    }
                    .task(actor),
                );
            }
            if change.template_changed() {
                out.push(
                    RollingParams {
                        group: key,
                        max_unavailable: (replicas / 4).max(1),
                        restart: false,
                        // Written by the apply itself, with the group.
                        template: None,
                        timeout_secs: None,
                    }
                    .task(actor),
                );
            }
        }
        ChangeKind::Delete => {
            if !deleting.contains(&key) {
                out.push(
                    DeleteGroupParams {
                        group: key,
                        timeout_secs: None,
                    }
                    .task(actor),
                );
            }
        }
    }
    out
}

/// Groups of `app` an unfinished `delete_group` task is removing (their
/// records stay until it ends: a re-apply must not queue another).
async fn groups_being_deleted(
    engine: &jdos_workflow::Engine,
    app: &str,
) -> Result<Vec<GroupKey>, HttpError> {
    let filter = TaskFilter {
        app: Some(app.to_string()),
        kind: Some(ops::DELETE_GROUP.to_string()),
        active_only: true,
        ..Default::default()
    };
    let tasks = engine.list(&filter).await.map_err(workflow_error)?;
    Ok(tasks
        .into_iter()
        .filter_map(|t| serde_json::from_value::<DeleteGroupParams>(t.params).ok())
        .map(|p| p.group)
        .collect())
}

/// The mutation of a real apply: app and changed groups written with
/// compares on everything read, and the tasks that converge the groups
/// queued in the same transaction. `None` when there is nothing to write
/// (the only changes are deletions already under way).
async fn plan(
    st: &AppState,
    caller: &Caller,
    app: &App,
    groups: &[Group],
    cur: &Current,
    diff: &ApplyDiff,
) -> Result<Option<(Mutation, Vec<Task>)>, HttpError> {
    let engine = st.require_engine()?;
    let deleting = if diff.groups.iter().any(|g| g.change == ChangeKind::Delete) {
        groups_being_deleted(engine, &app.name).await?
    } else {
        Vec::new()
    };
    let now = st.now_ms();
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    let mut tasks = Vec::new();
    let app_key = keys::app(&app.name);
    match &cur.app {
        Some(c) => compares.push(Compare::mod_revision(app_key.as_str(), c.mod_revision)),
        None => compares.push(Compare::absent(app_key.as_str())),
    }
    if diff.app.change != ChangeKind::Unchanged {
        ops.push(TxnOp::put(app_key.as_str(), json::encode(app)?));
    }
    for change in &diff.groups {
        let key = keys::group(&change.key);
        let stored = cur.groups.iter().find(|c| c.value.key() == change.key);
        match stored {
            Some(c) => compares.push(Compare::mod_revision(key.as_str(), c.mod_revision)),
            None => compares.push(Compare::absent(key.as_str())),
        }
        if matches!(change.change, ChangeKind::Create | ChangeKind::Update) {
            let g = groups
                .iter()
                .find(|g| g.key() == change.key)
                .ok_or_else(|| HttpError::internal("a changed group is not in the spec"))?;
            ops.push(TxnOp::put(key.as_str(), json::encode(g)?));
        }
        // A removed group's record stays until its `delete_group` task has
        // removed its containers; the task then deletes it.
        for mut req in group_tasks(change, caller, &deleting) {
            req.department = Some(app.department.clone());
            let (task, task_ops) = engine.prepare(req, now).map_err(workflow_error)?;
            ops.extend(task_ops);
            tasks.push(task);
        }
    }
    if ops.is_empty() {
        return Ok(None);
    }
    if ops.len() > MAX_APPLY_OPS || compares.len() > MAX_APPLY_OPS {
        let mut e = ValidationErrors::new();
        e.add(
            "groups",
            "too_many",
            format!(
                "this apply changes too many groups at once ({} store operations with its tasks, at most {MAX_APPLY_OPS} fit one transaction): delete removed groups first (`jdos delete group`) or apply the change in two steps",
                ops.len()
            ),
        );
        return Err(e.into());
    }
    let event = draft(st, caller, &app.name)
        .app(&app.name, &app.department)
        .message(summary(diff));
    Ok(Some((
        Mutation {
            compares,
            ops,
            event,
        },
        tasks,
    )))
}

/// One line for the event: `app created; groups: 2 created, 1 scaled`.
pub fn summary(d: &ApplyDiff) -> String {
    let app = match d.app.change {
        ChangeKind::Create => "app created".to_string(),
        ChangeKind::Update => format!(
            "app updated ({})",
            d.app
                .fields
                .iter()
                .map(|f| f.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "app unchanged".to_string(),
    };
    let count = |f: &dyn Fn(&GroupChange) -> bool| d.groups.iter().filter(|g| f(g)).count();
    let parts: Vec<String> = [
        (count(&|g| g.change == ChangeKind::Create), "created"),
        (count(&|g| g.replicas_changed()), "scaled"),
        (count(&|g| g.template_changed()), "updated"),
        (count(&|g| g.change == ChangeKind::Delete), "deleted"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        app
    } else {
        format!("{app}; groups: {}", parts.join(", "))
    }
}

impl Documented for AppSpec {
    fn schema_name() -> String {
        "AppSpec".into()
    }
    fn sample() -> Self {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jdos/v1",
            "kind": "App",
            "name": "web",
            "owner": "alice",
            "department": "retail",
            "business_level": "normal",
            "description": "the front page",
            "labels": {"tier": "frontend"},
            "replicas": 2,
            "template": {
                "image": "jdos-busybox:latest",
                "command": ["httpd", "-f", "-p", "80"],
                "env": {"GREETING": "hello"},
                "resources": {"cpu": "250m", "memory": "64Mi", "disk": {"l1": "1Gi"}},
                "ports": [80],
                "health": {"probe": {"kind": "http", "port": 80, "path": "/"}},
                "volumes": [{"tier": "l1", "name": "data", "path": "/data", "size": "1Gi"}],
                "network_zone": "prod",
                "placement": {"strategy": "spread", "max_per_host": 1},
                "stop_grace_secs": 5
            },
            "groups": [{
                "env": "production", "name": "web-lf", "datacenter": "langfang", "replicas": 2,
                "overrides": {"env": {"REGION": "lf"}, "resources": {"memory": "128Mi"}},
                "autoscaling": {"min_replicas": 2, "max_replicas": 20, "metric": "cpu",
                                "target_utilization": 0.6, "mode": "predictive"}
            }]
        }))
        .expect("the AppSpec sample parses")
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            (
                "business_level",
                vec!["core", "important", "normal", "test"],
            ),
            ("tier", vec!["l0", "l1", "l2", "l3"]),
            ("mode", vec!["reactive", "predictive"]),
            ("strategy", vec!["spread", "binpack"]),
        ]
    }
}

impl Documented for ApplyResult {
    fn schema_name() -> String {
        "ApplyResult".into()
    }
    fn sample() -> Self {
        let (app, groups) = AppSpec::sample()
            .to_records()
            .expect("the AppSpec sample is valid");
        let mut old = groups[0].clone();
        old.replicas = 1;
        old.template.image = "jdos-busybox:old".into();
        let mut old_app = app.clone();
        old_app.owner = "bob".into();
        ApplyResult {
            dry_run: true,
            diff: apply::diff(Some(&old_app), &[old], &app, &groups),
            tasks: Vec::new(),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("change", vec!["create", "update", "delete", "unchanged"])]
    }
}
