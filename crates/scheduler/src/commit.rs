//! Optimistic commit: the seam between the pure scheduler and the store.
//!
//! As in Nomad, the scheduler plans against a snapshot and hands the plan to
//! a [`Planner`]. Here the planner commits the whole plan as one
//! compare-and-swap: it holds only if every chosen host's allocation and the
//! group's placement record are still at the revisions the plan was made
//! from. The host revisions stop two schedulers from overcommitting a host;
//! the group record's revision stops them from each placing "the last
//! replica allowed" of one group on the same switch or rack.
//!
//! On a conflict the planner returns the current value of every compared key
//! that changed; [`place_and_commit`] applies just those to the snapshot,
//! keeps the replicas whose hosts did not change and re-plans the rest.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use jdos_store::{Compare, TxnOp};
use jdos_types::container::DesiredState;
use jdos_types::topology::HostAllocation;
use jdos_types::{Container, ContainerPhase, GroupKey, InstanceId, UnixMillis};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::place::{Scheduler, Unplaced};
use crate::request::{EffectiveCaps, GroupRequest};
use crate::snapshot::{HostIdx, Snapshot};

/// A group's placement record, at `jdos_types::keys::placement`: which host
/// each container index is on, and the next index to hand out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPlacements {
    /// The group.
    pub group: Option<GroupKey>,
    /// Next container index (indexes are never reused).
    #[serde(default)]
    pub next_index: u32,
    /// Container index → host.
    #[serde(default)]
    pub containers: BTreeMap<u32, String>,
}

/// One host's allocation as the plan will write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWrite {
    /// `mod_revision` of the allocation key the plan was made from.
    pub expected_revision: u64,
    /// The new allocation.
    pub allocation: HostAllocation,
}

/// Everything one placement writes, and the revisions it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPlan {
    /// The group.
    pub group: GroupKey,
    /// `mod_revision` of the group's placement record (0 = absent).
    pub group_revision: u64,
    /// The new placement record.
    pub record: GroupPlacements,
    /// New allocations of the chosen hosts.
    pub hosts: Vec<HostWrite>,
    /// Container records to write (new ones, or moved ones).
    pub containers: Vec<Container>,
    /// Containers this plan moves to another host (their updated records
    /// are in `containers`).
    pub moved: Vec<Moved>,
    /// Containers this plan removes from the group (record entry dropped,
    /// allocation released); their records are deleted.
    pub released: Vec<InstanceId>,
    /// The caller's own conditions, checked in the same transaction.
    pub compares: Vec<Compare>,
    /// The caller's own writes (assignments, IP records …), committed in the
    /// same transaction.
    pub ops: Vec<TxnOp>,
}

/// One container moved by a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Identity.
    pub id: InstanceId,
    /// The host it leaves (`None` when it had none).
    pub from: Option<String>,
    /// The host it goes to.
    pub to: String,
}

/// What the store said about a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitResult {
    /// Written, at this store revision.
    Committed {
        /// Revision of the transaction.
        revision: u64,
    },
    /// Some compared key moved; these are their current values.
    Conflict {
        /// Hosts whose allocation changed: current allocation and revision.
        hosts: Vec<(HostAllocation, u64)>,
        /// The group record, when it changed: current value and revision.
        group: Option<(GroupPlacements, u64)>,
    },
}

/// Commit failures (a conflict is not one: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store failed.
    #[error("store failed while committing a placement: {0}")]
    Store(#[from] jdos_store::StoreError),
    /// The planner refused the plan (e.g. no address left for a container);
    /// nothing was written.
    #[error("placement refused: {0}")]
    Refused(String),
    /// Conflicts kept coming back.
    #[error("placement of {group} still conflicted after {attempts} attempts: other schedulers keep changing the same hosts; retry later")]
    TooManyConflicts {
        /// The group.
        group: GroupKey,
        /// Attempts made.
        attempts: u32,
    },
}

/// Where plans go: a store (see [`crate::store_planner::StorePlanner`]) or a
/// recording fake in tests.
#[async_trait]
pub trait Planner: Send + Sync {
    /// The group's placement record and its revision (0 = absent).
    async fn read_group(&self, group: &GroupKey) -> Result<(GroupPlacements, u64), CommitError>;

    /// Commits the plan atomically, or reports what changed.
    async fn submit(&self, plan: CommitPlan) -> Result<SubmitResult, CommitError>;

    /// Brings the snapshot up to date with what others committed (called
    /// after a conflict, so a re-plan does not pick other stale hosts).
    /// The default does nothing: the conflict's own values still apply.
    fn refresh(&self, snap: &mut Snapshot) -> Result<(), CommitError> {
        let _ = snap;
        Ok(())
    }
}

/// What new container records carry besides their placement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Image.
    pub image: String,
    /// Network the IP will come from, if known.
    pub network: Option<String>,
    /// Creation time (passed in: no clock here).
    pub created_at_ms: UnixMillis,
}

/// The committed result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// New containers and their hosts.
    pub placed: Vec<(InstanceId, String)>,
    /// Replicas that did not fit.
    pub unplaced: Option<Unplaced>,
    /// The caps the placement respects.
    pub caps: EffectiveCaps,
    /// Conflicts met (each one re-planned the conflicting replicas).
    pub conflicts_retried: u32,
    /// Store revision of the commit (0 when nothing was written).
    pub revision: u64,
}

/// Places `req` and commits it through `planner`, retrying conflicts up to
/// `max_attempts` times. The group's existing containers are read from its
/// placement record (`req.existing` is ignored). On success the snapshot
/// holds the store's state for every host written.
pub async fn place_and_commit<P: Planner + ?Sized>(
    sched: &mut Scheduler,
    snap: &mut Snapshot,
    planner: &P,
    req: &GroupRequest,
    spec: &ContainerSpec,
    max_attempts: u32,
) -> Result<CommitOutcome, CommitError> {
    let (mut record, mut group_rev) = planner.read_group(&req.group).await?;
    let mut kept: Vec<HostIdx> = Vec::new();
    let mut conflicts = 0u32;
    loop {
        let mut r = req.clone();
        r.existing = record.containers.values().cloned().collect();
        r.existing
            .extend(kept.iter().map(|&h| snap.host(h).name.clone()));
        r.replicas = req.replicas - kept.len() as u32;
        let plan = sched.place(snap, &r);
        let mut chosen = std::mem::take(&mut kept);
        chosen.extend_from_slice(&plan.placements);
        if chosen.is_empty() {
            return Ok(CommitOutcome {
                placed: Vec::new(),
                unplaced: plan.unplaced,
                caps: plan.caps,
                conflicts_retried: conflicts,
                revision: 0,
            });
        }
        let (commit, placed) = build(snap, req, spec, &record, group_rev, &chosen);
        let span = tracing::debug_span!("commit", group = %req.group, replicas = chosen.len(), attempt = conflicts + 1);
        let result = planner.submit(commit).instrument(span).await?;
        match result {
            SubmitResult::Committed { revision } => {
                for &h in &chosen {
                    let a = HostAllocation {
                        host: snap.host(h).name.clone(),
                        allocated: snap.host(h).allocated,
                        containers: snap.host(h).containers,
                    };
                    snap.set_allocation(h, &a, revision);
                }
                return Ok(CommitOutcome {
                    placed,
                    unplaced: plan.unplaced,
                    caps: plan.caps,
                    conflicts_retried: conflicts,
                    revision,
                });
            }
            SubmitResult::Conflict { hosts, group } => {
                conflicts += 1;
                tracing::debug!(group = %req.group, hosts_changed = hosts.len(), group_changed = group.is_some(), "placement conflict");
                let mut changed: HashSet<HostIdx> = HashSet::new();
                for (a, rev) in &hosts {
                    if let Some(h) = snap.host_index(&a.host) {
                        // The store's value replaces ours, dropping this
                        // plan's reservations on that host.
                        snap.set_allocation(h, a, *rev);
                        changed.insert(h);
                    }
                }
                if let Some((g, rev)) = group {
                    // Someone placed this group meanwhile: caps must be
                    // re-judged with their replicas, so re-plan everything.
                    record = g;
                    group_rev = rev;
                    for &h in &chosen {
                        if !changed.contains(&h) {
                            snap.release(h, &req.resources);
                        }
                    }
                } else {
                    kept = chosen
                        .into_iter()
                        .filter(|h| !changed.contains(h))
                        .collect();
                }
                // A refresh replaces allocations with the store's values,
                // wiping this plan's reservation on any kept host another
                // scheduler changed meanwhile: such replicas are re-planned.
                let before: Vec<u64> = kept.iter().map(|&h| snap.host(h).alloc_revision).collect();
                planner.refresh(snap)?;
                let mut i = 0;
                kept.retain(|&h| {
                    let same = snap.host(h).alloc_revision == before[i];
                    i += 1;
                    same
                });
                if conflicts >= max_attempts {
                    for &h in &kept {
                        snap.release(h, &req.resources);
                    }
                    return Err(CommitError::TooManyConflicts {
                        group: req.group.clone(),
                        attempts: conflicts,
                    });
                }
            }
        }
    }
}

/// Turns chosen hosts into the writes of one transaction.
fn build(
    snap: &Snapshot,
    req: &GroupRequest,
    spec: &ContainerSpec,
    record: &GroupPlacements,
    group_rev: u64,
    chosen: &[HostIdx],
) -> (CommitPlan, Vec<(InstanceId, String)>) {
    let mut new_record = record.clone();
    new_record.group = Some(req.group.clone());
    let mut containers = Vec::with_capacity(chosen.len());
    let mut placed = Vec::with_capacity(chosen.len());
    let mut hosts: HashMap<HostIdx, ()> = HashMap::with_capacity(chosen.len());
    let mut host_writes = Vec::new();
    for &h in chosen {
        let e = snap.host(h);
        let index = new_record.next_index;
        new_record.next_index += 1;
        new_record.containers.insert(index, e.name.clone());
        let id = InstanceId::new(&req.group, index);
        containers.push(Container {
            id: id.clone(),
            datacenter: req.datacenter.clone(),
            host: Some(e.name.clone()),
            host_epoch: e.epoch,
            network: spec.network.clone(),
            ip: None,
            image: spec.image.clone(),
            resources: req.resources,
            desired: DesiredState::Running,
            phase: ContainerPhase::Scheduled,
            restarts: 0,
            message: String::new(),
            created_at_ms: spec.created_at_ms,
            updated_at_ms: spec.created_at_ms,
        });
        placed.push((id, e.name.clone()));
        if hosts.insert(h, ()).is_none() {
            host_writes.push(HostWrite {
                expected_revision: e.alloc_revision,
                // The snapshot holds the store's value plus this plan's
                // reservations, so it is exactly what the host will hold.
                allocation: HostAllocation {
                    host: e.name.clone(),
                    allocated: e.allocated,
                    containers: e.containers,
                },
            });
        }
    }
    (
        CommitPlan {
            group: req.group.clone(),
            group_revision: group_rev,
            record: new_record,
            hosts: host_writes,
            containers,
            moved: Vec::new(),
            released: Vec::new(),
            compares: Vec::new(),
            ops: Vec::new(),
        },
        placed,
    )
}
