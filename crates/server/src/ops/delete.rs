//! `delete_group` and `delete_app`: pre-stop hooks, retire every container,
//! wait until the agents removed them, finalize (allocations released,
//! addresses to quarantine), then remove the group records (and the app).
//!
//! Each step works from what the store holds now (every container under
//! the group's or app's prefix), so a re-run after a crash, or a container
//! that appeared meanwhile, is simply included.

use std::sync::Arc;

use async_trait::async_trait;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::container::DesiredState;
use jdos_types::{keys, App, Container, Group, GroupKey, InstanceId};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, DeleteAppParams, DeleteGroupParams};
use super::OpsContext;
use crate::events::{Commit, Mutation};
use crate::hooks::HookPhase;
use crate::kv;
use crate::state::AppState;

const GROUP_STEPS: [&str; 5] = [
    "pre_stop_hooks",
    "retire",
    "wait_gone",
    "finalize",
    "remove_group",
];
const APP_STEPS: [&str; 6] = [
    "pre_stop_hooks",
    "retire",
    "wait_gone",
    "finalize",
    "remove_groups",
    "remove_app",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DeleteData {
    /// Containers whose pre-stop hooks succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pre_stopped: Vec<InstanceId>,
}

/// What is being deleted.
enum Scope {
    Group(GroupKey),
    App(String),
}

impl Scope {
    fn container_prefix(&self) -> String {
        match self {
            Scope::Group(g) => keys::containers_of_group(g),
            Scope::App(a) => keys::containers_of_app(a),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Group(g) => format!("group {g}"),
            Scope::App(a) => format!("app {a}"),
        }
    }

    /// The group records in scope.
    async fn groups(&self, st: &AppState) -> Result<Vec<kv::Versioned<Group>>, StepError> {
        match self {
            Scope::Group(g) => Ok(common::group(st, g).await?.into_iter().collect()),
            Scope::App(a) => {
                let mut out = Vec::new();
                let listed: Vec<Group> =
                    json::list_all(st.store(), &keys::groups_of_app(a)).await?;
                for g in listed {
                    if let Some(v) = common::group(st, &g.key()).await? {
                        out.push(v);
                    }
                }
                Ok(out)
            }
        }
    }
}

async fn containers(st: &AppState, scope: &Scope) -> Result<Vec<Container>, StepError> {
    Ok(json::list_all(st.store(), &scope.container_prefix()).await?)
}

/// The steps both deletions share; `None` for a step they do not.
async fn shared_step(
    cx: &OpsContext,
    ctx: &mut StepContext,
    st: &AppState,
    scope: &Scope,
    timeout: u64,
    step: &str,
) -> Result<Option<StepOutcome>, StepError> {
    let task = ctx.task().clone();
    Ok(Some(match step {
        "pre_stop_hooks" => {
            let mut data: DeleteData = ctx.data()?;
            let all = containers(st, scope).await?;
            let mut ran = 0;
            let mut failure = None;
            for g in scope.groups(st).await? {
                let members: Vec<Container> = all
                    .iter()
                    .filter(|c| {
                        c.id.group_key() == g.value.key() && c.desired != DesiredState::Deleted
                    })
                    .cloned()
                    .collect();
                let mut done = data.pre_stopped.clone();
                let r = common::run_hooks(
                    &cx.hooks,
                    st,
                    &task,
                    &g.value,
                    HookPhase::PreStop,
                    &members,
                    &mut done,
                )
                .await;
                if done != data.pre_stopped {
                    data.pre_stopped = done;
                    ctx.save_data(&data).await?;
                }
                match r {
                    Ok(n) => ran += n,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            StepOutcome::done(format!("pre-stop hooks ran for {ran} container(s)"))
        }
        "retire" => {
            let ids: Vec<InstanceId> = containers(st, scope)
                .await?
                .into_iter()
                .filter(|c| c.desired != DesiredState::Deleted)
                .map(|c| c.id)
                .collect();
            if !ids.is_empty() {
                st.platform().retire(&ids).await.map_err(perr)?;
            }
            StepOutcome::done(format!("{} container(s) retired", ids.len()))
        }
        "wait_gone" => {
            let all = containers(st, scope).await?;
            // Anything live here appeared after `retire` (a failover, a
            // concurrent writer): retire it too.
            let late: Vec<InstanceId> = all
                .iter()
                .filter(|c| c.desired != DesiredState::Deleted)
                .map(|c| c.id.clone())
                .collect();
            if !late.is_empty() {
                st.platform().retire(&late).await.map_err(perr)?;
            }
            let ids: Vec<InstanceId> = all.into_iter().map(|c| c.id).collect();
            super::scale::wait_gone(ctx, st, &ids, timeout).await?
        }
        "finalize" => {
            let ids: Vec<InstanceId> = containers(st, scope)
                .await?
                .into_iter()
                .map(|c| c.id)
                .collect();
            super::scale::finalize(st, &ids).await?
        }
        _ => return Ok(None),
    }))
}

/// Deletes the group records in scope (and their placement records), with
/// an event each; refuses while containers remain.
async fn remove_groups(
    st: &AppState,
    task: &Task,
    scope: &Scope,
) -> Result<StepOutcome, StepError> {
    if kv::any_under(st.store(), &scope.container_prefix()).await? {
        return Err(StepError::retry(format!(
            "{} still has containers",
            scope.describe()
        )));
    }
    let groups = scope.groups(st).await?;
    for g in &groups {
        let key = g.value.key();
        let m = Mutation {
            compares: vec![Compare::mod_revision(keys::group(&key), g.mod_revision)],
            ops: vec![
                TxnOp::delete(keys::group(&key)),
                TxnOp::delete(keys::placement(&key)),
            ],
            event: common::event(task, "group.delete", "group", &key.to_string())
                .message(format!("deleted by task {}", task.id)),
        };
        if let Commit::Stale = st.events().commit(st.store(), m, st.now_ms()).await? {
            return Err(StepError::retry(format!(
                "group {key} changed while deleting it"
            )));
        }
    }
    if let Scope::Group(key) = scope {
        if groups.is_empty() {
            // The record may be gone already (deleted by apply): the
            // placement record still goes.
            st.store().delete(&keys::placement(key)).await?;
        }
    }
    Ok(StepOutcome::done(format!(
        "{} group record(s) deleted",
        groups.len()
    )))
}

/// The `delete_group` operation.
pub(super) struct DeleteGroupOp {
    cx: Arc<OpsContext>,
}

impl DeleteGroupOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        DeleteGroupOp { cx }
    }
}

#[async_trait]
impl Operation for DeleteGroupOp {
    fn kind(&self) -> &'static str {
        super::DELETE_GROUP
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params::<DeleteGroupParams>(self.kind(), task, |_| Ok(()))?;
        Ok(GROUP_STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: DeleteGroupParams = ctx.params()?;
        let scope = Scope::Group(p.group);
        if let Some(out) =
            shared_step(&self.cx, ctx, &st, &scope, timeout_ms(p.timeout_secs), step).await?
        {
            return Ok(out);
        }
        match step {
            "remove_group" => remove_groups(&st, ctx.task(), &scope).await,
            other => Err(StepError::fatal(format!(
                "delete_group has no step {other:?}"
            ))),
        }
    }
}

/// The `delete_app` operation.
pub(super) struct DeleteAppOp {
    cx: Arc<OpsContext>,
}

impl DeleteAppOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        DeleteAppOp { cx }
    }
}

#[async_trait]
impl Operation for DeleteAppOp {
    fn kind(&self) -> &'static str {
        super::DELETE_APP
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params::<DeleteAppParams>(self.kind(), task, |_| Ok(()))?;
        Ok(APP_STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: DeleteAppParams = ctx.params()?;
        let scope = Scope::App(p.app.clone());
        if let Some(out) =
            shared_step(&self.cx, ctx, &st, &scope, timeout_ms(p.timeout_secs), step).await?
        {
            return Ok(out);
        }
        match step {
            "remove_groups" => remove_groups(&st, ctx.task(), &scope).await,
            "remove_app" => {
                let task = ctx.task().clone();
                if kv::any_under(st.store(), &keys::groups_of_app(&p.app)).await? {
                    return Err(StepError::retry(format!("app {} still has groups", p.app)));
                }
                let Some(app) = kv::get_json::<App>(st.store(), &keys::app(&p.app)).await? else {
                    return Ok(StepOutcome::done("app record already gone"));
                };
                let m = Mutation {
                    compares: vec![Compare::mod_revision(keys::app(&p.app), app.mod_revision)],
                    ops: vec![TxnOp::delete(keys::app(&p.app))],
                    event: common::event(&task, "app.delete", "app", &p.app)
                        .message(format!("deleted by task {}", task.id)),
                };
                match st.events().commit(st.store(), m, st.now_ms()).await? {
                    Commit::Done { .. } => Ok(StepOutcome::done(format!("app {} deleted", p.app))),
                    Commit::Stale => Err(StepError::retry("the app changed while deleting it")),
                }
            }
            other => Err(StepError::fatal(format!(
                "delete_app has no step {other:?}"
            ))),
        }
    }
}
