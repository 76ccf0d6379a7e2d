//! `snapshot_scale`: commit a running container of a group to an image and
//! scale the group out with clones made from it.
//!
//! The server cannot reach an engine, so the commit goes through the
//! source's agent: the step `order_commit` sets
//! [`Assignment::snapshot`](jdos_types::agent::Assignment) on the source's
//! work order; the agent commits the container to that reference and
//! reports the outcome, which the server keeps at
//! [`keys::snapshot`](jdos_types::keys::snapshot); `clear_order` then takes
//! the order back. Durable and idempotent: the order and the outcome live in
//! the store, the reference names this task
//! (`jdos-snapshot/<app>-<group>:<task id>`), and an agent commits a
//! reference once per life — a step re-run finds the order or the outcome
//! already there, and a commit repeated by a restarted agent only points
//! the same tag at a fresher snapshot of the same container.
//!
//! Then a scale-out like `scale`'s (replicas → place → pre-start hooks →
//! publish → wait running → post-start hooks, compensated the same way
//! before publication) whose new containers' records and work orders carry
//! the snapshot image. The group's template keeps its image: the clones are
//! the only containers made from the snapshot, and a later rolling update
//! (or anything that republishes from the template) makes them from the
//! template's image again.
//!
//! An image exists in one engine. Clones are placed on the source's host
//! only (the implicit host label [`HOST_LABEL`]), unless `any_host` says
//! every target engine has the image — one engine shared by the agents, or
//! the snapshot pushed to a registry the hosts pull from (not done by jdos
//! yet). A clone placed where the image is missing fails its create, and the
//! task fails naming it.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::{Assignment, SnapshotReport};
use jdos_types::group::HOST_LABEL;
use jdos_types::{keys, Container, ContainerPhase, Group, InstanceId};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, SnapshotScaleParams};
use super::scale::{undo_placement, ScaleData};
use super::OpsContext;
use crate::events::{Commit, Mutation};
use crate::hooks::HookPhase;
use crate::kv;
use crate::state::AppState;

const STEPS: [&str; 10] = [
    "choose_source",
    "order_commit",
    "wait_commit",
    "clear_order",
    "set_replicas",
    "place",
    "pre_start_hooks",
    "publish",
    "wait_running",
    "post_start_hooks",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SnapshotData {
    /// The container snapshot, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<InstanceId>,
    /// Its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// The image reference committed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    /// The engine's image id, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
    /// The scale-out's bookkeeping (as `scale` keeps it).
    #[serde(default)]
    scale: ScaleData,
}

/// The `snapshot_scale` operation.
pub(super) struct SnapshotScaleOp {
    cx: Arc<OpsContext>,
}

impl SnapshotScaleOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        SnapshotScaleOp { cx }
    }
}

/// The image reference of the snapshot task `task_id` takes of `group`.
fn reference(p: &SnapshotScaleParams, task_id: &str) -> String {
    let repo: String = format!("{}-{}", p.group.app, p.group.group)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("jdos-snapshot/{repo}:{task_id}")
}

/// The group as the clones are made from it: the snapshot image and, unless
/// any host may take them, pinned to the source's host.
fn clone_group(g: &Group, p: &SnapshotScaleParams, data: &SnapshotData) -> Group {
    let mut g = g.clone();
    if let Some(r) = &data.reference {
        g.template.image = r.clone();
    }
    if !p.any_host {
        if let Some(h) = &data.host {
            g.placement
                .required_labels
                .insert(HOST_LABEL.to_string(), h.clone());
        }
    }
    g
}

/// Sets (`Some`) or clears (`None`) the snapshot order on `src`'s work
/// order; `false` when the order changed meanwhile (re-read). A missing
/// work order is an error only when setting.
async fn set_order(
    st: &AppState,
    task: &Task,
    host: &str,
    src: &InstanceId,
    reference: Option<&str>,
) -> Result<bool, StepError> {
    let akey = keys::assignment(host, src);
    let Some(kv) = st.store().get(&akey).await? else {
        return match reference {
            Some(_) => Err(StepError::fatal(format!(
                "{src} has no work order on {host} any more (moved or deleted): nothing to snapshot"
            ))),
            None => Ok(true),
        };
    };
    let mut order: Assignment = json::decode(&kv).map_err(StepError::fatal)?;
    if order.snapshot.as_deref() == reference {
        return Ok(true);
    }
    order.snapshot = reference.map(str::to_string);
    let message = match reference {
        Some(r) => format!("the agent of {host} is asked to commit it to {r}"),
        None => "snapshot order withdrawn".to_string(),
    };
    let m = Mutation {
        compares: vec![Compare::mod_revision(akey.as_str(), kv.mod_revision)],
        ops: vec![TxnOp::put(
            akey.as_str(),
            json::encode(&order).map_err(StepError::fatal)?,
        )],
        event: common::event(task, "container.snapshot", "container", &src.to_string())
            .message(message),
    };
    Ok(matches!(
        st.events().commit(st.store(), m, st.now_ms()).await?,
        Commit::Done { .. }
    ))
}

impl SnapshotScaleOp {
    async fn choose_source(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        p: &SnapshotScaleParams,
        data: &mut SnapshotData,
    ) -> Result<StepOutcome, StepError> {
        if let (Some(src), Some(host)) = (&data.source, &data.host) {
            return Ok(StepOutcome::done(format!("source {src} on {host}")));
        }
        common::require_group(st, &p.group).await?;
        let live = common::live(st, &p.group).await?;
        if p.replicas as usize <= live.len() {
            return Err(StepError::fatal(format!(
                "group {} has {} live container(s): a snapshot scale-out needs replicas above that (use scale to remove containers)",
                p.group,
                live.len()
            )));
        }
        let src: &Container = match p.source_index {
            Some(i) => {
                let c = live.iter().find(|c| c.id.index == i).ok_or_else(|| {
                    StepError::fatal(format!("group {} has no container with index {i}", p.group))
                })?;
                if !common::is_running(c) {
                    let msg = format!(
                        "{} is {}: only a running container can be snapshot",
                        c.id,
                        c.phase.as_str()
                    );
                    // Starting or restarting (a failed probe): worth the
                    // step's retries; stopped or failed: not.
                    return Err(if settling(c) {
                        StepError::retry(msg)
                    } else {
                        StepError::fatal(msg)
                    });
                }
                c
            }
            None => match live
                .iter()
                .filter(|c| common::is_running(c))
                .min_by_key(|c| c.id.index)
            {
                Some(c) => c,
                None => {
                    let msg = format!("group {} has no running container to snapshot", p.group);
                    return Err(if live.iter().any(settling) {
                        StepError::retry(msg)
                    } else {
                        StepError::fatal(msg)
                    });
                }
            },
        };
        let host = src
            .host
            .clone()
            .ok_or_else(|| StepError::fatal(format!("{} is not placed on a host", src.id)))?;
        if !common::published(st, src).await? {
            return Err(StepError::fatal(format!(
                "{} has no work order on {host}: nothing runs to snapshot",
                src.id
            )));
        }
        let msg = format!("source {} on {host}", src.id);
        data.source = Some(src.id.clone());
        data.host = Some(host);
        data.reference = Some(reference(p, &ctx.task().id));
        ctx.save_data(&*data).await?;
        Ok(StepOutcome::done(msg))
    }

    async fn wait_commit(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        p: &SnapshotScaleParams,
        data: &mut SnapshotData,
    ) -> Result<StepOutcome, StepError> {
        let (src, host, r) = source(data)?;
        if let Some(id) = &data.image_id {
            return Ok(StepOutcome::done(format!("{src} committed to {r} ({id})")));
        }
        if let Some(rep) = kv::get_json::<SnapshotReport>(st.store(), &keys::snapshot(&r)).await? {
            let rep = rep.value;
            if !rep.error.is_empty() {
                return Err(StepError::fatal(format!(
                    "the agent of {host} could not commit {src} to {r}: {}",
                    rep.error
                )));
            }
            let msg = format!("{src} committed to {r} ({})", rep.image_id);
            data.image_id = Some(rep.image_id);
            ctx.save_data(&*data).await?;
            return Ok(StepOutcome::done(msg));
        }
        if common::records(st, std::slice::from_ref(&src))
            .await?
            .is_empty()
        {
            return Err(StepError::fatal(format!(
                "{src} was deleted before its agent committed it"
            )));
        }
        let elapsed = common::step_elapsed_ms(ctx);
        if elapsed >= timeout_ms(p.timeout_secs) {
            return Err(StepError::fatal(format!(
                "the agent of {host} did not report the commit of {src} within {} s (is the host up?)",
                elapsed / 1000
            )));
        }
        Ok(StepOutcome::wait(
            common::POLL,
            format!("waiting for the agent of {host} to commit {src}"),
        ))
    }

    /// Pre- or post-start hooks of the clones.
    async fn hooks(
        &self,
        ctx: &mut StepContext,
        st: &AppState,
        p: &SnapshotScaleParams,
        data: &mut SnapshotData,
        phase: HookPhase,
    ) -> Result<StepOutcome, StepError> {
        if data.scale.placed.is_empty() {
            return Ok(StepOutcome::nothing("no new container"));
        }
        let g = common::require_group(st, &p.group).await?;
        if phase.of(&g.value.template.hooks).is_empty() {
            return Ok(StepOutcome::nothing(format!("no {phase} hooks")));
        }
        let recs = common::records(st, &data.scale.placed).await?;
        let task = ctx.task().clone();
        let slot = match phase {
            HookPhase::PreStart => &mut data.scale.pre_started,
            _ => &mut data.scale.post_started,
        };
        let before = slot.clone();
        let r = common::run_hooks(&self.cx.hooks, st, &task, &g.value, phase, &recs, slot).await;
        if *slot != before {
            ctx.save_data(&*data).await?;
        }
        let n = r?;
        Ok(StepOutcome::done(format!(
            "{phase} hooks ran for {n} container(s)"
        )))
    }
}

/// The chosen source, its host and the reference.
fn source(data: &SnapshotData) -> Result<(InstanceId, String, String), StepError> {
    match (&data.source, &data.host, &data.reference) {
        (Some(s), Some(h), Some(r)) => Ok((s.clone(), h.clone(), r.clone())),
        _ => Err(StepError::fatal(
            "no source was chosen (choose_source did not run)",
        )),
    }
}

#[async_trait]
impl Operation for SnapshotScaleOp {
    fn kind(&self) -> &'static str {
        super::SNAPSHOT_SCALE
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params(self.kind(), task, SnapshotScaleParams::validate)?;
        Ok(STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: SnapshotScaleParams = ctx.params()?;
        let mut data: SnapshotData = ctx.data()?;
        let task = ctx.task().clone();
        match step {
            "choose_source" => self.choose_source(ctx, &st, &p, &mut data).await,
            "order_commit" => {
                let (src, host, r) = source(&data)?;
                if kv::get_json::<SnapshotReport>(st.store(), &keys::snapshot(&r))
                    .await?
                    .is_some()
                {
                    return Ok(StepOutcome::done(format!("{src} already committed")));
                }
                if set_order(&st, &task, &host, &src, Some(&r)).await? {
                    Ok(StepOutcome::done(format!(
                        "the agent of {host} is asked to commit {src} to {r}"
                    )))
                } else {
                    Err(StepError::retry(format!(
                        "the work order of {src} changed while ordering the commit"
                    )))
                }
            }
            "wait_commit" => self.wait_commit(ctx, &st, &p, &mut data).await,
            "clear_order" => {
                let (src, host, _) = source(&data)?;
                if set_order(&st, &task, &host, &src, None).await? {
                    Ok(StepOutcome::done("snapshot order withdrawn"))
                } else {
                    Err(StepError::retry(format!(
                        "the work order of {src} changed while withdrawing the snapshot order"
                    )))
                }
            }
            "set_replicas" => {
                let g = common::require_group(&st, &p.group).await?;
                if data.scale.target.is_none() {
                    data.scale.prev_replicas = Some(g.value.replicas);
                    data.scale.target = Some(p.replicas);
                    ctx.save_data(&data).await?;
                }
                if g.value.replicas == p.replicas {
                    return Ok(StepOutcome::done(format!("target {} replicas", p.replicas)));
                }
                let mut next = g.value.clone();
                next.replicas = p.replicas;
                let msg = format!(
                    "replicas {} → {} (from a snapshot)",
                    g.value.replicas, p.replicas
                );
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
                        p.group
                    )))
                }
            }
            "place" => {
                let target = data.scale.target.unwrap_or(p.replicas);
                let g = common::require_group(&st, &p.group).await?;
                let mut group = clone_group(&g.value, &p, &data);
                group.replicas = target;
                let live = st
                    .platform()
                    .place_missing(&group, target)
                    .await
                    .map_err(perr)?;
                let mut placed = data.scale.placed.clone();
                for c in &live {
                    if !placed.contains(&c.id) && !common::published(&st, c).await? {
                        placed.push(c.id.clone());
                    }
                }
                placed.sort();
                if placed != data.scale.placed {
                    data.scale.placed = placed;
                    ctx.save_data(&data).await?;
                }
                let hosts: BTreeSet<&str> = live
                    .iter()
                    .filter(|c| data.scale.placed.contains(&c.id))
                    .filter_map(|c| c.host.as_deref())
                    .collect();
                Ok(StepOutcome::done(format!(
                    "{} clone(s) placed on {}",
                    data.scale.placed.len(),
                    hosts.into_iter().collect::<Vec<_>>().join(", ")
                )))
            }
            "pre_start_hooks" => {
                self.hooks(ctx, &st, &p, &mut data, HookPhase::PreStart)
                    .await
            }
            "publish" => {
                if data.scale.placed.is_empty() {
                    return Ok(StepOutcome::nothing("nothing to publish"));
                }
                let g = common::require_group(&st, &p.group).await?;
                let group = clone_group(&g.value, &p, &data);
                st.platform()
                    .publish(&group, &data.scale.placed)
                    .await
                    .map_err(perr)?;
                Ok(StepOutcome::done(format!(
                    "{} work order(s) published with image {}",
                    data.scale.placed.len(),
                    group.template.image
                )))
            }
            "wait_running" => {
                common::wait_until(
                    ctx,
                    &st,
                    &data.scale.placed,
                    timeout_ms(p.timeout_secs),
                    "running from the snapshot",
                    common::is_running,
                )
                .await
            }
            "post_start_hooks" => {
                self.hooks(ctx, &st, &p, &mut data, HookPhase::PostStart)
                    .await
            }
            other => Err(StepError::fatal(format!(
                "snapshot_scale has no step {other:?}"
            ))),
        }
    }

    async fn compensate(&self, ctx: &mut StepContext, failed_step: &str) -> Result<(), StepError> {
        let st = self.cx.state()?;
        let p: SnapshotScaleParams = ctx.params()?;
        let data: SnapshotData = ctx.data()?;
        let task = ctx.task().clone();
        // An order left standing would make the agent commit later for
        // nobody.
        if let Ok((src, host, _)) = source(&data) {
            if !set_order(&st, &task, &host, &src, None).await? {
                return Err(StepError::retry("the source's work order changed"));
            }
        }
        // As `scale`: once the clones' work orders are out they are the
        // user's to see; before, what this task placed is undone.
        if matches!(failed_step, "place" | "pre_start_hooks" | "publish") {
            undo_placement(&st, &task, &p.group, &data.scale).await?;
        }
        Ok(())
    }
}

/// On its way to running (placed, starting, or restarting after a failed
/// health probe): a snapshot waits for it within the step's retries.
fn settling(c: &Container) -> bool {
    matches!(
        c.phase,
        ContainerPhase::Pending
            | ContainerPhase::Scheduled
            | ContainerPhase::Starting
            | ContainerPhase::Unhealthy
    )
}
