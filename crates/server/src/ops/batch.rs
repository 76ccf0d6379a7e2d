//! `batch_scale`: one-click scaling of every group a selector picks
//! (`jdos scale --selector department=retail --replicas +50%`).
//!
//! The batch resolves the groups and their absolute targets once (so a
//! resumed batch does not apply `+50%` twice), then submits one child
//! `scale` task per group and waits for all of them. Children run under
//! their own app's mutex: a batch never races another task of an app, and
//! different apps scale in parallel up to the engine's concurrency, on
//! whichever workers hold them. (Running the groups inline in the batch
//! would hold no app mutex and serialize nothing against the apps' own
//! tasks.) A child submitted twice after a crash is harmless: its target
//! is absolute.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use jdos_types::{keys, App, Group, GroupKey, TaskState};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common;
use super::params::{BatchScaleParams, ScaleParams};
use super::OpsContext;

const STEPS: [&str; 3] = ["select", "submit", "wait_children"];

/// One group of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Target {
    group: GroupKey,
    department: String,
    from: u32,
    to: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BatchData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    targets: Option<Vec<Target>>,
    /// Group (`app/env/group`) → child task id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    children: BTreeMap<String, String>,
}

/// The `batch_scale` operation.
pub(super) struct BatchScaleOp {
    cx: Arc<OpsContext>,
}

impl BatchScaleOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        BatchScaleOp { cx }
    }
}

#[async_trait]
impl Operation for BatchScaleOp {
    fn kind(&self) -> &'static str {
        super::BATCH_SCALE
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params(self.kind(), task, BatchScaleParams::validate)?;
        Ok(STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: BatchScaleParams = ctx.params()?;
        let mut data: BatchData = ctx.data()?;
        let task = ctx.task().clone();
        match step {
            "select" => {
                if let Some(t) = &data.targets {
                    return Ok(StepOutcome::done(format!("{} group(s)", t.len())));
                }
                let sel = &p.selector;
                let apps: Vec<App> = jdos_store::json::list_all(st.store(), keys::APPS).await?;
                let mut targets = Vec::new();
                for app in apps.iter().filter(|a| {
                    sel.department.as_ref().is_none_or(|d| &a.department == d)
                        && sel.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v))
                }) {
                    let groups: Vec<Group> =
                        jdos_store::json::list_all(st.store(), &keys::groups_of_app(&app.name))
                            .await?;
                    for g in groups.into_iter().filter(|g| {
                        sel.env.as_ref().is_none_or(|e| &g.env == e)
                            && sel.datacenter.as_ref().is_none_or(|d| &g.datacenter == d)
                    }) {
                        targets.push(Target {
                            group: g.key(),
                            department: app.department.clone(),
                            from: g.replicas,
                            to: p.replicas.apply(g.replicas),
                        });
                    }
                }
                let changing = targets.iter().filter(|t| t.from != t.to).count();
                let n = targets.len();
                data.targets = Some(targets);
                ctx.save_data(&data).await?;
                Ok(StepOutcome::done(format!(
                    "{n} group(s) match {}; {changing} change",
                    sel.render()
                )))
            }
            "submit" => {
                let engine = st
                    .engine()
                    .cloned()
                    .ok_or_else(|| StepError::fatal("this server runs no workflow engine"))?;
                let targets = data.targets.clone().unwrap_or_default();
                let todo: Vec<&Target> = targets.iter().filter(|t| t.from != t.to).collect();
                for (i, t) in todo.iter().enumerate() {
                    let name = t.group.to_string();
                    if data.children.contains_key(&name) {
                        continue;
                    }
                    let mut req = ScaleParams {
                        group: t.group.clone(),
                        replicas: t.to,
                        timeout_secs: p.timeout_secs,
                    }
                    .task(&task.actor);
                    req.department = Some(t.department.clone());
                    req.object = format!("group {} (batch {})", t.group, task.id);
                    let child = engine.submit(req).await.map_err(StepError::retry)?;
                    data.children.insert(name, child.id);
                    ctx.save_data(&data).await?;
                    ctx.set_progress(i as u64 + 1, todo.len() as u64, "groups")
                        .await;
                }
                Ok(StepOutcome::done(format!(
                    "{} scale task(s) submitted",
                    data.children.len()
                )))
            }
            "wait_children" => {
                let engine = st
                    .engine()
                    .cloned()
                    .ok_or_else(|| StepError::fatal("this server runs no workflow engine"))?;
                let total = data.children.len() as u64;
                let mut finished = 0u64;
                let mut failed = Vec::new();
                for (group, id) in &data.children {
                    match engine.get(id).await.map_err(StepError::retry)? {
                        Some(t) if t.state.is_terminal() => {
                            finished += 1;
                            if t.state != TaskState::Succeeded {
                                failed.push(format!("{group} ({id}): {}", t.error));
                            }
                        }
                        Some(_) => {}
                        None => {
                            finished += 1;
                            failed.push(format!("{group} ({id}): task disappeared"));
                        }
                    }
                }
                ctx.set_progress(finished, total, "groups").await;
                if finished < total {
                    return Ok(StepOutcome::wait(
                        std::time::Duration::from_millis(500),
                        format!("{finished}/{total} group(s) done"),
                    ));
                }
                if !failed.is_empty() {
                    let n = failed.len();
                    failed.truncate(5);
                    return Err(StepError::fatal(format!(
                        "{n} of {total} group(s) failed to scale: {}",
                        failed.join("; ")
                    )));
                }
                Ok(StepOutcome::done(format!("{total} group(s) scaled")))
            }
            other => Err(StepError::fatal(format!(
                "batch_scale has no step {other:?}"
            ))),
        }
    }
}
