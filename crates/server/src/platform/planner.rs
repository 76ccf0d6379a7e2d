//! The scheduler's [`Planner`] seam, server side: a plan commits together
//! with everything the platform writes for it (IP records, work orders,
//! record deletions) and its event, in one store transaction through the
//! event recorder.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jdos_ipam::{IpBatch, IpRelease};
use jdos_scheduler::commit::{CommitError, CommitPlan, GroupPlacements, Planner, SubmitResult};
use jdos_scheduler::store_planner::SnapshotFeed;
use jdos_scheduler::Snapshot;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::Assignment;
use jdos_types::container::DesiredState;
use jdos_types::group::ContainerTemplate;
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, GroupKey, InstanceId, Network};

use super::network;
use super::{Platform, PlatformError};
use crate::events::{Commit, EventDraft, Mutation};

/// What the platform adds to a plan.
pub(super) enum Extra {
    /// New containers: each gets an address from its network.
    Place {
        template: Box<ContainerTemplate>,
        networks: Vec<Network>,
        switches: Arc<HashMap<String, String>>,
    },
    /// Moved containers: their work orders (key, value, revision) move
    /// with them.
    Relocate {
        orders: HashMap<InstanceId, (String, Assignment, u64)>,
    },
    /// Released containers: their work orders (key, revision) are deleted
    /// and their addresses go to quarantine.
    Release { orders: Vec<(String, u64)> },
}

/// A planner committing through the platform's event recorder.
pub(super) struct PlatformPlanner<'a> {
    p: &'a Platform,
    extra: Extra,
    event: EventDraft,
    feed: Mutex<Option<SnapshotFeed>>,
    /// The typed error behind a [`CommitError::Refused`].
    error: Mutex<Option<PlatformError>>,
}

impl<'a> PlatformPlanner<'a> {
    pub(super) fn new(
        p: &'a Platform,
        extra: Extra,
        event: EventDraft,
        feed: Option<SnapshotFeed>,
    ) -> Self {
        PlatformPlanner {
            p,
            extra,
            event,
            feed: Mutex::new(feed),
            error: Mutex::new(None),
        }
    }

    /// Gives back the feed lent to it.
    pub(super) fn into_feed(self) -> Option<SnapshotFeed> {
        self.feed.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns a commit error into the platform's, keeping a refusal's cause.
    pub(super) fn error(&self, e: CommitError) -> PlatformError {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(typed) if matches!(e, CommitError::Refused(_)) => typed,
            _ => e.into(),
        }
    }

    fn refuse(&self, e: PlatformError) -> CommitError {
        let msg = e.to_string();
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        CommitError::Refused(msg)
    }

    /// Adds the platform's writes for `plan`; returns the IP work to settle.
    async fn extend(&self, plan: &mut CommitPlan) -> Result<IpWork, CommitError> {
        let now = self.p.now_ms();
        let mut work = IpWork::default();
        match &self.extra {
            Extra::Place {
                template,
                networks,
                switches,
            } => {
                let mut by_net: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (i, c) in plan.containers.iter().enumerate() {
                    let switch = c
                        .host
                        .as_deref()
                        .and_then(|h| switches.get(h))
                        .map_or("", String::as_str);
                    if let Some(n) = network::choose(template, switch, networks) {
                        by_net.entry(n.name.as_str()).or_default().push(i);
                    }
                }
                for (net, idx) in by_net {
                    let ids: Vec<InstanceId> =
                        idx.iter().map(|&i| plan.containers[i].id.clone()).collect();
                    let batch = match self.p.ipam.prepare_batch(net, &ids, now).await {
                        Ok(b) => b,
                        Err(e) => {
                            self.abort(&work).await;
                            return Err(self.refuse(e.into()));
                        }
                    };
                    for (&i, a) in idx.iter().zip(&batch.assignments) {
                        plan.containers[i].network = Some(a.network.clone());
                        plan.containers[i].ip = Some(a.ip);
                    }
                    plan.compares.extend(batch.compares.iter().cloned());
                    plan.ops.extend(batch.ops.iter().cloned());
                    work.batches.push(batch);
                }
            }
            Extra::Relocate { orders } => {
                for m in &plan.moved {
                    let Some((old_key, order, rev)) = orders.get(&m.id) else {
                        continue;
                    };
                    let Some(rec) = plan.containers.iter_mut().find(|c| c.id == m.id) else {
                        continue;
                    };
                    // A published container runs again on its new host (a
                    // stop-in-place before the move was its first phase).
                    if rec.desired != DesiredState::Deleted {
                        rec.desired = DesiredState::Running;
                    }
                    let moved = Assignment {
                        container: rec.clone(),
                        template: order.template.clone(),
                        network: order.network.as_ref().map(Network::for_agent),
                        generation: order.generation,
                        snapshot: None,
                    };
                    plan.compares
                        .push(Compare::mod_revision(old_key.clone(), *rev));
                    plan.ops.push(TxnOp::delete(old_key.clone()));
                    plan.ops.push(TxnOp::put(
                        keys::assignment(&m.to, &m.id),
                        json::encode(&moved).map_err(CommitError::Store)?,
                    ));
                }
            }
            Extra::Release { orders } => {
                for (key, rev) in orders {
                    plan.compares.push(Compare::mod_revision(key.clone(), *rev));
                    plan.ops.push(TxnOp::delete(key.clone()));
                }
                let release = match self.p.ipam.prepare_release(&plan.released, now).await {
                    Ok(r) => r,
                    Err(e) => return Err(self.refuse(e.into())),
                };
                plan.compares.extend(release.compares.iter().cloned());
                plan.ops.extend(release.ops.iter().cloned());
                work.release = Some(release);
            }
        }
        Ok(work)
    }

    async fn abort(&self, work: &IpWork) {
        for b in &work.batches {
            if let Err(e) = self.p.ipam.abort_batch(b).await {
                tracing::warn!(network = %b.network, error = %e, "cannot refresh the address index after an aborted batch");
            }
        }
    }
}

/// Address work riding in one transaction.
#[derive(Default)]
struct IpWork {
    batches: Vec<IpBatch>,
    release: Option<IpRelease>,
}

#[async_trait]
impl Planner for PlatformPlanner<'_> {
    async fn read_group(&self, group: &GroupKey) -> Result<(GroupPlacements, u64), CommitError> {
        match self.p.store.get(&keys::placement(group)).await? {
            Some(kv) => Ok((json::decode(&kv)?, kv.mod_revision)),
            None => Ok((GroupPlacements::default(), 0)),
        }
    }

    async fn submit(&self, mut plan: CommitPlan) -> Result<SubmitResult, CommitError> {
        let work = self.extend(&mut plan).await?;
        let gkey = keys::placement(&plan.group);
        let mut compares = vec![Compare::mod_revision(gkey.clone(), plan.group_revision)];
        let mut ops =
            Vec::with_capacity(plan.containers.len() + plan.hosts.len() + plan.ops.len() + 1);
        for c in &plan.containers {
            ops.push(TxnOp::put(keys::container(&c.id), json::encode(c)?));
        }
        for id in &plan.released {
            ops.push(TxnOp::delete(keys::container(id)));
        }
        for h in &plan.hosts {
            let k = keys::alloc(&h.allocation.host);
            compares.push(Compare::mod_revision(k.clone(), h.expected_revision));
            ops.push(TxnOp::put(k, json::encode(&h.allocation)?));
        }
        ops.push(TxnOp::put(gkey.clone(), json::encode(&plan.record)?));
        compares.append(&mut plan.compares);
        ops.append(&mut plan.ops);
        let m = Mutation {
            compares,
            ops,
            event: self.event.clone(),
        };
        let now = self.p.now_ms();
        match self.p.events.commit(self.p.store(), m, now).await {
            Ok(Commit::Done { revision, .. }) => {
                for b in &work.batches {
                    self.p.ipam.settle_batch(b, revision);
                }
                if let Some(r) = &work.release {
                    self.p.ipam.settle_release(r, revision);
                }
                Ok(SubmitResult::Committed { revision })
            }
            Ok(Commit::Stale) => {
                self.abort(&work).await;
                // Learn which of the scheduler's compared keys moved (none
                // may have: then it was one of the platform's own, and the
                // plan is simply submitted again).
                let group = match self.p.store.get(&gkey).await? {
                    Some(kv) if kv.mod_revision != plan.group_revision => {
                        Some((json::decode::<GroupPlacements>(&kv)?, kv.mod_revision))
                    }
                    Some(_) => None,
                    None if plan.group_revision != 0 => Some((GroupPlacements::default(), 0)),
                    None => None,
                };
                let mut hosts = Vec::new();
                for h in &plan.hosts {
                    let kv = self.p.store.get(&keys::alloc(&h.allocation.host)).await?;
                    let rev = kv.as_ref().map_or(0, |kv| kv.mod_revision);
                    if rev != h.expected_revision {
                        let a = match &kv {
                            Some(kv) => json::decode::<HostAllocation>(kv)?,
                            None => HostAllocation {
                                host: h.allocation.host.clone(),
                                ..Default::default()
                            },
                        };
                        hosts.push((a, rev));
                    }
                }
                Ok(SubmitResult::Conflict { hosts, group })
            }
            Err(e) => {
                self.abort(&work).await;
                Err(e.into())
            }
        }
    }

    fn refresh(&self, snap: &mut Snapshot) -> Result<(), CommitError> {
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = feed.as_mut() {
            // A topology change is picked up by the next operation's rebuild.
            if f.drain_all(snap).is_err() {
                *feed = None;
            }
        }
        Ok(())
    }
}
