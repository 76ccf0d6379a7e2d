//! Several schedulers placing overlapping groups at once through the real
//! store commit never overcommit a host or break a hard cap.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use jdos_scheduler::commit::{
    place_and_commit, CommitError, CommitPlan, ContainerSpec, GroupPlacements, Planner,
    SubmitResult,
};
use jdos_scheduler::store_planner::{load_snapshot, SnapshotFeed, StorePlanner};
use jdos_scheduler::{Scheduler, SchedulerConfig};
use jdos_store::{json, MemoryStore, RangeOptions, Store};
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, GroupKey, Host, Resources};
use tokio::sync::Barrier;

async fn all<T: serde::de::DeserializeOwned>(s: &dyn Store, prefix: &str) -> Vec<T> {
    let page = s.range(prefix, RangeOptions::default()).await.unwrap();
    page.kvs
        .iter()
        .map(|kv| json::decode(kv).unwrap())
        .collect()
}

/// The store planner with a yield before every call, as a network hop
/// would add: other schedulers get to run between a read and its commit.
struct Yielding<P>(P);

#[async_trait]
impl<P: Planner> Planner for Yielding<P> {
    async fn read_group(&self, group: &GroupKey) -> Result<(GroupPlacements, u64), CommitError> {
        tokio::task::yield_now().await;
        self.0.read_group(group).await
    }

    async fn submit(&self, plan: CommitPlan) -> Result<SubmitResult, CommitError> {
        tokio::task::yield_now().await;
        self.0.submit(plan).await
    }

    fn refresh(&self, snap: &mut jdos_scheduler::Snapshot) -> Result<(), CommitError> {
        self.0.refresh(snap)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_schedulers_never_overcommit_or_break_caps() {
    let mut conflicts = 0;
    for round in 0..20 {
        conflicts += race(round).await;
    }
    // The stale snapshots really raced (the retry path ran).
    assert!(conflicts > 0, "the race must have produced conflicts");
}

/// One race on a fresh store; returns the conflicts met.
async fn race(round: u64) -> u32 {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // 3 switches × 2 racks × 2 hosts, 4 cores each: room for 4 one-core
    // containers per host, 48 in all.
    let hosts: Vec<Host> = common::estate("dc1", 3, 2, 2)
        .into_iter()
        .map(|mut h| {
            h.capacity = Resources::new(4000, 16 << 30);
            h
        })
        .collect();
    for h in &hosts {
        store
            .put(&keys::host(&h.name), json::encode(h).unwrap(), None)
            .await
            .unwrap();
    }
    const SCHEDULERS: usize = 6;
    let barrier = Arc::new(Barrier::new(SCHEDULERS));
    let mut tasks = Vec::new();
    for k in 0..SCHEDULERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            // Everyone reads the same state and then races. Half share a
            // seed (they pick the same hosts: host conflicts), half differ
            // (disjoint hosts, so only the group record stands between
            // them and a broken cap or a reused index).
            let (mut snap, rev) = load_snapshot(store.as_ref()).await.unwrap();
            // A third follow the allocation keys and refresh on conflict.
            let inner = if k % 3 == 0 {
                let feed = SnapshotFeed::start(store.as_ref(), rev + 1).await.unwrap();
                StorePlanner::with_feed(store.clone(), feed)
            } else {
                StorePlanner::new(store.clone())
            };
            barrier.wait().await;
            let planner = Yielding(inner);
            let mut sched = Scheduler::new(SchedulerConfig {
                seed: if k % 2 == 0 {
                    round
                } else {
                    round * 100 + k as u64
                },
                ..Default::default()
            });
            let mut conflicts = 0;
            let mut placed = 0;
            for (group, n, cap_switch) in [
                ("a", 2, Some(2)),
                ("b", 3, None),
                ("c", 2, None),
                ("a", 1, Some(2)),
            ] {
                let mut req = common::request(group, "dc1", n, 1000, 1);
                req.placement.max_per_switch = cap_switch;
                let out = place_and_commit(
                    &mut sched,
                    &mut snap,
                    &planner,
                    &req,
                    &ContainerSpec::default(),
                    1000,
                )
                .await
                .unwrap();
                conflicts += out.conflicts_retried;
                placed += out.placed.len();
            }
            (conflicts, placed)
        }));
    }
    let mut conflicts = 0;
    let mut placed = 0;
    for t in tasks {
        let (c, p) = t.await.unwrap();
        conflicts += c;
        placed += p;
    }

    let containers: Vec<Container> = all(store.as_ref(), keys::CONTAINERS).await;
    assert_eq!(containers.len(), placed);
    let allocs: Vec<HostAllocation> = all(store.as_ref(), keys::ALLOC).await;
    let by_name: HashMap<&str, &Host> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    // Capacity, recomputed from container records, and agreement with the
    // stored allocations.
    let mut used: HashMap<&str, (Resources, u32)> = HashMap::new();
    for c in &containers {
        let e = used.entry(c.host.as_deref().unwrap()).or_default();
        e.0 = e.0.saturating_add(&c.resources);
        e.1 += 1;
    }
    for (h, (r, n)) in &used {
        assert!(r.fits_in(&by_name[h].capacity), "{h} overcommitted: {r:?}");
        let a = allocs
            .iter()
            .find(|a| a.host == *h)
            .expect("allocation written");
        assert_eq!((a.allocated, a.containers), (*r, *n), "{h}");
    }
    // Hard caps per group, and the placement records agree.
    for g in ["a", "b", "c"] {
        let key = GroupKey::new(g, "production", "web");
        let members: Vec<&Container> = containers
            .iter()
            .filter(|c| c.id.group_key() == key)
            .collect();
        let total = members.len() as u32;
        let cap_switch = if g == "a" { 2 } else { total.div_ceil(2) };
        let mut per_switch: HashMap<&str, u32> = HashMap::new();
        let mut per_host: HashMap<&str, u32> = HashMap::new();
        for c in &members {
            let h = by_name[c.host.as_deref().unwrap()];
            *per_switch.entry(&h.switch).or_default() += 1;
            *per_host.entry(&h.name).or_default() += 1;
        }
        assert!(per_host.values().all(|&n| n <= 1), "{g}: {per_host:?}");
        assert!(
            per_switch.values().all(|&n| n <= cap_switch),
            "{g}: {per_switch:?}"
        );
        let rec: GroupPlacements =
            json::decode(&store.get(&keys::placement(&key)).await.unwrap().unwrap()).unwrap();
        assert_eq!(rec.containers.len(), members.len());
        let idx: BTreeSet<u32> = members.iter().map(|c| c.id.index).collect();
        assert_eq!(idx.len(), members.len(), "indexes are unique");
        assert_eq!(rec.next_index as usize, members.len());
    }
    // Group a is capped at 2 per switch over 3 switches: at most 6 fit
    // even though 6 schedulers asked for 18.
    let a = containers.iter().filter(|c| c.id.app == "a").count();
    assert!(a <= 6, "group a has {a}");
    conflicts
}
