//! `migrate`: move containers of a group to other hosts with the same IPs,
//! in two phases: stop them where they are (after their pre-stop hooks),
//! wait until stopped, then re-place them off their old hosts (the work
//! orders move with them), wait until they run there, post-start hooks.
//!
//! A failure before the move (a hook, the wait, no host that fits) starts
//! the stopped containers again where they were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use jdos_types::container::DesiredState;
use jdos_types::{keys, Container, ContainerPhase, Host, HostState, InstanceId};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, MigrateParams};
use super::OpsContext;
use crate::hooks::HookPhase;
use crate::kv;
use crate::state::AppState;

const STEPS: [&str; 7] = [
    "select",
    "pre_stop_hooks",
    "stop",
    "wait_stopped",
    "relocate",
    "wait_running",
    "post_start_hooks",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MigrateData {
    /// The containers to move and the host each was on.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "pairs")]
    from: Option<BTreeMap<InstanceId, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pre_stopped: Vec<InstanceId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    post_started: Vec<InstanceId>,
}

impl MigrateData {
    fn ids(&self) -> Vec<InstanceId> {
        self.from
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn old_hosts(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .from
            .as_ref()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        set.into_iter().collect()
    }
}

/// A map with non-string keys as a JSON list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use jdos_types::InstanceId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type M = Option<BTreeMap<InstanceId, String>>;

    pub(super) fn serialize<S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        m.as_ref()
            .map(|m| m.iter().collect::<Vec<_>>())
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<M, D::Error> {
        let v: Option<Vec<(InstanceId, String)>> = Option::deserialize(d)?;
        Ok(v.map(|v| v.into_iter().collect()))
    }
}

/// The `migrate` operation.
pub(super) struct MigrateOp {
    cx: Arc<OpsContext>,
}

impl MigrateOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        MigrateOp { cx }
    }
}

/// States of hosts, read once per call.
async fn host_states(
    st: &AppState,
    hosts: &[String],
) -> Result<BTreeMap<String, Option<HostState>>, StepError> {
    let mut out = BTreeMap::new();
    for h in hosts {
        if out.contains_key(h) {
            continue;
        }
        let s = kv::get_json::<Host>(st.store(), &keys::host(h))
            .await?
            .map(|v| v.value.state);
        out.insert(h.clone(), s);
    }
    Ok(out)
}

#[async_trait]
impl Operation for MigrateOp {
    fn kind(&self) -> &'static str {
        super::MIGRATE
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params(self.kind(), task, MigrateParams::validate)?;
        Ok(STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: MigrateParams = ctx.params()?;
        let timeout = timeout_ms(p.timeout_secs);
        let mut data: MigrateData = ctx.data()?;
        let task = ctx.task().clone();
        let ids = data.ids();
        match step {
            "select" => {
                if let Some(m) = &data.from {
                    return Ok(StepOutcome::done(format!(
                        "{} container(s) to move",
                        m.len()
                    )));
                }
                let live = common::live(&st, &p.group).await?;
                let mut from = BTreeMap::new();
                if let Some(h) = &p.from_host {
                    for c in live.iter().filter(|c| c.host.as_ref() == Some(h)) {
                        from.insert(c.id.clone(), h.clone());
                    }
                } else {
                    let mut missing = Vec::new();
                    for i in &p.indexes {
                        match live.iter().find(|c| c.id.index == *i) {
                            Some(c) => {
                                let Some(h) = &c.host else {
                                    return Err(StepError::fatal(format!(
                                        "container {} is not placed on a host: nothing to move",
                                        c.id
                                    )));
                                };
                                from.insert(c.id.clone(), h.clone());
                            }
                            None => missing.push(i.to_string()),
                        }
                    }
                    if !missing.is_empty() {
                        return Err(StepError::fatal(format!(
                            "group {} has no live container with index {}",
                            p.group,
                            missing.join(", ")
                        )));
                    }
                }
                let n = from.len();
                let hosts: BTreeSet<&String> = from.values().collect();
                let msg = format!(
                    "{n} container(s) to move off {}",
                    hosts.into_iter().cloned().collect::<Vec<_>>().join(", ")
                );
                data.from = Some(from);
                ctx.save_data(&data).await?;
                Ok(StepOutcome::done(if n == 0 {
                    "nothing to move".into()
                } else {
                    msg
                }))
            }
            "pre_stop_hooks" | "post_start_hooks" => {
                if ids.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to do"));
                }
                let g = common::require_group(&st, &p.group).await?;
                let (phase, mut done) = if step == "pre_stop_hooks" {
                    (HookPhase::PreStop, data.pre_stopped.clone())
                } else {
                    (HookPhase::PostStart, data.post_started.clone())
                };
                let recs = common::records(&st, &ids).await?;
                let r = common::run_hooks(
                    &self.cx.hooks,
                    &st,
                    &task,
                    &g.value,
                    phase,
                    &recs,
                    &mut done,
                )
                .await;
                let slot = if phase == HookPhase::PreStop {
                    &mut data.pre_stopped
                } else {
                    &mut data.post_started
                };
                if *slot != done {
                    *slot = done;
                    ctx.save_data(&data).await?;
                }
                let n = r?;
                Ok(StepOutcome::done(format!(
                    "{phase} hooks ran for {n} container(s)"
                )))
            }
            "stop" => {
                if ids.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to stop"));
                }
                // Only those still on their old host: a re-run after the
                // move must not stop them again.
                let still: Vec<InstanceId> = common::records(&st, &ids)
                    .await?
                    .into_iter()
                    .filter(|c| data.from.as_ref().and_then(|m| m.get(&c.id)) == c.host.as_ref())
                    .map(|c| c.id)
                    .collect();
                st.platform().stop_in_place(&still).await.map_err(perr)?;
                Ok(StepOutcome::done(format!(
                    "{} container(s) told to stop",
                    still.len()
                )))
            }
            "wait_stopped" => {
                let recs = common::records(&st, &ids).await?;
                let hosts: Vec<String> = recs.iter().filter_map(|c| c.host.clone()).collect();
                let states = host_states(&st, &hosts).await?;
                let stopped: BTreeSet<InstanceId> = recs
                    .iter()
                    .filter(|c| is_stopped(c, &states))
                    .map(|c| c.id.clone())
                    .collect();
                common::wait_until(ctx, &st, &ids, timeout, "stopped", |c| {
                    stopped.contains(&c.id)
                })
                .await
            }
            "relocate" => {
                if ids.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to move"));
                }
                let g = common::require_group(&st, &p.group).await?;
                let avoid = data.old_hosts();
                let moved = st
                    .platform()
                    .relocate(
                        &g.value,
                        &ids,
                        &avoid,
                        &format!("migrate (task {})", task.id),
                    )
                    .await
                    .map_err(perr)?;
                // Work orders follow a relocated container; one never
                // published before gets its first here.
                st.platform().publish(&g.value, &ids).await.map_err(perr)?;
                let to: BTreeSet<String> = moved.iter().filter_map(|c| c.host.clone()).collect();
                Ok(StepOutcome::done(format!(
                    "{} container(s) moved to {}",
                    moved.len(),
                    to.into_iter().collect::<Vec<_>>().join(", ")
                )))
            }
            "wait_running" => {
                let from = data.from.clone().unwrap_or_default();
                common::wait_until(ctx, &st, &ids, timeout, "running on their new host", |c| {
                    common::is_running(c) && from.get(&c.id) != c.host.as_ref()
                })
                .await
            }
            other => Err(StepError::fatal(format!("migrate has no step {other:?}"))),
        }
    }

    async fn compensate(&self, ctx: &mut StepContext, failed_step: &str) -> Result<(), StepError> {
        if !matches!(failed_step, "stop" | "wait_stopped" | "relocate") {
            return Ok(());
        }
        let st = self.cx.state()?;
        let p: MigrateParams = ctx.params()?;
        let data: MigrateData = ctx.data()?;
        let Some(g) = common::group(&st, &p.group).await? else {
            return Ok(());
        };
        // Start again where they were those that did not move.
        let back: Vec<InstanceId> = common::records(&st, &data.ids())
            .await?
            .into_iter()
            .filter(|c| c.desired == DesiredState::Stopped)
            .map(|c| c.id)
            .collect();
        if !back.is_empty() {
            st.platform().publish(&g.value, &back).await.map_err(perr)?;
        }
        Ok(())
    }
}

/// Stopped for the move: reported stopped or never started, or its host
/// is down or gone (no agent will report, and nothing runs there).
fn is_stopped(c: &Container, hosts: &BTreeMap<String, Option<HostState>>) -> bool {
    let host_dead = c
        .host
        .as_ref()
        .and_then(|h| hosts.get(h))
        .is_none_or(|s| s.is_none_or(|s| s == HostState::Down));
    host_dead
        || matches!(
            c.phase,
            ContainerPhase::Stopped
                | ContainerPhase::Failed
                | ContainerPhase::Lost
                | ContainerPhase::Scheduled
                | ContainerPhase::Pending
        )
}
