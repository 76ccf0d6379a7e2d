//! Relocation and release through the real store commit: caps kept over
//! the whole group, allocations always the sum of the placement records,
//! and several schedulers relocating at once never corrupt either.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jdos_scheduler::commit::{place_and_commit, ContainerSpec, GroupPlacements};
use jdos_scheduler::relocate::{release_and_commit, relocate_and_commit};
use jdos_scheduler::store_planner::{load_snapshot, SnapshotFeed, StorePlanner};
use jdos_scheduler::{GroupRequest, Scheduler, SchedulerConfig};
use jdos_store::{json, MemoryStore, Store};
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, GroupKey, Host, Resources};
use proptest::prelude::*;

async fn seed(store: &dyn Store, hosts: &[Host]) {
    for h in hosts {
        store
            .put(&keys::host(&h.name), json::encode(h).unwrap(), None)
            .await
            .unwrap();
    }
}

async fn members(store: &dyn Store, g: &GroupKey) -> Vec<Container> {
    json::list_all(store, &keys::containers_of_group(g))
        .await
        .unwrap()
}

/// Allocations equal the containers on each host, capacity holds, and
/// each group's record agrees with its container records and its caps.
async fn check(store: &dyn Store, hosts: &[Host], groups: &[(GroupKey, Option<u32>, Option<u32>)]) {
    let by_name: HashMap<&str, &Host> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let all: Vec<Container> = json::list_all(store, keys::CONTAINERS).await.unwrap();
    let mut used: HashMap<&str, (Resources, u32)> = HashMap::new();
    for c in &all {
        let e = used.entry(c.host.as_deref().unwrap()).or_default();
        e.0 = e.0.saturating_add(&c.resources);
        e.1 += 1;
    }
    let allocs: Vec<HostAllocation> = json::list_all(store, keys::ALLOC).await.unwrap();
    for a in &allocs {
        let (r, n) = used.get(a.host.as_str()).copied().unwrap_or_default();
        assert_eq!(
            (a.allocated, a.containers),
            (r, n),
            "allocation of {}",
            a.host
        );
        assert!(
            r.fits_in(&by_name[a.host.as_str()].capacity),
            "{} overcommitted",
            a.host
        );
    }
    for (h, (_, n)) in &used {
        if *n > 0 {
            assert!(allocs.iter().any(|a| a.host == *h), "{h} has no allocation");
        }
    }
    for (g, cap_host, cap_switch) in groups {
        let ms: Vec<&Container> = all.iter().filter(|c| c.id.group_key() == *g).collect();
        let rec: GroupPlacements = match store.get(&keys::placement(g)).await.unwrap() {
            Some(kv) => json::decode(&kv).unwrap(),
            None => GroupPlacements::default(),
        };
        assert_eq!(rec.containers.len(), ms.len(), "{g}");
        let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
        let mut per_switch: BTreeMap<&str, u32> = BTreeMap::new();
        for c in &ms {
            let h = c.host.as_deref().unwrap();
            assert_eq!(rec.containers.get(&c.id.index).map(String::as_str), Some(h));
            *per_host.entry(h).or_default() += 1;
            *per_switch.entry(&by_name[h].switch).or_default() += 1;
        }
        let ch = cap_host.unwrap_or(1);
        assert!(per_host.values().all(|&n| n <= ch), "{g}: {per_host:?}");
        if let Some(cs) = cap_switch {
            assert!(
                per_switch.values().all(|&n| n <= *cs),
                "{g}: {per_switch:?}"
            );
        }
    }
}

fn req(g: &str, replicas: u32, cap_host: Option<u32>, cap_switch: Option<u32>) -> GroupRequest {
    let mut r = common::request(g, "dc1", replicas, 1000, 1);
    r.placement.max_per_host = cap_host;
    r.placement.max_per_switch = cap_switch;
    r
}

#[tokio::test]
async fn relocation_moves_off_avoided_hosts_and_release_frees() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let hosts = common::estate("dc1", 3, 2, 2);
    seed(store.as_ref(), &hosts).await;
    let (mut snap, _) = load_snapshot(store.as_ref()).await.unwrap();
    let planner = StorePlanner::new(store.clone());
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let r = req("a", 6, None, Some(2));
    place_and_commit(
        &mut sched,
        &mut snap,
        &planner,
        &r,
        &ContainerSpec::default(),
        8,
    )
    .await
    .unwrap();
    let before = members(store.as_ref(), &r.group).await;
    let victim = before[0].clone();
    let from = victim.host.clone().unwrap();
    let out = relocate_and_commit(
        &mut sched,
        &mut snap,
        &planner,
        &r,
        std::slice::from_ref(&victim),
        &[],
        42,
        8,
    )
    .await
    .unwrap();
    assert_eq!(out.moved.len(), 1);
    assert_eq!(out.moved[0].from.as_deref(), Some(from.as_str()));
    assert_ne!(out.moved[0].to, from);
    assert_eq!(out.records[0].updated_at_ms, 42);
    let groups = [(r.group.clone(), None, Some(2))];
    check(store.as_ref(), &hosts, &groups).await;
    // The snapshot agrees with the store.
    for a in json::list_all::<HostAllocation>(store.as_ref(), keys::ALLOC)
        .await
        .unwrap()
    {
        let e = snap.host(snap.host_index(&a.host).unwrap());
        assert_eq!((e.allocated, e.containers), (a.allocated, a.containers));
    }
    // Release two; releasing them again only deletes nothing more.
    let now = members(store.as_ref(), &r.group).await;
    release_and_commit(&mut snap, &planner, &r.group, &now[..2], 8)
        .await
        .unwrap();
    release_and_commit(&mut snap, &planner, &r.group, &now[..2], 8)
        .await
        .unwrap();
    assert_eq!(members(store.as_ref(), &r.group).await.len(), 4);
    check(store.as_ref(), &hosts, &groups).await;
    // A released container is never moved (its allocation is gone).
    let out = relocate_and_commit(&mut sched, &mut snap, &planner, &r, &now[..1], &[], 43, 8)
        .await
        .unwrap();
    assert!(out.moved.is_empty());
    check(store.as_ref(), &hosts, &groups).await;
}

#[tokio::test]
async fn relocation_with_no_room_keeps_containers_where_they_are() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let hosts = common::estate("dc1", 1, 1, 2);
    seed(store.as_ref(), &hosts).await;
    let (mut snap, _) = load_snapshot(store.as_ref()).await.unwrap();
    let planner = StorePlanner::new(store.clone());
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let r = req("a", 2, None, None);
    place_and_commit(
        &mut sched,
        &mut snap,
        &planner,
        &r,
        &ContainerSpec::default(),
        8,
    )
    .await
    .unwrap();
    let ms = members(store.as_ref(), &r.group).await;
    let rev = store.revision().await.unwrap();
    let out = relocate_and_commit(&mut sched, &mut snap, &planner, &r, &ms[..1], &[], 1, 8)
        .await
        .unwrap();
    assert!(out.moved.is_empty());
    let u = out.unplaced.unwrap();
    assert!(
        u.explanation.count(jdos_scheduler::Reason::CapHost)
            + u.explanation.count(jdos_scheduler::Reason::Avoided)
            >= 2,
        "{}",
        u.explanation
    );
    assert_eq!(store.revision().await.unwrap(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_relocations_and_releases_stay_consistent() {
    for round in 0..10u64 {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hosts: Vec<Host> = common::estate("dc1", 3, 2, 3)
            .into_iter()
            .map(|mut h| {
                h.capacity = Resources::new(3000, 16 << 30);
                h
            })
            .collect();
        seed(store.as_ref(), &hosts).await;
        let groups: Vec<(GroupKey, Option<u32>, Option<u32>)> = vec![
            (GroupKey::new("a", "production", "web"), None, Some(3)),
            (GroupKey::new("b", "production", "web"), Some(2), None),
            (GroupKey::new("c", "production", "web"), None, None),
        ];
        {
            let (mut snap, _) = load_snapshot(store.as_ref()).await.unwrap();
            let planner = StorePlanner::new(store.clone());
            let mut sched = Scheduler::new(SchedulerConfig::default());
            for (g, ch, cs) in &groups {
                let r = req(&g.app, 6, *ch, *cs);
                place_and_commit(
                    &mut sched,
                    &mut snap,
                    &planner,
                    &r,
                    &ContainerSpec::default(),
                    8,
                )
                .await
                .unwrap();
            }
        }
        let mut tasks = Vec::new();
        for k in 0..4u64 {
            let store = store.clone();
            let groups = groups.clone();
            let hosts = hosts.clone();
            tasks.push(tokio::spawn(async move {
                let (mut snap, rev) = load_snapshot(store.as_ref()).await.unwrap();
                let feed = SnapshotFeed::start(store.as_ref(), rev + 1).await.unwrap();
                let planner = StorePlanner::with_feed(store.clone(), feed);
                let mut sched = Scheduler::new(SchedulerConfig {
                    seed: round * 10 + k,
                    ..Default::default()
                });
                let mut conflicts = 0;
                for step in 0..6u64 {
                    let (g, ch, cs) = &groups[((k + step) % 3) as usize];
                    let r = req(&g.app, 0, *ch, *cs);
                    let ms = members(store.as_ref(), g).await;
                    if ms.is_empty() {
                        continue;
                    }
                    tokio::task::yield_now().await;
                    if (k + step) % 4 == 3 {
                        let victim = &ms[(step as usize) % ms.len()];
                        let out = release_and_commit(
                            &mut snap,
                            &planner,
                            g,
                            std::slice::from_ref(victim),
                            1000,
                        )
                        .await
                        .unwrap();
                        conflicts += out.conflicts_retried;
                    } else {
                        // Evacuate one host, as failover does.
                        let avoid = hosts[((k * 7 + step * 5) as usize) % hosts.len()]
                            .name
                            .clone();
                        let on: Vec<Container> = ms
                            .iter()
                            .filter(|c| c.host.as_deref() == Some(avoid.as_str()))
                            .cloned()
                            .collect();
                        let out = relocate_and_commit(
                            &mut sched,
                            &mut snap,
                            &planner,
                            &r,
                            &on,
                            &[avoid],
                            step,
                            1000,
                        )
                        .await
                        .unwrap();
                        conflicts += out.conflicts_retried;
                    }
                }
                conflicts
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        check(store.as_ref(), &hosts, &groups).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Whatever is placed and whichever hosts are evacuated, caps hold over
    /// the whole group, moved containers leave the avoided hosts, and the
    /// allocations stay the sum of the records.
    #[test]
    fn relocations_keep_caps_and_allocations(
        switches in 1usize..4,
        racks in 1usize..3,
        per_rack in 1usize..4,
        replicas in 1u32..10,
        cap_host in proptest::option::of(1u32..3),
        cap_switch in proptest::option::of(1u32..5),
        evacuate in proptest::collection::vec(0usize..100, 1..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let hosts = common::estate("dc1", switches, racks, per_rack);
            seed(store.as_ref(), &hosts).await;
            let (mut snap, _) = load_snapshot(store.as_ref()).await.unwrap();
            let planner = StorePlanner::new(store.clone());
            let mut sched = Scheduler::new(SchedulerConfig::default());
            let r = req("a", replicas, cap_host, cap_switch);
            place_and_commit(&mut sched, &mut snap, &planner, &r, &ContainerSpec::default(), 8)
                .await
                .unwrap();
            let groups = [(r.group.clone(), cap_host, cap_switch)];
            check(store.as_ref(), &hosts, &groups).await;
            for e in evacuate {
                let avoid = hosts[e % hosts.len()].name.clone();
                let on: Vec<Container> = members(store.as_ref(), &r.group)
                    .await
                    .into_iter()
                    .filter(|c| c.host.as_deref() == Some(avoid.as_str()))
                    .collect();
                let out = relocate_and_commit(
                    &mut sched, &mut snap, &planner, &r, &on, std::slice::from_ref(&avoid), 1, 8,
                )
                .await
                .unwrap();
                for m in &out.moved {
                    assert_ne!(m.to, avoid);
                }
                assert_eq!(out.moved.len() + out.unplaced.map_or(0, |u| u.replicas as usize), on.len());
                check(store.as_ref(), &hosts, &groups).await;
            }
        });
    }
}
