//! The platform layer over a real store: placement, work orders,
//! relocation, retire/finalize, idempotent re-runs.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jdos_scheduler::commit::GroupPlacements;
use jdos_server::dev::DevTopology;
use jdos_server::AppState;
use jdos_store::{json, MemoryStore, Store};
use jdos_types::agent::{Assignment, ContainerReport};
use jdos_types::container::DesiredState;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::GIB;
use jdos_types::topology::HostAllocation;
use jdos_types::{
    keys, App, BusinessLevel, Container, ContainerPhase, Group, Host, HostState, InstanceId,
    IpState, Network, Resources,
};

struct Fx {
    st: AppState,
    store: Arc<dyn Store>,
}

async fn fixture() -> Fx {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let st = AppState::new(store.clone());
    let topo = DevTopology {
        datacenters: 1,
        switches_per_dc: 2,
        racks_per_switch: 2,
        hosts_per_rack: 2,
        ..Default::default()
    };
    // Hosts with agents (a simulated host has none to report removals).
    let caller = jdos_server::auth::Caller::system("test");
    for mut req in topo.registrations() {
        req.driver = Some("fake".into());
        jdos_server::api::hosts::register(&st, &caller, req)
            .await
            .unwrap();
    }
    let subnet: ipnet::Ipv4Net = "10.1.0.0/24".parse().unwrap();
    st.ipam()
        .create_network(Network {
            name: "net1".into(),
            vlan: 100,
            subnet,
            gateway: "10.1.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec!["langfang-s1".into(), "langfang-s2".into()],
            quarantine_secs: 300,
        })
        .await
        .unwrap();
    let app = App {
        name: "shop".into(),
        owner: "alice".into(),
        department: "retail".into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: BTreeMap::new(),
        created_at_ms: 0,
    };
    store
        .put(&keys::app("shop"), json::encode(&app).unwrap(), None)
        .await
        .unwrap();
    Fx { st, store }
}

fn group(replicas: u32) -> Group {
    Group {
        app: "shop".into(),
        env: "production".into(),
        name: "web".into(),
        datacenter: "langfang".into(),
        replicas,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(1000, GIB),
            ..Default::default()
        },
        placement: Default::default(),
        autoscaling: None,
    }
}

async fn get<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> Option<T> {
    store
        .get(key)
        .await
        .unwrap()
        .map(|kv| json::decode(&kv).unwrap())
}

/// Every allocation equals the sum of the containers the placement records
/// put on its host, and no host holds two containers of the group.
async fn assert_consistent(store: &dyn Store, g: &Group) {
    let rec: GroupPlacements = get(store, &keys::placement(&g.key()))
        .await
        .unwrap_or_default();
    let allocs: Vec<HostAllocation> = json::list_all(store, keys::ALLOC).await.unwrap();
    let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
    for h in rec.containers.values() {
        *per_host.entry(h).or_default() += 1;
    }
    for a in &allocs {
        let n = per_host.get(a.host.as_str()).copied().unwrap_or(0);
        assert_eq!(
            a.containers, n,
            "allocation of {} vs placement record",
            a.host
        );
        assert_eq!(a.allocated.cpu_millis, u64::from(n) * 1000, "{}", a.host);
        assert!(n <= 1, "max_per_host 1 broken on {}", a.host);
    }
    let records: Vec<Container> = json::list_all(store, &keys::containers_of_group(&g.key()))
        .await
        .unwrap();
    assert_eq!(records.len(), rec.containers.len());
    for c in &records {
        assert_eq!(rec.containers.get(&c.id.index), c.host.as_ref());
    }
}

fn ids(cs: &[Container]) -> Vec<InstanceId> {
    cs.iter().map(|c| c.id.clone()).collect()
}

#[tokio::test]
async fn place_missing_places_with_ips_and_is_idempotent() {
    let fx = fixture().await;
    let g = group(4);
    let cs = fx.st.platform().place_missing(&g, 4).await.unwrap();
    assert_eq!(cs.len(), 4);
    let hosts: BTreeSet<_> = cs.iter().map(|c| c.host.clone().unwrap()).collect();
    let ips: BTreeSet<_> = cs.iter().map(|c| c.ip.unwrap()).collect();
    assert_eq!((hosts.len(), ips.len()), (4, 4));
    for c in &cs {
        assert_eq!(c.phase, ContainerPhase::Scheduled);
        assert_eq!(c.network.as_deref(), Some("net1"));
        // Not published yet.
        let a: Option<Assignment> = get(
            fx.store.as_ref(),
            &keys::assignment(c.host.as_ref().unwrap(), &c.id),
        )
        .await;
        assert!(a.is_none());
    }
    assert_consistent(fx.store.as_ref(), &g).await;
    // Spread: two switches, at most ceil(4/2) per switch.
    let rev = fx.store.revision().await.unwrap();
    let again = fx.st.platform().place_missing(&g, 4).await.unwrap();
    assert_eq!(again, cs);
    assert_eq!(
        fx.store.revision().await.unwrap(),
        rev,
        "a re-run writes nothing"
    );
    // Scale out adds only the missing ones, keeping the others.
    let more = fx.st.platform().place_missing(&g, 6).await.unwrap();
    assert_eq!(more.len(), 6);
    assert_eq!(&more[..4], &cs[..]);
    assert_consistent(fx.store.as_ref(), &g).await;
}

#[tokio::test]
async fn an_identity_that_got_its_ip_before_a_crash_keeps_it() {
    let fx = fixture().await;
    let g = group(2);
    // A crash after the address was taken but before the placement commit:
    // the same identity gets the same address, nothing leaks.
    let pre = fx
        .st
        .ipam()
        .allocate("net1", &InstanceId::new(&g.key(), 0), None, 1)
        .await
        .unwrap();
    let cs = fx.st.platform().place_missing(&g, 2).await.unwrap();
    assert_eq!(cs[0].ip, Some(pre.ip));
    let records = fx.st.ipam().list("net1").await.unwrap();
    assert_eq!(records.len(), 2);
}

#[tokio::test]
async fn too_few_hosts_places_what_fits_and_says_why() {
    let fx = fixture().await;
    let g = group(10);
    let err = fx.st.platform().place_missing(&g, 10).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("2 of the 10"), "{msg}");
    assert!(err.is_retryable());
    assert_eq!(
        fx.st.platform().containers(&g.key()).await.unwrap().len(),
        8
    );
    assert_consistent(fx.store.as_ref(), &g).await;
}

#[tokio::test]
async fn publish_writes_work_orders_once_and_republish_bumps() {
    let fx = fixture().await;
    let g = group(3);
    let cs = fx.st.platform().place_missing(&g, 3).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    for c in &cs {
        let a: Assignment = get(
            fx.store.as_ref(),
            &keys::assignment(c.host.as_ref().unwrap(), &c.id),
        )
        .await
        .unwrap();
        assert_eq!(a.container.ip, c.ip);
        assert_eq!(a.container.desired, DesiredState::Running);
        assert_eq!(a.template, g.template);
        let n = a.network.as_ref().expect("the order carries its network");
        assert_eq!(n.name, "net1");
        assert!(
            n.switches.is_empty(),
            "the switch list stays with placement"
        );
        assert_eq!(a.generation, 0);
    }
    let rev = fx.store.revision().await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    assert_eq!(
        fx.store.revision().await.unwrap(),
        rev,
        "a re-run writes nothing"
    );
    // A template change republishes; a bump recreates.
    let mut g2 = g.clone();
    g2.template.image = "jdos-busybox:v2".into();
    fx.st.platform().publish(&g2, &ids(&cs)).await.unwrap();
    fx.st
        .platform()
        .republish(&g2, &ids(&cs[..1]), true)
        .await
        .unwrap();
    let c0 = &cs[0];
    let a: Assignment = get(
        fx.store.as_ref(),
        &keys::assignment(c0.host.as_ref().unwrap(), &c0.id),
    )
    .await
    .unwrap();
    assert_eq!(a.template.image, "jdos-busybox:v2");
    assert_eq!(a.container.image, "jdos-busybox:v2");
    assert_eq!(a.generation, 1);
    let rec: Container = get(fx.store.as_ref(), &keys::container(&c0.id))
        .await
        .unwrap();
    assert_eq!(rec.image, "jdos-busybox:v2");
}

#[tokio::test]
async fn relocate_keeps_ip_moves_orders_and_allocations() {
    let fx = fixture().await;
    let g = group(4);
    let cs = fx.st.platform().place_missing(&g, 4).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    let victim = cs[1].clone();
    let old_host = victim.host.clone().unwrap();
    fx.st
        .platform()
        .stop_in_place(&[victim.id.clone()])
        .await
        .unwrap();
    let moved = fx
        .st
        .platform()
        .relocate(&g, &[victim.id.clone()], &[old_host.clone()], "test")
        .await
        .unwrap();
    let m = &moved[0];
    let new_host = m.host.clone().unwrap();
    assert_ne!(new_host, old_host);
    assert_eq!(m.ip, victim.ip, "relocation keeps the IP");
    assert_eq!(m.phase, ContainerPhase::Scheduled);
    assert_eq!(
        m.desired,
        DesiredState::Running,
        "the stop was the first phase"
    );
    // Spread kept: no other member on the new host.
    for c in &cs {
        if c.id != victim.id {
            assert_ne!(c.host.as_deref(), Some(new_host.as_str()));
        }
    }
    let old: Option<Assignment> = get(fx.store.as_ref(), &keys::assignment(&old_host, &m.id)).await;
    assert!(
        old.is_none(),
        "the old host's order is gone (its agent destroys the copy)"
    );
    let new: Assignment = get(fx.store.as_ref(), &keys::assignment(&new_host, &m.id))
        .await
        .unwrap();
    assert_eq!(new.container.host.as_deref(), Some(new_host.as_str()));
    assert_eq!(new.container.desired, DesiredState::Running);
    assert_consistent(fx.store.as_ref(), &g).await;
    // A re-run (the workflow after a crash) moves nothing.
    let rev = fx.store.revision().await.unwrap();
    let again = fx
        .st
        .platform()
        .relocate(&g, &[victim.id.clone()], &[old_host], "test")
        .await
        .unwrap();
    assert_eq!(again[0].host.as_deref(), Some(new_host.as_str()));
    assert_eq!(fx.store.revision().await.unwrap(), rev);
    // The IP record still belongs to the identity.
    let a = fx.st.ipam().lookup(&m.id).await.unwrap().unwrap();
    assert_eq!(Some(a.ip), m.ip);
}

#[tokio::test]
async fn relocate_every_container_of_a_host_keeps_caps() {
    let fx = fixture().await;
    let mut g = group(6);
    g.placement.max_per_host = Some(2);
    let cs = fx.st.platform().place_missing(&g, 6).await.unwrap();
    // Evacuate the host holding index 0, as failover does.
    let down = cs[0].host.clone().unwrap();
    let on: Vec<InstanceId> = cs
        .iter()
        .filter(|c| c.host.as_deref() == Some(down.as_str()))
        .map(|c| c.id.clone())
        .collect();
    let moved = fx
        .st
        .platform()
        .relocate(&g, &on, &[down.clone()], "host down")
        .await
        .unwrap();
    let all = fx.st.platform().containers(&g.key()).await.unwrap();
    let mut per_host: BTreeMap<String, u32> = BTreeMap::new();
    for c in &all {
        *per_host.entry(c.host.clone().unwrap()).or_default() += 1;
    }
    assert!(!per_host.contains_key(&down));
    assert!(per_host.values().all(|&n| n <= 2), "{per_host:?}");
    for (before, after) in cs.iter().filter(|c| on.contains(&c.id)).zip(&moved) {
        assert_eq!(before.ip, after.ip);
    }
}

#[tokio::test]
async fn finalize_waits_for_gone_then_frees_everything() {
    let fx = fixture().await;
    let g = group(3);
    let cs = fx.st.platform().place_missing(&g, 3).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    let c = cs[2].clone();
    let host = c.host.clone().unwrap();
    fx.st.platform().retire(&[c.id.clone()]).await.unwrap();
    let a: Assignment = get(fx.store.as_ref(), &keys::assignment(&host, &c.id))
        .await
        .unwrap();
    assert_eq!(a.container.desired, DesiredState::Deleted);
    // The agent has not removed it: nothing is freed.
    assert_eq!(fx.st.platform().finalize().await.unwrap(), 0);
    assert!(fx.st.ipam().lookup(&c.id).await.unwrap().is_some());
    // A report from a stale epoch is ignored.
    let mut gone = ContainerReport {
        id: c.id.clone(),
        phase: ContainerPhase::Stopped,
        gone: true,
        restarts: 0,
        crash_loop: false,
        epoch: c.host_epoch + 7,
        generation: 0,
        message: String::new(),
        snapshot: None,
    };
    let out = fx
        .st
        .platform()
        .apply_reports(&host, &[gone.clone()])
        .await
        .unwrap();
    assert_eq!((out.ignored, out.gone), (1, 0));
    // So is one from another host.
    gone.epoch = c.host_epoch;
    let out = fx
        .st
        .platform()
        .apply_reports("elsewhere", &[gone.clone()])
        .await
        .unwrap();
    assert_eq!(out.ignored, 1);
    let out = fx
        .st
        .platform()
        .apply_reports(&host, &[gone])
        .await
        .unwrap();
    assert_eq!(out.gone, 1);
    assert_eq!(fx.st.platform().finalize().await.unwrap(), 1);
    assert!(get::<Container>(fx.store.as_ref(), &keys::container(&c.id))
        .await
        .is_none());
    assert!(fx.st.ipam().lookup(&c.id).await.unwrap().is_none());
    let q = fx.st.ipam().list("net1").await.unwrap();
    let rec = q.iter().find(|r| Some(r.ip) == c.ip).unwrap();
    assert_eq!(rec.state, IpState::Quarantined);
    let alloc: HostAllocation = get(fx.store.as_ref(), &keys::alloc(&host)).await.unwrap();
    assert_eq!(alloc.containers, 0);
    assert_consistent(fx.store.as_ref(), &g).await;
    // Idempotent.
    assert_eq!(
        fx.st
            .platform()
            .finalize_ids(&[c.id.clone()])
            .await
            .unwrap(),
        0
    );
    // Scale back out: a new index, never the retired one.
    let cs2 = fx.st.platform().place_missing(&g, 3).await.unwrap();
    assert_eq!(cs2.last().unwrap().id.index, 3);
}

#[tokio::test]
async fn finalize_does_not_wait_for_a_down_host() {
    let fx = fixture().await;
    let g = group(2);
    let cs = fx.st.platform().place_missing(&g, 2).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    let c = cs[0].clone();
    let host = c.host.clone().unwrap();
    fx.st.platform().retire(&[c.id.clone()]).await.unwrap();
    let mut h: Host = get(fx.store.as_ref(), &keys::host(&host)).await.unwrap();
    h.state = HostState::Down;
    fx.store
        .put(&keys::host(&host), json::encode(&h).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(fx.st.platform().finalize().await.unwrap(), 1);
    assert!(
        get::<Assignment>(fx.store.as_ref(), &keys::assignment(&host, &c.id))
            .await
            .is_none()
    );
    assert_consistent(fx.store.as_ref(), &g).await;
}

#[tokio::test]
async fn reports_update_records_and_wait_phase_sees_them() {
    let fx = fixture().await;
    let g = group(2);
    let cs = fx.st.platform().place_missing(&g, 2).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    let p = fx.st.platform().clone();
    let want = ids(&cs);
    let waiter = tokio::spawn(async move {
        p.wait_phase(
            &want,
            &[ContainerPhase::Running],
            std::time::Duration::from_secs(5),
        )
        .await
    });
    for c in &cs {
        let r = ContainerReport {
            id: c.id.clone(),
            phase: ContainerPhase::Running,
            gone: false,
            restarts: 1,
            crash_loop: false,
            epoch: c.host_epoch,
            generation: 0,
            message: String::new(),
            snapshot: None,
        };
        let out = fx
            .st
            .platform()
            .apply_reports(c.host.as_ref().unwrap(), &[r.clone()])
            .await
            .unwrap();
        assert_eq!(out.applied, 1);
        // The same report again changes nothing.
        let rev = fx.store.revision().await.unwrap();
        fx.st
            .platform()
            .apply_reports(c.host.as_ref().unwrap(), &[r])
            .await
            .unwrap();
        assert_eq!(fx.store.revision().await.unwrap(), rev);
    }
    let done = waiter.await.unwrap().unwrap();
    assert!(done
        .iter()
        .all(|c| c.phase == ContainerPhase::Running && c.restarts == 1));
    let err = fx
        .st
        .platform()
        .wait_phase(
            &ids(&cs),
            &[ContainerPhase::Failed],
            std::time::Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_simulated_host_has_no_agent_to_wait_for() {
    let fx = fixture().await;
    let g = group(1);
    let cs = fx.st.platform().place_missing(&g, 1).await.unwrap();
    fx.st.platform().publish(&g, &ids(&cs)).await.unwrap();
    let host = cs[0].host.clone().unwrap();
    let mut h: Host = get(fx.store.as_ref(), &keys::host(&host)).await.unwrap();
    h.driver = jdos_server::dev::SIMULATED_DRIVER.into();
    fx.store
        .put(&keys::host(&host), json::encode(&h).unwrap(), None)
        .await
        .unwrap();
    fx.st.platform().retire(&ids(&cs)).await.unwrap();
    assert_eq!(fx.st.platform().finalize().await.unwrap(), 1);
    assert_consistent(fx.store.as_ref(), &g).await;
}

#[tokio::test]
async fn victims_keep_the_survivors_spread() {
    let fx = fixture().await;
    let g = group(6);
    fx.st.platform().place_missing(&g, 6).await.unwrap();
    let v = fx.st.platform().choose_victims(&g.key(), 2).await.unwrap();
    assert_eq!(v.len(), 2);
    fx.st.platform().retire(&v).await.unwrap();
    // Retired containers no longer count as live.
    let live = fx.st.platform().place_missing(&g, 4).await.unwrap();
    assert_eq!(live.len(), 4);
    let hosts: BTreeMap<String, String> = json::list_all::<Host>(fx.store.as_ref(), keys::HOSTS)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.name, h.switch))
        .collect();
    let mut per_switch: BTreeMap<&str, u32> = BTreeMap::new();
    for c in &live {
        *per_switch
            .entry(hosts[c.host.as_ref().unwrap()].as_str())
            .or_default() += 1;
    }
    assert!(per_switch.values().all(|&n| n == 2), "{per_switch:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_placements_of_many_groups_stay_consistent() {
    let fx = fixture().await;
    let mut tasks = Vec::new();
    for k in 0..8 {
        let st = fx.st.clone();
        tasks.push(tokio::spawn(async move {
            let mut g = group(3);
            g.name = format!("g{k}");
            let cs = st.platform().place_missing(&g, 3).await.unwrap();
            st.platform().publish(&g, &ids(&cs)).await.unwrap();
            cs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 24);
    let ips: BTreeSet<_> = all.iter().map(|c| c.ip.unwrap()).collect();
    assert_eq!(ips.len(), 24, "no address handed out twice");
    let mut per_host: BTreeMap<String, u32> = BTreeMap::new();
    for c in &all {
        *per_host.entry(c.host.clone().unwrap()).or_default() += 1;
    }
    let allocs: Vec<HostAllocation> = json::list_all(fx.store.as_ref(), keys::ALLOC)
        .await
        .unwrap();
    for a in allocs {
        let n = per_host.get(&a.host).copied().unwrap_or(0);
        assert_eq!(a.containers, n, "{}", a.host);
        assert_eq!(a.allocated.cpu_millis, u64::from(n) * 1000, "{}", a.host);
    }
}
