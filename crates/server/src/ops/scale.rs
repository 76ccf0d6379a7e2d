//! `deploy` and `scale`: converge a group to a number of replicas.
//!
//! Scale-out: place the missing containers (records `scheduled`, IPs by
//! identity) → their pre-start hooks → publish their work orders → wait
//! until they run (healthy) → post-start hooks. A failure before the
//! containers are published (no capacity, a pre-start hook) is compensated:
//! what this task placed is retired and finalized (record, allocation and
//! address released) and the group's replicas are restored, so nothing is
//! left half-created.
//!
//! Scale-in: choose victims (the scheduler's `choose_victims`: the most
//! crowded switch, rack and host first, then the newest) → pre-stop hooks →
//! retire → wait until the agents removed them → finalize. Survivors are
//! never touched, so they keep their hosts and IPs.
//!
//! Both halves are in every task's steps (one of them has nothing to do):
//! the direction is only known when the task runs, under the app's mutex.

use std::sync::Arc;

use async_trait::async_trait;
use jdos_types::{Group, InstanceId};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, DeployParams, ScaleParams};
use super::OpsContext;
use crate::hooks::HookPhase;
use crate::state::AppState;

/// Steps of a scale (`deploy` reads its target instead of setting it).
const STEPS: [&str; 11] = [
    "set_replicas",
    "place",
    "pre_start_hooks",
    "publish",
    "wait_running",
    "post_start_hooks",
    "choose_victims",
    "pre_stop_hooks",
    "retire",
    "wait_gone",
    "finalize",
];

/// What a scale task remembers between steps and across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ScaleData {
    /// Replicas of the group before this task (restored on compensation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_replicas: Option<u32>,
    /// The target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Containers this task brings up (unpublished when placed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<InstanceId>,
    /// Those whose pre-start hooks succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_started: Vec<InstanceId>,
    /// Those whose post-start hooks succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_started: Vec<InstanceId>,
    /// Containers to remove, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victims: Option<Vec<InstanceId>>,
    /// Victims whose pre-stop hooks succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stopped: Vec<InstanceId>,
}

/// The `deploy` and `scale` operations.
pub(super) struct ScaleOp {
    kind: &'static str,
    cx: Arc<OpsContext>,
}

/// What both kinds' params reduce to.
struct Target {
    group: jdos_types::GroupKey,
    /// `None`: the group record's replicas (deploy).
    replicas: Option<u32>,
    timeout_ms: u64,
}

impl ScaleOp {
    pub(super) fn deploy(cx: Arc<OpsContext>) -> Self {
        ScaleOp {
            kind: super::DEPLOY,
            cx,
        }
    }

    pub(super) fn scale(cx: Arc<OpsContext>) -> Self {
        ScaleOp {
            kind: super::SCALE,
            cx,
        }
    }

    fn target(&self, ctx: &StepContext) -> Result<Target, StepError> {
        if self.kind == super::DEPLOY {
            let p: DeployParams = ctx.params()?;
            Ok(Target {
                group: p.group,
                replicas: None,
                timeout_ms: timeout_ms(p.timeout_secs),
            })
        } else {
            let p: ScaleParams = ctx.params()?;
            Ok(Target {
                group: p.group,
                replicas: Some(p.replicas),
                timeout_ms: timeout_ms(p.timeout_secs),
            })
        }
    }
}

#[async_trait]
impl Operation for ScaleOp {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        if self.kind == super::DEPLOY {
            common::checked_params::<DeployParams>(self.kind, task, |_| Ok(()))?;
        } else {
            common::checked_params(self.kind, task, ScaleParams::validate)?;
        }
        let mut steps: Vec<String> = STEPS.iter().map(|s| s.to_string()).collect();
        if self.kind == super::DEPLOY {
            steps[0] = "read_target".into();
        }
        Ok(steps)
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let t = self.target(ctx)?;
        let mut data: ScaleData = ctx.data()?;
        let task = ctx.task().clone();
        match step {
            "read_target" | "set_replicas" => {
                let g = common::require_group(&st, &t.group).await?;
                let target = t.replicas.unwrap_or(g.value.replicas);
                let first = data.target.is_none();
                if first {
                    data.prev_replicas = Some(g.value.replicas);
                    data.target = Some(target);
                }
                if g.value.replicas == target {
                    // No group write follows: the step's own write keeps it.
                    if first {
                        ctx.set_data(&data)?;
                    }
                    return Ok(StepOutcome::done(format!("target {target} replicas")));
                }
                if first {
                    // Durable before the group changes: a re-run must know
                    // the replicas it started from.
                    ctx.save_data(&data).await?;
                }
                let mut next = g.value.clone();
                next.replicas = target;
                let msg = format!("replicas {} → {target}", g.value.replicas);
                if common::write_group(
                    &st,
                    &task,
                    &next,
                    g.mod_revision,
                    "group.scale",
                    msg.clone(),
                )
                .await?
                {
                    Ok(StepOutcome::done(msg))
                } else {
                    Err(StepError::retry(format!(
                        "group {} changed while setting its replicas",
                        t.group
                    )))
                }
            }
            "place" => {
                let target = data.target.unwrap_or_default();
                let g = common::require_group(&st, &t.group).await?;
                let mut group = g.value;
                group.replicas = target;
                let live = st
                    .platform()
                    .place_missing(&group, target)
                    .await
                    .map_err(perr)?;
                let mut placed = data.placed.clone();
                for c in &live {
                    if !placed.contains(&c.id) && !common::published(&st, c).await? {
                        placed.push(c.id.clone());
                    }
                }
                placed.sort();
                let n = placed.len();
                if placed != data.placed {
                    // Written with the step's end, which follows at once; a
                    // re-run finds the same unpublished containers again.
                    data.placed = placed;
                    ctx.set_data(&data)?;
                }
                Ok(StepOutcome::done(format!(
                    "{n} new container(s) placed; {} live",
                    live.len()
                )))
            }
            "pre_start_hooks" => {
                self.hooks(ctx, &st, &t, &mut data, HookPhase::PreStart)
                    .await
            }
            "publish" => {
                if data.placed.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to publish"));
                }
                let g = common::require_group(&st, &t.group).await?;
                st.platform()
                    .publish(&g.value, &data.placed)
                    .await
                    .map_err(perr)?;
                Ok(StepOutcome::done(format!(
                    "{} work order(s) published",
                    data.placed.len()
                )))
            }
            "wait_running" => {
                common::wait_until(
                    ctx,
                    &st,
                    &data.placed,
                    t.timeout_ms,
                    "running",
                    common::is_running,
                )
                .await
            }
            "post_start_hooks" => {
                self.hooks(ctx, &st, &t, &mut data, HookPhase::PostStart)
                    .await
            }
            "choose_victims" => {
                if let Some(v) = &data.victims {
                    return Ok(StepOutcome::done(format!("{} to remove", v.len())));
                }
                let target = data.target.unwrap_or_default() as usize;
                let live = common::live(&st, &t.group).await?;
                let victims = if live.len() > target {
                    choose(&st, &live, live.len() - target).await?
                } else {
                    Vec::new()
                };
                let msg = if victims.is_empty() {
                    "nothing to remove".to_string()
                } else {
                    let names: Vec<String> = victims
                        .iter()
                        .take(10)
                        .map(|v| v.index.to_string())
                        .collect();
                    format!("{} to remove: indexes {}", victims.len(), names.join(", "))
                };
                if victims.is_empty() {
                    // A decision a re-run makes again: written with the
                    // task's next write, like the steps that follow it.
                    data.victims = Some(victims);
                    ctx.set_data(&data)?;
                    return Ok(StepOutcome::nothing(msg));
                }
                data.victims = Some(victims);
                ctx.save_data(&data).await?;
                Ok(StepOutcome::done(msg))
            }
            "pre_stop_hooks" => {
                let victims = data.victims.clone().unwrap_or_default();
                if victims.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to stop"));
                }
                let g = common::group(&st, &t.group).await?;
                let Some(g) = g else {
                    return Ok(StepOutcome::nothing("group gone: no hooks"));
                };
                let recs = common::records(&st, &victims).await?;
                let mut done = data.pre_stopped.clone();
                let r = common::run_hooks(
                    &self.cx.hooks,
                    &st,
                    &task,
                    &g.value,
                    HookPhase::PreStop,
                    &recs,
                    &mut done,
                )
                .await;
                if done != data.pre_stopped {
                    data.pre_stopped = done;
                    ctx.save_data(&data).await?;
                }
                let n = r?;
                Ok(StepOutcome::done(format!(
                    "pre-stop hooks ran for {n} container(s)"
                )))
            }
            "retire" => {
                let victims = data.victims.clone().unwrap_or_default();
                if victims.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to retire"));
                }
                st.platform().retire(&victims).await.map_err(perr)?;
                Ok(StepOutcome::done(format!(
                    "{} container(s) retired",
                    victims.len()
                )))
            }
            "wait_gone" => {
                let victims = data.victims.clone().unwrap_or_default();
                wait_gone(ctx, &st, &victims, t.timeout_ms).await
            }
            "finalize" => {
                let victims = data.victims.clone().unwrap_or_default();
                finalize(&st, &victims).await
            }
            other => Err(StepError::fatal(format!(
                "{} has no step {other:?}",
                self.kind
            ))),
        }
    }

    async fn compensate(&self, ctx: &mut StepContext, failed_step: &str) -> Result<(), StepError> {
        // After the work orders are out, containers are the user's to see
        // (and the timeline says why they do not run): nothing is undone.
        if !matches!(failed_step, "place" | "pre_start_hooks" | "publish") {
            return Ok(());
        }
        let st = self.cx.state()?;
        let t = self.target(ctx)?;
        let data: ScaleData = ctx.data()?;
        undo_placement(&st, ctx.task(), &t.group, &data).await
    }
}

impl ScaleOp {
    /// Pre- or post-start hooks of the containers this task placed.
    async fn hooks(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        t: &Target,
        data: &mut ScaleData,
        phase: HookPhase,
    ) -> Result<StepOutcome, StepError> {
        if data.placed.is_empty() {
            return Ok(StepOutcome::nothing("no new container"));
        }
        let g = common::require_group(st, &t.group).await?;
        if phase.of(&g.value.template.hooks).is_empty() {
            return Ok(StepOutcome::nothing(format!("no {phase} hooks")));
        }
        let recs = common::records(st, &data.placed).await?;
        let task = ctx.task().clone();
        let slot = match phase {
            HookPhase::PreStart => &mut data.pre_started,
            _ => &mut data.post_started,
        };
        let before = slot.clone();
        let r = common::run_hooks(&self.cx.hooks, st, &task, &g.value, phase, &recs, slot).await;
        let changed = *slot != before;
        let done = slot.len() as u64;
        if changed {
            ctx.save_data(&*data).await?;
        }
        ctx.set_progress(done, recs.len() as u64, "containers")
            .await;
        let n = r?;
        Ok(StepOutcome::done(format!(
            "{phase} hooks ran for {n} container(s)"
        )))
    }
}

/// Picks `n` victims among `live`: containers never published first (they
/// serve nothing), then the scheduler's spread order.
pub(super) async fn choose(
    st: &AppState,
    live: &[jdos_types::Container],
    n: usize,
) -> Result<Vec<InstanceId>, StepError> {
    let mut victims = Vec::with_capacity(n);
    let mut members = Vec::new();
    for c in live {
        if victims.len() < n && !common::published(st, c).await? {
            victims.push(c.id.clone());
        } else if let Some(h) = &c.host {
            members.push((c.id.index, h.clone()));
        }
    }
    let more = n - victims.len();
    if more > 0 {
        let (snap, _) = jdos_scheduler::store_planner::load_snapshot(st.store())
            .await
            .map_err(StepError::retry)?;
        let group = live[0].id.group_key();
        for index in jdos_scheduler::choose_victims(&snap, &members, more) {
            victims.push(InstanceId::new(&group, index));
        }
    }
    Ok(victims)
}

/// Waits until the agents removed the retired `ids` (finalizing those
/// ready as it goes).
pub(super) async fn wait_gone(
    ctx: &mut StepContext,
    st: &AppState,
    ids: &[InstanceId],
    timeout_ms: u64,
) -> Result<StepOutcome, StepError> {
    if ids.is_empty() {
        return Ok(StepOutcome::nothing("nothing to wait for"));
    }
    st.platform().finalize_ids(ids).await.map_err(perr)?;
    let left = common::records(st, ids).await?;
    let done = (ids.len() - left.len()) as u64;
    ctx.set_progress(done, ids.len() as u64, "containers").await;
    if left.is_empty() {
        return Ok(StepOutcome::done(format!(
            "{} container(s) removed",
            ids.len()
        )));
    }
    let elapsed = common::step_elapsed_ms(ctx);
    if elapsed >= timeout_ms {
        let refs: Vec<&jdos_types::Container> = left.iter().collect();
        return Err(StepError::fatal(format!(
            "{} of {} container(s) not removed after {} s (their agents did not report them gone): {}",
            left.len(),
            ids.len(),
            elapsed / 1000,
            common::describe(&refs)
        )));
    }
    Ok(StepOutcome::wait(
        common::POLL,
        format!("{done}/{} removed", ids.len()),
    ))
}

/// Releases what the retired `ids` still hold; retried until every record
/// is gone.
pub(super) async fn finalize(st: &AppState, ids: &[InstanceId]) -> Result<StepOutcome, StepError> {
    if ids.is_empty() {
        return Ok(StepOutcome::nothing("nothing to finalize"));
    }
    st.platform().finalize_ids(ids).await.map_err(perr)?;
    let left = common::records(st, ids).await?;
    if !left.is_empty() {
        return Err(StepError::retry(format!(
            "{} container(s) still hold their records",
            left.len()
        )));
    }
    Ok(StepOutcome::done(format!(
        "{} container(s) finalized: allocations released, addresses in quarantine",
        ids.len()
    )))
}

/// Retires and finalizes what a failed scale-out placed, and puts the
/// group's replicas back.
pub(super) async fn undo_placement(
    st: &AppState,
    task: &Task,
    key: &jdos_types::GroupKey,
    data: &ScaleData,
) -> Result<(), StepError> {
    // The data may miss containers placed by a `place` that failed midway
    // (its save never happened): every unpublished live container of the
    // group is this task's (the app mutex keeps other tasks out).
    let mut ids = data.placed.clone();
    for c in common::live(st, key).await? {
        if !ids.contains(&c.id) && !common::published(st, &c).await? {
            ids.push(c.id);
        }
    }
    if !ids.is_empty() {
        st.platform().retire(&ids).await.map_err(perr)?;
        st.platform().finalize_ids(&ids).await.map_err(perr)?;
    }
    if let (Some(prev), Some(target)) = (data.prev_replicas, data.target) {
        if prev != target {
            if let Some(g) = common::group(st, key).await? {
                if g.value.replicas == target {
                    let mut next: Group = g.value.clone();
                    next.replicas = prev;
                    let msg = format!("replicas back to {prev}: task {} failed", task.id);
                    if !common::write_group(st, task, &next, g.mod_revision, "group.scale", msg)
                        .await?
                    {
                        return Err(StepError::retry("the group changed while restoring it"));
                    }
                }
            }
        }
    }
    let left = common::records(st, &ids).await?;
    if !left.is_empty() {
        return Err(StepError::retry(format!(
            "{} placed container(s) are not removed yet (their agents have not reported them gone)",
            left.len()
        )));
    }
    Ok(())
}
