//! A [`Planner`] over any [`Store`], and the reads that build a snapshot
//! from it and keep it fresh.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jdos_store::{json, Compare, EventKind, Store, Txn, TxnOp, Watch};
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, GroupKey, Host, Network};
use tracing::Instrument;

use crate::commit::{CommitError, CommitPlan, GroupPlacements, Planner, SubmitResult};
use crate::snapshot::Snapshot;

/// Commits plans as one store transaction each.
pub struct StorePlanner<S: Store + ?Sized> {
    store: Arc<S>,
    feed: Option<Mutex<SnapshotFeed>>,
}

impl<S: Store + ?Sized> StorePlanner<S> {
    /// A planner over `store`.
    pub fn new(store: Arc<S>) -> Self {
        StorePlanner { store, feed: None }
    }

    /// A planner that also keeps snapshots fresh from `feed` on
    /// [`Planner::refresh`].
    pub fn with_feed(store: Arc<S>, feed: SnapshotFeed) -> Self {
        StorePlanner {
            store,
            feed: Some(Mutex::new(feed)),
        }
    }
}

#[async_trait]
impl<S: Store + ?Sized> Planner for StorePlanner<S> {
    async fn read_group(&self, group: &GroupKey) -> Result<(GroupPlacements, u64), CommitError> {
        match self.store.get(&keys::placement(group)).await? {
            Some(kv) => Ok((json::decode(&kv)?, kv.mod_revision)),
            None => Ok((GroupPlacements::default(), 0)),
        }
    }

    async fn submit(&self, plan: CommitPlan) -> Result<SubmitResult, CommitError> {
        let gkey = keys::placement(&plan.group);
        let mut txn = Txn::new()
            .when(Compare::mod_revision(gkey.clone(), plan.group_revision))
            .or_else(TxnOp::Get { key: gkey.clone() });
        for c in &plan.containers {
            // Indexes come from the record's `next_index`, and the compare
            // on the record's revision above means no one else handed them
            // out meanwhile: no per-container compare is needed.
            txn = txn.and_then(TxnOp::put(keys::container(&c.id), json::encode(c)?));
        }
        for id in &plan.released {
            txn = txn.and_then(TxnOp::delete(keys::container(id)));
        }
        txn.compares.extend(plan.compares.iter().cloned());
        txn.success.extend(plan.ops.iter().cloned());
        for h in &plan.hosts {
            let k = keys::alloc(&h.allocation.host);
            txn = txn
                .when(Compare::mod_revision(k.clone(), h.expected_revision))
                .and_then(TxnOp::put(k.clone(), json::encode(&h.allocation)?))
                .or_else(TxnOp::Get { key: k });
        }
        txn = txn.and_then(TxnOp::put(gkey, json::encode(&plan.record)?));
        let resp = self.store.txn(txn).await?;
        if resp.succeeded {
            return Ok(SubmitResult::Committed {
                revision: resp.revision,
            });
        }
        let mut kvs = resp.responses.into_iter().map(|r| match r {
            jdos_store::OpResponse::Get { kv } => kv,
            _ => None,
        });
        let group = match kvs.next().flatten() {
            Some(kv) if kv.mod_revision != plan.group_revision => {
                Some((json::decode::<GroupPlacements>(&kv)?, kv.mod_revision))
            }
            Some(_) => None,
            None if plan.group_revision != 0 => Some((GroupPlacements::default(), 0)),
            None => None,
        };
        let mut hosts = Vec::new();
        for (h, kv) in plan.hosts.iter().zip(kvs) {
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

    fn refresh(&self, snap: &mut Snapshot) -> Result<(), CommitError> {
        if let Some(feed) = &self.feed {
            feed.lock()
                .map_err(|_| CommitError::Store(jdos_store::StoreError::Closed))?
                .drain(snap)?;
        }
        Ok(())
    }
}

/// Reads every value under `prefix`, page by page.
async fn list<S: Store + ?Sized, T: serde::de::DeserializeOwned>(
    store: &S,
    prefix: &str,
) -> Result<(Vec<(T, u64)>, u64), CommitError> {
    let mut out = Vec::new();
    let first_rev = jdos_store::for_each_page(store, prefix, 10_000, |kvs| {
        for kv in kvs {
            out.push((json::decode(kv)?, kv.mod_revision));
        }
        Ok::<_, CommitError>(())
    })
    .await?;
    Ok((out, first_rev))
}

/// Builds a snapshot from the store's hosts, allocations and networks, and
/// returns the store revision the allocations were read at (watch from the
/// next one with [`SnapshotFeed`]).
pub async fn load_snapshot<S: Store + ?Sized>(store: &S) -> Result<(Snapshot, u64), CommitError> {
    let span = tracing::debug_span!("load_snapshot");
    let (hosts, networks, allocs) = async {
        let (hosts, _) = list::<S, Host>(store, keys::HOSTS).await?;
        let (networks, _) = list::<S, Network>(store, keys::NETWORKS).await?;
        let allocs = list::<S, HostAllocation>(store, keys::ALLOC).await?;
        Ok::<_, CommitError>((hosts, networks, allocs))
    }
    .instrument(span)
    .await?;
    let (allocs, rev) = allocs;
    let networks: Vec<Network> = networks.into_iter().map(|(n, _)| n).collect();
    let snap = Snapshot::build(
        hosts.iter().map(|(h, _)| h),
        allocs.iter().map(|(a, r)| (a, *r)),
        &networks,
    );
    Ok((snap, rev))
}

/// Keeps a snapshot's allocations current by watching the allocation keys,
/// so that a scheduler rarely plans against a value another one has
/// already changed (fewer conflicts, not correctness: the CAS is that).
pub struct SnapshotFeed {
    watch: Watch,
    /// Host and network watches, when the feed also tracks topology.
    topology: Option<(Watch, Watch)>,
}

/// What [`SnapshotFeed::drain_all`] applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStatus {
    /// Allocation changes applied.
    pub allocations: usize,
    /// A host or network changed in a way the snapshot cannot absorb in
    /// place (host added, removed, state, cordon, capacity, labels,
    /// topology; any network change): rebuild it with [`load_snapshot`].
    pub rebuild: bool,
}

impl SnapshotFeed {
    /// Watches allocations from `from_revision` (inclusive).
    pub async fn start<S: Store + ?Sized>(
        store: &S,
        from_revision: u64,
    ) -> Result<Self, CommitError> {
        Ok(SnapshotFeed {
            watch: store.watch(keys::ALLOC, from_revision).await?,
            topology: None,
        })
    }

    /// Watches allocations, hosts and networks from `from_revision`; see
    /// [`SnapshotFeed::drain_all`].
    pub async fn start_with_topology<S: Store + ?Sized>(
        store: &S,
        from_revision: u64,
    ) -> Result<Self, CommitError> {
        Ok(SnapshotFeed {
            watch: store.watch(keys::ALLOC, from_revision).await?,
            topology: Some((
                store.watch(keys::HOSTS, from_revision).await?,
                store.watch(keys::NETWORKS, from_revision).await?,
            )),
        })
    }

    /// Applies every allocation change already delivered, updates host
    /// epochs in place, and says whether any other host or network change
    /// requires a rebuild. A host write that changes nothing placement
    /// looks at (a heartbeat timestamp) needs none.
    pub fn drain_all(&mut self, snap: &mut Snapshot) -> Result<FeedStatus, CommitError> {
        let allocations = self.drain(snap)?;
        let mut rebuild = false;
        if let Some((hosts, networks)) = &mut self.topology {
            for batch in drain_watch(hosts)? {
                for ev in batch {
                    let name = ev.kv.key.strip_prefix(keys::HOSTS).unwrap_or_default();
                    match (ev.kind, snap.host_index(name)) {
                        (EventKind::Put, Some(h)) => {
                            let host: Host = json::decode(&ev.kv)?;
                            if snap.matches_host(h, &host) {
                                snap.set_epoch(h, host.epoch);
                            } else {
                                rebuild = true;
                            }
                        }
                        _ => rebuild = true,
                    }
                }
            }
            if !drain_watch(networks)?.is_empty() {
                rebuild = true;
            }
        }
        Ok(FeedStatus {
            allocations,
            rebuild,
        })
    }

    /// Applies every event already delivered, without waiting. Returns how
    /// many allocation changes were applied, or an error when the watch
    /// ended (rebuild the snapshot then).
    pub fn drain(&mut self, snap: &mut Snapshot) -> Result<usize, CommitError> {
        let mut n = 0;
        loop {
            match self.watch.rx.try_recv() {
                Ok(Ok(events)) => {
                    for ev in events {
                        let Some(name) = ev.kv.key.strip_prefix(keys::ALLOC) else {
                            continue;
                        };
                        let Some(h) = snap.host_index(name) else {
                            continue;
                        };
                        let a = match ev.kind {
                            EventKind::Put => json::decode::<HostAllocation>(&ev.kv)?,
                            EventKind::Delete => HostAllocation {
                                host: name.to_string(),
                                ..Default::default()
                            },
                        };
                        // A deleted key compares as revision 0.
                        let rev = match ev.kind {
                            EventKind::Put => ev.kv.mod_revision,
                            EventKind::Delete => 0,
                        };
                        snap.set_allocation(h, &a, rev);
                        n += 1;
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return Ok(n),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    return Err(jdos_store::StoreError::Closed.into())
                }
            }
        }
    }
}

/// Every batch already delivered on `w`, without waiting.
fn drain_watch(w: &mut Watch) -> Result<Vec<Vec<jdos_store::WatchEvent>>, CommitError> {
    let mut out = Vec::new();
    loop {
        match w.rx.try_recv() {
            Ok(Ok(events)) => out.push(events),
            Ok(Err(e)) => return Err(e.into()),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return Ok(out),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                return Err(jdos_store::StoreError::Closed.into())
            }
        }
    }
}
