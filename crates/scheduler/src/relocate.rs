//! Moving and releasing existing containers: the optimistic-commit loops for
//! relocation (failover, drain, migrate) and for scale-in / deletion.
//!
//! Both follow [`crate::commit::place_and_commit`]: plan against the
//! snapshot, commit one transaction comparing every touched host's
//! allocation and the group's placement record, and on a conflict take the
//! store's values, undo this plan's own changes to the snapshot and plan
//! again. A relocation releases the old hosts' allocations and reserves the
//! new ones in the same transaction, so an allocation always equals the sum
//! of the containers the placement records put on that host.

use std::collections::{BTreeSet, HashSet};

use jdos_types::topology::HostAllocation;
use jdos_types::{Container, ContainerPhase, GroupKey, InstanceId, UnixMillis};
use tracing::Instrument;

use crate::commit::{CommitError, CommitPlan, HostWrite, Moved, Planner, SubmitResult};
use crate::place::{Scheduler, Unplaced};
use crate::request::{EffectiveCaps, GroupRequest};
use crate::snapshot::{HostIdx, Snapshot};

/// The committed result of [`relocate_and_commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocateOutcome {
    /// What moved where.
    pub moved: Vec<Moved>,
    /// The moved containers' records as written.
    pub records: Vec<Container>,
    /// Containers that found no host (they stay where they are).
    pub unplaced: Option<Unplaced>,
    /// The caps the new placement respects.
    pub caps: EffectiveCaps,
    /// Conflicts met.
    pub conflicts_retried: u32,
    /// Store revision of the commit (0 when nothing was written).
    pub revision: u64,
}

/// The committed result of [`release_and_commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseOutcome {
    /// Containers removed from the group.
    pub released: Vec<InstanceId>,
    /// Conflicts met.
    pub conflicts_retried: u32,
    /// Store revision of the commit (0 when nothing was written).
    pub revision: u64,
}

/// Moves `containers` (existing members of `req.group`) to hosts outside
/// `avoid` and outside their current hosts, keeping the group's hard caps
/// over its whole membership. `req.replicas` and `req.existing` are ignored
/// (the placement record is the truth); `req.resources` is what the new
/// hosts reserve (the template's current size, so a move also applies a
/// resize), while each old host releases what the record says its container
/// holds. The moved records get the new host, its epoch, `req.resources`,
/// phase `scheduled` and `now_ms`; everything else (IP, network, desired)
/// is kept. Containers that fit nowhere are reported in `unplaced` and stay;
/// containers the placement record no longer lists (released) are skipped.
#[allow(clippy::too_many_arguments)]
pub async fn relocate_and_commit<P: Planner + ?Sized>(
    sched: &mut Scheduler,
    snap: &mut Snapshot,
    planner: &P,
    req: &GroupRequest,
    containers: &[Container],
    avoid: &[String],
    now_ms: UnixMillis,
    max_attempts: u32,
) -> Result<RelocateOutcome, CommitError> {
    let (mut record, mut group_rev) = planner.read_group(&req.group).await?;
    let mut conflicts = 0u32;
    loop {
        // The placement record says where each member is; a container it
        // does not list was released meanwhile and is not moved (its
        // allocation is gone: releasing it again would corrupt the host's).
        let moving: Vec<(&Container, Option<String>)> = containers
            .iter()
            .filter_map(|c| {
                let from = record.containers.get(&c.id.index)?;
                Some((c, Some(from.clone())))
            })
            .collect();
        let moving_idx: HashSet<u32> = moving.iter().map(|(c, _)| c.id.index).collect();
        let mut r = req.clone();
        r.replicas = moving.len() as u32;
        r.existing = record
            .containers
            .iter()
            .filter(|(i, _)| !moving_idx.contains(i))
            .map(|(_, h)| h.clone())
            .collect();
        let avoid_idx: Vec<HostIdx> = avoid
            .iter()
            .map(String::as_str)
            .chain(moving.iter().filter_map(|(_, f)| f.as_deref()))
            .filter_map(|h| snap.host_index(h))
            .collect();
        let plan = sched.place_avoiding(snap, &r, &avoid_idx);
        if moving.is_empty() || plan.placements.is_empty() {
            return Ok(RelocateOutcome {
                moved: Vec::new(),
                records: Vec::new(),
                unplaced: plan.unplaced,
                caps: plan.caps,
                conflicts_retried: conflicts,
                revision: 0,
            });
        }
        // The scheduler reserved the new hosts; release the old ones.
        let mut new_hosts = Vec::with_capacity(plan.placements.len());
        let mut old_hosts = Vec::new();
        for ((c, from), &h) in moving.iter().zip(&plan.placements) {
            new_hosts.push(h);
            if let Some(o) = from.as_deref().and_then(|f| snap.host_index(f)) {
                snap.release(o, &c.resources);
                old_hosts.push((o, c.resources));
            }
        }
        let mut new_record = record.clone();
        new_record.group = Some(req.group.clone());
        let mut records = Vec::with_capacity(new_hosts.len());
        let mut moved = Vec::with_capacity(new_hosts.len());
        for ((c, from), &h) in moving.iter().zip(&new_hosts) {
            let e = snap.host(h);
            new_record.containers.insert(c.id.index, e.name.clone());
            let mut n = (*c).clone();
            n.host = Some(e.name.clone());
            n.host_epoch = e.epoch;
            n.resources = req.resources;
            n.phase = ContainerPhase::Scheduled;
            n.updated_at_ms = now_ms;
            records.push(n);
            moved.push(Moved {
                id: c.id.clone(),
                from: from.clone(),
                to: e.name.clone(),
            });
        }
        let touched: BTreeSet<HostIdx> = new_hosts
            .iter()
            .copied()
            .chain(old_hosts.iter().map(|(o, _)| *o))
            .collect();
        let commit = CommitPlan {
            group: req.group.clone(),
            group_revision: group_rev,
            record: new_record,
            hosts: host_writes(snap, &touched),
            containers: records.clone(),
            moved: moved.clone(),
            released: Vec::new(),
            compares: Vec::new(),
            ops: Vec::new(),
        };
        let span = tracing::debug_span!("relocate.commit", group = %req.group, moving = moved.len(), attempt = conflicts + 1);
        match planner.submit(commit).instrument(span).await? {
            SubmitResult::Committed { revision } => {
                settle(snap, &touched, revision);
                return Ok(RelocateOutcome {
                    moved,
                    records,
                    unplaced: plan.unplaced,
                    caps: plan.caps,
                    conflicts_retried: conflicts,
                    revision,
                });
            }
            SubmitResult::Conflict { hosts, group } => {
                conflicts += 1;
                tracing::debug!(group = %req.group, hosts_changed = hosts.len(), group_changed = group.is_some(), "relocation conflict");
                let changed = apply_conflict(snap, &hosts);
                for &h in &new_hosts {
                    if !changed.contains(&h) {
                        snap.release(h, &req.resources);
                    }
                }
                for (o, res) in &old_hosts {
                    if !changed.contains(o) {
                        snap.reserve(*o, res);
                    }
                }
                if let Some((g, rev)) = group {
                    record = g;
                    group_rev = rev;
                }
                planner.refresh(snap)?;
                if conflicts >= max_attempts {
                    return Err(CommitError::TooManyConflicts {
                        group: req.group.clone(),
                        attempts: conflicts,
                    });
                }
            }
        }
    }
}

/// Removes `containers` from `group`: drops their entries from the
/// placement record, releases what each holds on its host and deletes their
/// records, in one transaction (plus the planner's own writes). A container
/// the record no longer lists was released before (a re-run): only its
/// record is deleted.
pub async fn release_and_commit<P: Planner + ?Sized>(
    snap: &mut Snapshot,
    planner: &P,
    group: &GroupKey,
    containers: &[Container],
    max_attempts: u32,
) -> Result<ReleaseOutcome, CommitError> {
    if containers.is_empty() {
        return Ok(ReleaseOutcome {
            released: Vec::new(),
            conflicts_retried: 0,
            revision: 0,
        });
    }
    let (mut record, mut group_rev) = planner.read_group(group).await?;
    let mut conflicts = 0u32;
    loop {
        let mut new_record = record.clone();
        new_record.group = Some(group.clone());
        let mut freed: Vec<(HostIdx, jdos_types::Resources)> = Vec::new();
        for c in containers {
            if let Some(host) = new_record.containers.remove(&c.id.index) {
                if let Some(h) = snap.host_index(&host) {
                    snap.release(h, &c.resources);
                    freed.push((h, c.resources));
                }
            }
        }
        let touched: BTreeSet<HostIdx> = freed.iter().map(|(h, _)| *h).collect();
        let released: Vec<InstanceId> = containers.iter().map(|c| c.id.clone()).collect();
        let commit = CommitPlan {
            group: group.clone(),
            group_revision: group_rev,
            record: new_record,
            hosts: host_writes(snap, &touched),
            containers: Vec::new(),
            moved: Vec::new(),
            released: released.clone(),
            compares: Vec::new(),
            ops: Vec::new(),
        };
        let span = tracing::debug_span!("release.commit", group = %group, releasing = released.len(), attempt = conflicts + 1);
        match planner.submit(commit).instrument(span).await? {
            SubmitResult::Committed { revision } => {
                settle(snap, &touched, revision);
                return Ok(ReleaseOutcome {
                    released,
                    conflicts_retried: conflicts,
                    revision,
                });
            }
            SubmitResult::Conflict { hosts, group: g } => {
                conflicts += 1;
                let changed = apply_conflict(snap, &hosts);
                for (h, res) in &freed {
                    if !changed.contains(h) {
                        snap.reserve(*h, res);
                    }
                }
                if let Some((g, rev)) = g {
                    record = g;
                    group_rev = rev;
                }
                planner.refresh(snap)?;
                if conflicts >= max_attempts {
                    return Err(CommitError::TooManyConflicts {
                        group: group.clone(),
                        attempts: conflicts,
                    });
                }
            }
        }
    }
}

/// The allocation writes of `touched` hosts: the snapshot holds the store's
/// value plus this plan's changes, i.e. exactly what each host will hold.
fn host_writes(snap: &Snapshot, touched: &BTreeSet<HostIdx>) -> Vec<HostWrite> {
    touched
        .iter()
        .map(|&h| {
            let e = snap.host(h);
            HostWrite {
                expected_revision: e.alloc_revision,
                allocation: HostAllocation {
                    host: e.name.clone(),
                    allocated: e.allocated,
                    containers: e.containers,
                },
            }
        })
        .collect()
}

/// Records that the snapshot's values of `touched` are the store's at `revision`.
fn settle(snap: &mut Snapshot, touched: &BTreeSet<HostIdx>, revision: u64) {
    for &h in touched {
        let a = HostAllocation {
            host: snap.host(h).name.clone(),
            allocated: snap.host(h).allocated,
            containers: snap.host(h).containers,
        };
        snap.set_allocation(h, &a, revision);
    }
}

/// Applies the store's values of the hosts a conflict reported; returns
/// their indexes (this plan's changes to them are gone with it).
fn apply_conflict(snap: &mut Snapshot, hosts: &[(HostAllocation, u64)]) -> HashSet<HostIdx> {
    let mut changed = HashSet::new();
    for (a, rev) in hosts {
        if let Some(h) = snap.host_index(&a.host) {
            snap.set_allocation(h, a, *rev);
            changed.insert(h);
        }
    }
    changed
}
