//! `rolling`: restart or update a group's containers in batches of at most
//! `max_unavailable`, each batch waiting until its containers run (healthy)
//! again before the next one starts.
//!
//! The budget of a batch counts containers that are down for any reason:
//! with `max_unavailable: 2` and one container already crashed, batches
//! take one at a time, so the group never has more than two down because
//! of the rollout.
//!
//! Per batch: pre-stop hooks (deregister) → mark the records `starting`
//! → republish their work orders from the group's template (bumping the
//! generation for a restart, so the agent recreates even an unchanged
//! container) → wait until running → post-start hooks. Each container keeps
//! its host and IP.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::Assignment;
use jdos_types::{keys, Container, ContainerPhase, Group, InstanceId};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, RollingParams};
use super::OpsContext;
use crate::events::{Commit, Mutation};
use crate::hooks::HookPhase;
use crate::state::AppState;

const STEPS: [&str; 3] = ["update_template", "plan", "roll"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RollingData {
    /// Containers to roll, in order, once planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<Vec<InstanceId>>,
    /// Rolled and running again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<InstanceId>,
    /// The batch in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    batch: Vec<InstanceId>,
    /// Its work orders were rewritten.
    #[serde(default)]
    batch_published: bool,
    /// When it started (wall ms), for its timeout.
    #[serde(default)]
    batch_started_ms: u64,
    /// Batch members whose pre-stop hooks ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pre_stopped: Vec<InstanceId>,
    /// Batch members whose post-start hooks ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    post_started: Vec<InstanceId>,
    /// Most containers seen down at once during the rollout.
    #[serde(default)]
    max_down_seen: u32,
}

/// The `rolling` operation.
pub(super) struct RollingOp {
    cx: Arc<OpsContext>,
}

impl RollingOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        RollingOp { cx }
    }
}

/// True when the container's work order differs from what the group's
/// template would write (an update is due).
async fn stale(st: &AppState, group: &Group, c: &Container) -> Result<bool, StepError> {
    let Some(host) = &c.host else {
        return Ok(false);
    };
    let Some(kv) = st.store().get(&keys::assignment(host, &c.id)).await? else {
        return Ok(false);
    };
    let a: Assignment = json::decode(&kv)?;
    Ok(a.template != group.template || a.container.image != group.template.image)
}

/// Marks `ids` as starting (before their work orders change), so that the
/// wait sees them come back rather than their old copy's last report.
async fn mark_starting(st: &AppState, task: &Task, ids: &[InstanceId]) -> Result<(), StepError> {
    for _ in 0..8 {
        let recs = st.platform().records(ids).await.map_err(perr)?;
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for (mut c, rev) in recs {
            if c.phase == ContainerPhase::Starting {
                continue;
            }
            c.phase = ContainerPhase::Starting;
            c.message = format!("rolling (task {})", task.id);
            c.updated_at_ms = st.now_ms();
            compares.push(Compare::mod_revision(keys::container(&c.id), rev));
            ops.push(TxnOp::put(keys::container(&c.id), json::encode(&c)?));
        }
        if ops.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = ids.iter().map(|i| i.index.to_string()).collect();
        let m = Mutation {
            compares,
            ops,
            event: common::event(
                task,
                "container.rollout",
                "group",
                &ids[0].group_key().to_string(),
            )
            .message(format!("recreating indexes {}", names.join(", "))),
        };
        if let Commit::Done { .. } = st.events().commit(st.store(), m, st.now_ms()).await? {
            return Ok(());
        }
    }
    Err(StepError::retry("the batch's records kept changing"))
}

#[async_trait]
impl Operation for RollingOp {
    fn kind(&self) -> &'static str {
        super::ROLLING
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params(self.kind(), task, RollingParams::validate)?;
        Ok(STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: RollingParams = ctx.params()?;
        let mut data: RollingData = ctx.data()?;
        let task = ctx.task().clone();
        match step {
            "update_template" => {
                let Some(t) = &p.template else {
                    return Ok(StepOutcome::done("template unchanged"));
                };
                let g = common::require_group(&st, &p.group).await?;
                if g.value.template == **t {
                    return Ok(StepOutcome::done("template already current"));
                }
                let mut next = g.value.clone();
                next.template = (**t).clone();
                let msg = format!("template updated (image {})", t.image);
                if common::write_group(
                    &st,
                    &task,
                    &next,
                    g.mod_revision,
                    "group.update",
                    msg.clone(),
                )
                .await?
                {
                    Ok(StepOutcome::done(msg))
                } else {
                    Err(StepError::retry(
                        "the group changed while updating its template",
                    ))
                }
            }
            "plan" => {
                if let Some(q) = &data.queue {
                    return Ok(StepOutcome::done(format!(
                        "{} container(s) to roll",
                        q.len()
                    )));
                }
                let g = common::require_group(&st, &p.group).await?;
                let mut queue = Vec::new();
                for c in common::live(&st, &p.group).await? {
                    if common::published(&st, &c).await?
                        && (p.restart || stale(&st, &g.value, &c).await?)
                    {
                        queue.push(c.id);
                    }
                }
                let n = queue.len();
                data.queue = Some(queue);
                ctx.save_data(&data).await?;
                Ok(StepOutcome::done(format!(
                    "{n} container(s) to roll, {} at a time",
                    p.max_unavailable
                )))
            }
            "roll" => self.roll(ctx, &st, &p, &mut data).await,
            other => Err(StepError::fatal(format!("rolling has no step {other:?}"))),
        }
    }
}

impl RollingOp {
    /// One look at the rollout: finish the batch in flight, or start the
    /// next one within the budget, or wait.
    async fn roll(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        p: &RollingParams,
        data: &mut RollingData,
    ) -> Result<StepOutcome, StepError> {
        let task = ctx.task().clone();
        let queue = data.queue.clone().unwrap_or_default();
        let total = queue.len() as u64;
        let g = common::require_group(st, &p.group).await?.value;
        let live = common::live(st, &p.group).await?;
        let down: Vec<&Container> = live.iter().filter(|c| !common::is_running(c)).collect();
        let down_n = down.len() as u32;
        if down_n > data.max_down_seen {
            data.max_down_seen = down_n;
            ctx.save_data(&*data).await?;
        }
        if !data.batch.is_empty() {
            if !data.batch_published {
                return self.start_batch(ctx, st, &g, data).await;
            }
            let recs = common::records(st, &data.batch).await?;
            let pending: Vec<&Container> = recs.iter().filter(|c| !common::is_running(c)).collect();
            if !pending.is_empty() || recs.len() < data.batch.len() {
                let waited = common::wall_ms().saturating_sub(data.batch_started_ms);
                if waited >= timeout_ms(p.timeout_secs) {
                    return Err(StepError::fatal(format!(
                        "batch of {} not running again after {} s ({} of {} rolled): {}",
                        data.batch.len(),
                        waited / 1000,
                        data.done.len(),
                        total,
                        common::describe(&pending)
                    )));
                }
                return Ok(StepOutcome::wait(
                    common::POLL,
                    format!(
                        "{}/{total} rolled; batch of {} starting",
                        data.done.len(),
                        data.batch.len()
                    ),
                ));
            }
            let mut done = data.post_started.clone();
            let r = common::run_hooks(
                &self.cx.hooks,
                st,
                &task,
                &g,
                HookPhase::PostStart,
                &recs,
                &mut done,
            )
            .await;
            data.post_started = done;
            if let Err(e) = r {
                ctx.save_data(&*data).await?;
                return Err(e);
            }
            let batch = std::mem::take(&mut data.batch);
            data.done.extend(batch);
            data.batch_published = false;
            data.pre_stopped.clear();
            data.post_started.clear();
            ctx.save_data(&*data).await?;
            ctx.set_progress(data.done.len() as u64, total, "containers")
                .await;
        }
        let done: BTreeSet<&InstanceId> = data.done.iter().collect();
        let live_ids: BTreeSet<&InstanceId> = live.iter().map(|c| &c.id).collect();
        // Containers removed meanwhile (a scale-in) are not waited for.
        let next: Vec<InstanceId> = queue
            .iter()
            .filter(|i| !done.contains(i) && live_ids.contains(i))
            .cloned()
            .collect();
        if next.is_empty() {
            return Ok(StepOutcome::done(format!(
                "{} container(s) rolled, {} at a time (at most {} down at once)",
                data.done.len(),
                p.max_unavailable,
                data.max_down_seen
            )));
        }
        let budget = p.max_unavailable.saturating_sub(down_n) as usize;
        if budget == 0 {
            let waited = common::step_elapsed_ms(ctx);
            if waited >= timeout_ms(p.timeout_secs) && data.done.is_empty() {
                return Err(StepError::fatal(format!(
                    "{down_n} container(s) of the group are down, which uses up max_unavailable {}: {}",
                    p.max_unavailable,
                    common::describe(&down)
                )));
            }
            return Ok(StepOutcome::wait(
                common::POLL,
                format!(
                    "{}/{total} rolled; waiting: {down_n} down already (max_unavailable {})",
                    data.done.len(),
                    p.max_unavailable
                ),
            ));
        }
        data.batch = next.into_iter().take(budget).collect();
        data.batch_published = false;
        data.batch_started_ms = common::wall_ms();
        ctx.save_data(&*data).await?;
        self.start_batch(ctx, st, &g, data).await
    }

    /// Pre-stop hooks, mark, republish.
    async fn start_batch(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        g: &Group,
        data: &mut RollingData,
    ) -> Result<StepOutcome, StepError> {
        let task = ctx.task().clone();
        let p: RollingParams = ctx.params()?;
        let recs = common::records(st, &data.batch).await?;
        let mut pre = data.pre_stopped.clone();
        let r = common::run_hooks(
            &self.cx.hooks,
            st,
            &task,
            g,
            HookPhase::PreStop,
            &recs,
            &mut pre,
        )
        .await;
        if pre != data.pre_stopped {
            data.pre_stopped = pre;
            ctx.save_data(&*data).await?;
        }
        r?;
        mark_starting(st, &task, &data.batch).await?;
        st.platform()
            .republish(g, &data.batch, p.restart)
            .await
            .map_err(perr)?;
        data.batch_published = true;
        ctx.save_data(&*data).await?;
        let names: Vec<String> = data.batch.iter().map(|i| i.index.to_string()).collect();
        Ok(StepOutcome::wait(
            common::POLL,
            format!(
                "{}/{} rolled; recreating indexes {}",
                data.done.len(),
                data.queue.as_ref().map_or(0, Vec::len),
                names.join(", ")
            ),
        ))
    }
}
