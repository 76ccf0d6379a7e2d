//! `resize`: new cpu / memory for every container of a group.
//!
//! The group's template takes the new size first (so later placements use
//! it). Then each container whose host has room is resized **in place**:
//! one transaction moves the host's allocation by the difference, writes
//! the record's resources and the work order (same generation, new
//! resources), compared against the revisions it read so it never
//! overcommits a host. The agent sees a work order whose only change is the
//! resources and applies it with `Driver::update_resources` (a live cgroup
//! update, no restart). Containers whose host has no room are **migrated**:
//! re-placed on a host that fits the new size, same IP.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::Assignment;
use jdos_types::container::DesiredState;
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, Group, Host, InstanceId, Resources};
use jdos_workflow::{Operation, StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::{Deserialize, Serialize};

use super::common::{self, perr};
use super::params::{timeout_ms, ResizeParams};
use super::OpsContext;
use crate::events::{Commit, Mutation};
use crate::kv;
use crate::state::AppState;

const STEPS: [&str; 4] = [
    "update_template",
    "resize_in_place",
    "migrate_rest",
    "wait_running",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ResizeData {
    /// Resized where they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    in_place: Vec<InstanceId>,
    /// Whose host had no room, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_move: Option<Vec<InstanceId>>,
}

/// The `resize` operation.
pub(super) struct ResizeOp {
    cx: Arc<OpsContext>,
}

impl ResizeOp {
    pub(super) fn new(cx: Arc<OpsContext>) -> Self {
        ResizeOp { cx }
    }
}

fn same_size(a: &Resources, b: &Resources) -> bool {
    a.cpu_millis == b.cpu_millis && a.memory_bytes == b.memory_bytes
}

/// Outcome of one in-place attempt.
enum InPlace {
    Done,
    NoRoom(String),
    Stale,
}

/// Resizes one container where it is, if its host has room.
async fn resize_one(
    st: &AppState,
    task: &Task,
    group: &Group,
    c: &Container,
    rev: u64,
) -> Result<InPlace, StepError> {
    let want = group.template.resources;
    let Some(host) = &c.host else {
        return Ok(InPlace::NoRoom("not placed".into()));
    };
    let Some(h) = kv::get_json::<Host>(st.store(), &keys::host(host)).await? else {
        return Ok(InPlace::NoRoom(format!("host {host} is gone")));
    };
    let alloc = kv::get_json::<HostAllocation>(st.store(), &keys::alloc(host)).await?;
    let (mut a, arev) = match alloc {
        Some(v) => (v.value, v.mod_revision),
        None => {
            return Ok(InPlace::NoRoom(format!(
                "host {host} has no allocation record"
            )))
        }
    };
    let next = a
        .allocated
        .saturating_sub(&c.resources)
        .saturating_add(&want);
    if !next.fits_in(&h.value.capacity) {
        let what = next
            .first_exceeding(&h.value.capacity)
            .unwrap_or("capacity");
        return Ok(InPlace::NoRoom(format!("host {host} has no room ({what})")));
    }
    a.allocated = next;
    let mut rec = c.clone();
    rec.resources = want;
    rec.updated_at_ms = st.now_ms();
    let mut compares = vec![
        Compare::mod_revision(keys::alloc(host), arev),
        Compare::mod_revision(keys::container(&c.id), rev),
    ];
    let mut ops = vec![
        TxnOp::put(keys::alloc(host), json::encode(&a)?),
        TxnOp::put(keys::container(&c.id), json::encode(&rec)?),
    ];
    let akey = keys::assignment(host, &c.id);
    if let Some(kv) = st.store().get(&akey).await? {
        let mut order: Assignment = json::decode(&kv)?;
        order.container.resources = want;
        order.template.resources = want;
        compares.push(Compare::mod_revision(akey.as_str(), kv.mod_revision));
        ops.push(TxnOp::put(akey.as_str(), json::encode(&order)?));
    }
    let m = Mutation {
        compares,
        ops,
        event: common::event(task, "container.resize", "container", &c.id.to_string()).message(
            format!(
                "in place on {host}: cpu {}m → {}m, memory {} → {} MiB",
                c.resources.cpu_millis,
                want.cpu_millis,
                c.resources.memory_bytes >> 20,
                want.memory_bytes >> 20
            ),
        ),
    };
    Ok(
        match st.events().commit(st.store(), m, st.now_ms()).await? {
            Commit::Done { .. } => InPlace::Done,
            Commit::Stale => InPlace::Stale,
        },
    )
}

#[async_trait]
impl Operation for ResizeOp {
    fn kind(&self) -> &'static str {
        super::RESIZE
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        common::checked_params(self.kind(), task, ResizeParams::validate)?;
        Ok(STEPS.iter().map(|s| s.to_string()).collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let st = self.cx.state()?;
        let p: ResizeParams = ctx.params()?;
        let mut data: ResizeData = ctx.data()?;
        let task = ctx.task().clone();
        match step {
            "update_template" => {
                let g = common::require_group(&st, &p.group).await?;
                let want = p.apply(&g.value.template.resources);
                if same_size(&g.value.template.resources, &want) {
                    return Ok(StepOutcome::done("template already at the new size"));
                }
                let mut next = g.value.clone();
                next.template.resources = want;
                let msg = format!(
                    "template resized: cpu {}m → {}m, memory {} → {} MiB",
                    g.value.template.resources.cpu_millis,
                    want.cpu_millis,
                    g.value.template.resources.memory_bytes >> 20,
                    want.memory_bytes >> 20
                );
                if common::write_group(
                    &st,
                    &task,
                    &next,
                    g.mod_revision,
                    "group.resize",
                    msg.clone(),
                )
                .await?
                {
                    Ok(StepOutcome::done(msg))
                } else {
                    Err(StepError::retry(
                        "the group changed while resizing its template",
                    ))
                }
            }
            "resize_in_place" => {
                if let Some(m) = &data.to_move {
                    return Ok(StepOutcome::done(format!(
                        "{} resized in place, {} to migrate",
                        data.in_place.len(),
                        m.len()
                    )));
                }
                let g = common::require_group(&st, &p.group).await?;
                let want = g.value.template.resources;
                let live = common::live(&st, &p.group).await?;
                let todo: Vec<&Container> = live
                    .iter()
                    .filter(|c| !same_size(&c.resources, &want))
                    .collect();
                let total = todo.len() as u64;
                let mut to_move = Vec::new();
                let mut why: BTreeMap<String, usize> = BTreeMap::new();
                for (i, c) in todo.iter().enumerate() {
                    let mut outcome = InPlace::Stale;
                    // A stale read (the host got another container) is re-read.
                    for _ in 0..8 {
                        let Some((cur, rev)) = st
                            .platform()
                            .records(std::slice::from_ref(&c.id))
                            .await
                            .map_err(perr)?
                            .into_iter()
                            .next()
                        else {
                            outcome = InPlace::Done;
                            break;
                        };
                        if cur.desired == DesiredState::Deleted || same_size(&cur.resources, &want)
                        {
                            outcome = InPlace::Done;
                            break;
                        }
                        outcome = resize_one(&st, &task, &g.value, &cur, rev).await?;
                        if !matches!(outcome, InPlace::Stale) {
                            break;
                        }
                    }
                    match outcome {
                        InPlace::Done => data.in_place.push(c.id.clone()),
                        InPlace::NoRoom(reason) => {
                            *why.entry(reason).or_default() += 1;
                            to_move.push(c.id.clone());
                        }
                        InPlace::Stale => {
                            return Err(StepError::retry(format!(
                                "{} kept changing while resizing it",
                                c.id
                            )))
                        }
                    }
                    ctx.set_progress(i as u64 + 1, total, "containers").await;
                }
                let n_move = to_move.len();
                data.to_move = Some(to_move);
                ctx.save_data(&data).await?;
                let reasons: Vec<String> = why.iter().map(|(r, n)| format!("{n}× {r}")).collect();
                Ok(StepOutcome::done(if n_move == 0 {
                    format!("{} container(s) resized in place", data.in_place.len())
                } else {
                    format!(
                        "{} resized in place; {n_move} to migrate: {}",
                        data.in_place.len(),
                        reasons.join("; ")
                    )
                }))
            }
            "migrate_rest" => {
                let ids = data.to_move.clone().unwrap_or_default();
                if ids.is_empty() {
                    return Ok(StepOutcome::done("nothing to migrate"));
                }
                let g = common::require_group(&st, &p.group).await?;
                let want = g.value.template.resources;
                // Those still at the old size are still on their old host.
                let recs = common::records(&st, &ids).await?;
                let avoid: Vec<String> = recs
                    .iter()
                    .filter(|c| !same_size(&c.resources, &want))
                    .filter_map(|c| c.host.clone())
                    .collect();
                let moved = st
                    .platform()
                    .relocate(
                        &g.value,
                        &ids,
                        &avoid,
                        &format!("resize (task {})", task.id),
                    )
                    .await
                    .map_err(perr)?;
                st.platform().publish(&g.value, &ids).await.map_err(perr)?;
                Ok(StepOutcome::done(format!(
                    "{} container(s) moved to hosts with room",
                    moved.len()
                )))
            }
            "wait_running" => {
                let ids = data.to_move.clone().unwrap_or_default();
                common::wait_until(
                    ctx,
                    &st,
                    &ids,
                    timeout_ms(p.timeout_secs),
                    "running at the new size",
                    common::is_running,
                )
                .await
            }
            other => Err(StepError::fatal(format!("resize has no step {other:?}"))),
        }
    }
}
