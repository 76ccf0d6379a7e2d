//! Controller tests over an in-memory store with an injected clock and a
//! hand-driven liveness table. The platform seam is a `RecordingMover` that
//! moves records to the first host it is allowed (or refuses), so these
//! tests check the controller's decisions; the real relocation is covered by
//! the platform's own tests and the end-to-end failover test.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jdos_store::{json, MemoryStore, Store};
use jdos_types::api::RegisterHost;
use jdos_types::failover::{Brake, CrashLoop};
use jdos_types::group::ContainerTemplate;
use jdos_types::topology::HostAllocation;
use jdos_types::{
    keys, Container, ContainerPhase, Event, EventResult, Group, Host, HostState, InstanceId,
    Resources, UnixMillis,
};

use super::*;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::state::AppState;

#[derive(Default)]
struct Table(Mutex<HashMap<String, UnixMillis>>);

impl Heartbeats for Table {
    fn last_heartbeat(&self, host: &str) -> Option<UnixMillis> {
        self.0.lock().unwrap().get(host).copied()
    }
}

impl Table {
    fn beat(&self, hosts: &[String], at: UnixMillis) {
        let mut t = self.0.lock().unwrap();
        for h in hosts {
            t.insert(h.clone(), at);
        }
    }
}

/// One `relocate` call: ids, hosts avoided, reason.
type Call = (Vec<InstanceId>, Vec<String>, String);

/// Moves each container to the first host (by name) it may go to, or
/// refuses when `refuse` is set; records every call.
#[derive(Default)]
struct RecordingMover {
    store: Option<Arc<dyn Store>>,
    refuse: AtomicBool,
    calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl Mover for RecordingMover {
    async fn relocate(
        &self,
        _group: &Group,
        ids: &[InstanceId],
        avoid: &[String],
        reason: &str,
    ) -> Result<Vec<Container>, HttpError> {
        self.calls
            .lock()
            .unwrap()
            .push((ids.to_vec(), avoid.to_vec(), reason.to_string()));
        if self.refuse.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let store = self.store.as_ref().unwrap();
        let hosts: Vec<Host> = crate::kv::list_all(store.as_ref(), keys::HOSTS).await?;
        let Some(to) = hosts
            .iter()
            .find(|h| h.schedulable() && !avoid.contains(&h.name))
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for id in ids {
            let kv = store.get(&keys::container(id)).await?.unwrap();
            let mut c: Container = json::decode(&kv)?;
            let from = c.host.clone().unwrap();
            c.host = Some(to.name.clone());
            c.host_epoch = to.epoch;
            c.phase = ContainerPhase::Scheduled;
            store
                .put(&keys::container(id), json::encode(&c)?, None)
                .await?;
            bump_alloc(store.as_ref(), &from, -1).await;
            bump_alloc(store.as_ref(), &to.name, 1).await;
            out.push(c);
        }
        Ok(out)
    }

    async fn stop_in_place(&self, _ids: &[InstanceId]) -> Result<(), HttpError> {
        Ok(())
    }
}

async fn bump_alloc(store: &dyn Store, host: &str, by: i64) {
    let mut a: HostAllocation = match store.get(&keys::alloc(host)).await.unwrap() {
        Some(kv) => json::decode(&kv).unwrap(),
        None => HostAllocation {
            host: host.into(),
            ..Default::default()
        },
    };
    a.containers = (i64::from(a.containers) + by) as u32;
    store
        .put(&keys::alloc(host), json::encode(&a).unwrap(), None)
        .await
        .unwrap();
}

struct Harness {
    st: AppState,
    clock: Arc<AtomicU64>,
    live: Arc<Table>,
    mover: Arc<RecordingMover>,
    ctrl: Controller,
}

impl Harness {
    /// `per_dc` hosts in each of `dcs`, named `<dc>-h<i>`, driver docker,
    /// all heartbeating at t=0; the controller starts at `start`.
    async fn new(dcs: &[&str], per_dc: u32, start: UnixMillis) -> Harness {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock = Arc::new(AtomicU64::new(start));
        let c2 = clock.clone();
        let st = AppState::with_clock(store.clone(), Arc::new(move || c2.load(Ordering::SeqCst)));
        for dc in dcs {
            for i in 0..per_dc {
                let req = RegisterHost {
                    name: format!("{dc}-h{i}"),
                    datacenter: dc.to_string(),
                    switch: "s1".into(),
                    rack: format!("r{i}"),
                    capacity: Resources::new(8000, 16 << 30),
                    resource_zone: None,
                    labels: Default::default(),
                    driver: Some("docker".into()),
                };
                crate::api::hosts::register(&st, &Caller::system("test"), req)
                    .await
                    .unwrap();
            }
        }
        let live = Arc::new(Table::default());
        let mover = Arc::new(RecordingMover {
            store: Some(store),
            ..Default::default()
        });
        let ctrl = Controller::new(
            st.clone(),
            FailoverConfig::default(),
            mover.clone(),
            live.clone(),
        );
        Harness {
            st,
            clock,
            live,
            mover,
            ctrl,
        }
    }

    fn at(&self, t: UnixMillis) {
        self.clock.store(t, Ordering::SeqCst);
    }

    /// Every host but `except` heartbeats at `t`, then the controller ticks at `t`.
    async fn tick(&mut self, t: UnixMillis, except: &[&str]) -> TickReport {
        self.at(t);
        let hosts: Vec<Host> = crate::kv::list_all(self.st.store(), keys::HOSTS)
            .await
            .unwrap();
        let beating: Vec<String> = hosts
            .into_iter()
            .map(|h| h.name)
            .filter(|n| !except.contains(&n.as_str()))
            .collect();
        self.live.beat(&beating, t);
        self.ctrl.tick().await.unwrap()
    }

    async fn host(&self, name: &str) -> Host {
        crate::api::hosts::load(self.st.store(), name)
            .await
            .unwrap()
            .value
    }

    async fn container(&self, id: &InstanceId) -> Container {
        let kv = self
            .st
            .store()
            .get(&keys::container(id))
            .await
            .unwrap()
            .unwrap();
        json::decode(&kv).unwrap()
    }

    /// A group `app/prod/web` in `dc` with one container per listed host.
    async fn group(&self, dc: &str, on: &[&str]) -> Vec<InstanceId> {
        let store = self.st.store();
        let template = ContainerTemplate {
            image: "busybox".into(),
            resources: Resources::new(100, 64 << 20),
            ..Default::default()
        };
        let g = Group {
            app: "app".into(),
            env: "prod".into(),
            name: "web".into(),
            datacenter: dc.into(),
            replicas: on.len() as u32,
            template,
            placement: Default::default(),
            autoscaling: None,
        };
        store
            .put(&keys::group(&g.key()), json::encode(&g).unwrap(), None)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (i, h) in on.iter().enumerate() {
            let id = InstanceId::new(&g.key(), i as u32);
            let c = Container {
                id: id.clone(),
                datacenter: dc.into(),
                host: Some(h.to_string()),
                host_epoch: 0,
                network: None,
                ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 10 + i as u8)),
                image: "busybox".into(),
                resources: Resources::new(100, 64 << 20),
                desired: Default::default(),
                phase: ContainerPhase::Running,
                restarts: 0,
                message: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
            };
            store
                .put(&keys::container(&id), json::encode(&c).unwrap(), None)
                .await
                .unwrap();
            bump_alloc(store, h, 1).await;
            ids.push(id);
        }
        ids
    }

    async fn events(&self, action: &str) -> Vec<Event> {
        let all: Vec<Event> = crate::kv::list_all(self.st.store(), keys::EVENTS)
            .await
            .unwrap();
        all.into_iter().filter(|e| e.action == action).collect()
    }

    fn calls(&self) -> Vec<Call> {
        self.mover.calls.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_silent_host_goes_suspect_then_down_and_is_evacuated() {
    let mut h = Harness::new(&["dc1"], 3, 0).await;
    let ids = h.group("dc1", &["dc1-h0", "dc1-h0", "dc1-h1"]).await;
    for t in (0..=1_000).step_by(250) {
        assert_eq!(h.tick(t, &[]).await, TickReport::default());
    }
    // h0's last heartbeat was at 1 s.
    assert_eq!(h.tick(3_750, &["dc1-h0"]).await, TickReport::default());
    let r = h.tick(4_000, &["dc1-h0"]).await;
    assert_eq!(r.suspect, ["dc1-h0"]);
    assert_eq!(h.host("dc1-h0").await.state, HostState::Suspect);
    assert!(!h.host("dc1-h0").await.schedulable());
    assert_eq!(h.tick(6_750, &["dc1-h0"]).await, TickReport::default());
    assert!(h.calls().is_empty(), "suspect hosts are not evacuated");

    let r = h.tick(7_000, &["dc1-h0"]).await;
    assert_eq!(r.down, ["dc1-h0"]);
    assert_eq!(r.evacuated, BTreeMap::from([("dc1-h0".to_string(), 2)]));
    let host = h.host("dc1-h0").await;
    assert_eq!((host.state, host.epoch), (HostState::Down, 1));
    // One relocation for the group, away from the down host, both ids.
    let calls = h.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, ids[..2]);
    assert_eq!(calls[0].1, ["dc1-h0"]);
    for id in &ids[..2] {
        let c = h.container(id).await;
        assert_eq!(c.host.as_deref(), Some("dc1-h1"));
        assert_eq!(
            c.ip,
            Some(std::net::Ipv4Addr::new(10, 0, 0, 10 + id.index as u8))
        );
    }
    assert_eq!(h.container(&ids[2]).await.host.as_deref(), Some("dc1-h1"));
    for (action, result) in [
        ("host.suspect", EventResult::Success),
        ("host.down", EventResult::Failure),
        ("group.evacuate", EventResult::Success),
        ("host.evacuate", EventResult::Success),
    ] {
        let ev = h.events(action).await;
        assert_eq!(ev.len(), 1, "{action}: {ev:?}");
        assert_eq!(ev[0].result, result, "{action}: {ev:?}");
    }
    assert_eq!(h.events("group.evacuate").await[0].app.as_deref(), None);

    // Nothing more to do while it stays down.
    assert_eq!(h.tick(7_250, &["dc1-h0"]).await, TickReport::default());
    assert_eq!(h.calls().len(), 1);

    // It heartbeats again: ready under its new epoch (its agent fences the
    // moved containers on its side).
    let r = h.tick(9_000, &[]).await;
    assert_eq!(r.recovered, ["dc1-h0"]);
    let host = h.host("dc1-h0").await;
    assert_eq!((host.state, host.epoch), (HostState::Ready, 1));
    let mut metrics = String::new();
    h.st.failover().metrics.render(&mut metrics);
    assert!(
        metrics.contains("jdos_failover_evacuated_containers_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("jdos_failover_host_transitions_total{to=\"down\"} 1"));
}

#[tokio::test]
async fn a_suspect_host_that_heartbeats_again_is_ready_without_a_new_epoch() {
    let mut h = Harness::new(&["dc1"], 3, 0).await;
    h.tick(0, &[]).await;
    assert_eq!(h.tick(3_000, &["dc1-h2"]).await.suspect, ["dc1-h2"]);
    let r = h.tick(3_500, &[]).await;
    assert_eq!(r.recovered, ["dc1-h2"]);
    let host = h.host("dc1-h2").await;
    assert_eq!((host.state, host.epoch), (HostState::Ready, 0));
}

#[tokio::test]
async fn a_restarted_server_waits_one_down_interval_before_judging() {
    // The server (re)starts at 100 s and has heard from no host yet.
    let mut h = Harness::new(&["dc1"], 3, 100_000).await;
    h.group("dc1", &["dc1-h0"]).await;
    let all = ["dc1-h0", "dc1-h1", "dc1-h2"];
    assert_eq!(h.tick(102_000, &all).await, TickReport::default());
    // Two agents find the new server in time; h0 does not.
    let r = h.tick(105_000, &["dc1-h0"]).await;
    assert_eq!(r.suspect, ["dc1-h0"]);
    assert_eq!(h.tick(105_999, &["dc1-h0"]).await, TickReport::default());
    let r = h.tick(106_000, &["dc1-h0"]).await;
    assert_eq!(r.down, ["dc1-h0"]);
    assert_eq!(r.evacuated["dc1-h0"], 1);
}

#[tokio::test]
async fn hosts_without_an_agent_are_not_judged() {
    let mut h = Harness::new(&["dc1"], 1, 0).await;
    let req = RegisterHost {
        name: "sim-1".into(),
        datacenter: "dc1".into(),
        switch: "s1".into(),
        rack: "r1".into(),
        capacity: Resources::new(8000, 16 << 30),
        resource_zone: None,
        labels: Default::default(),
        driver: Some(crate::dev::SIMULATED_DRIVER.into()),
    };
    crate::api::hosts::register(&h.st, &Caller::system("test"), req)
        .await
        .unwrap();
    h.tick(60_000, &["sim-1"]).await;
    assert_eq!(h.host("sim-1").await.state, HostState::Ready);
}

#[tokio::test]
async fn a_mass_failure_brakes_evacuation_until_resumed() {
    // 10 hosts; 4 lose power at once: 40 % > 30 %, and 4 ≥ 3.
    let mut h = Harness::new(&["dc1"], 10, 0).await;
    let ids = h.group("dc1", &["dc1-h0", "dc1-h1", "dc1-h9"]).await;
    let dead = ["dc1-h0", "dc1-h1", "dc1-h2", "dc1-h3"];
    h.tick(0, &[]).await;
    let r = h.tick(3_000, &dead).await;
    assert_eq!(r.brakes_engaged, ["dc1"]);
    assert_eq!(r.suspect.len(), 4);
    let ev = h.events("failover.brake").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].result, EventResult::Failure, "alertable");

    let r = h.tick(6_000, &dead).await;
    assert_eq!(r.held.len(), 4);
    assert!(r.down.is_empty() && r.evacuated.is_empty());
    assert!(h.calls().is_empty(), "braked: nothing moves");
    for d in dead {
        let host = h.host(d).await;
        assert_eq!(
            (host.state, host.epoch),
            (HostState::Down, 0),
            "held, not fenced"
        );
    }
    for id in &ids[..2] {
        let c = h.container(id).await;
        assert_eq!(c.phase, ContainerPhase::Lost);
        assert_eq!(
            c.host.as_deref(),
            Some(format!("dc1-h{}", id.index).as_str())
        );
    }
    assert_eq!(h.container(&ids[2]).await.phase, ContainerPhase::Running);
    let b: Brake = json::decode(
        &h.st
            .store()
            .get(&keys::failover_brake("dc1"))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(b.held, dead);
    assert!(b.engaged());
    assert_eq!(h.tick(20_000, &dead).await, TickReport::default());

    // Developers cannot release it; ops can.
    let dev = Caller {
        token_id: "t".into(),
        name: "dev".into(),
        role: jdos_types::Role::Developer,
        department: Some("d".into()),
    };
    assert_eq!(
        resume(&h.st, &dev, "dc1")
            .await
            .unwrap_err()
            .status
            .as_u16(),
        403
    );
    assert_eq!(
        resume(&h.st, &Caller::system("ops"), "dc9")
            .await
            .unwrap_err()
            .status
            .as_u16(),
        404
    );
    h.at(20_100);
    let b = resume(&h.st, &Caller::system("ops"), "dc1").await.unwrap();
    assert!(b.released);
    for d in dead {
        assert_eq!(h.host(d).await.epoch, 1, "fenced on release");
    }
    let r = h.tick(20_250, &dead).await;
    assert_eq!(r.evacuated.values().sum::<usize>(), 2);
    assert!(
        r.brakes_engaged.is_empty(),
        "a released brake does not re-engage"
    );
    for id in &ids[..2] {
        let c = h.container(id).await;
        assert!(!dead.contains(&c.host.as_deref().unwrap()), "{c:?}");
    }
    assert_eq!(h.events("failover.resume").await.len(), 1);

    // The hosts come back: the share falls under the limit, the record goes.
    let r = h.tick(21_000, &[]).await;
    assert_eq!(r.brakes_cleared, ["dc1"]);
    assert_eq!(r.recovered.len(), 4);
    assert!(h
        .st
        .store()
        .get(&keys::failover_brake("dc1"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_brake_clears_when_hosts_come_back_and_held_hosts_are_then_evacuated() {
    let mut h = Harness::new(&["dc1"], 10, 0).await;
    let ids = h.group("dc1", &["dc1-h3"]).await;
    let dead = ["dc1-h0", "dc1-h1", "dc1-h2", "dc1-h3"];
    h.tick(0, &[]).await;
    h.tick(3_000, &dead).await;
    assert_eq!(h.tick(6_000, &dead).await.held.len(), 4);
    // Three come back; h3 stays dead: 1 of 10 is not a mass failure.
    let r = h.tick(8_000, &["dc1-h3"]).await;
    assert_eq!(r.brakes_cleared, ["dc1"]);
    assert_eq!(r.recovered.len(), 3);
    assert_eq!(r.evacuated.get("dc1-h3"), Some(&1));
    assert_eq!(h.host("dc1-h3").await.epoch, 1);
    assert_ne!(h.container(&ids[0]).await.host.as_deref(), Some("dc1-h3"));
    // Recovered hosts kept their epoch: nothing of theirs was moved.
    assert_eq!(h.host("dc1-h0").await.epoch, 0);
}

#[tokio::test]
async fn an_evacuation_with_no_room_retries_with_back_off() {
    let mut h = Harness::new(&["dc1"], 3, 0).await;
    let ids = h.group("dc1", &["dc1-h0"]).await;
    h.mover.refuse.store(true, Ordering::SeqCst);
    h.tick(0, &[]).await;
    let r = h.tick(6_000, &["dc1-h0"]).await;
    assert_eq!(r.down, ["dc1-h0"]);
    assert_eq!(r.unplaced, 1);
    assert_eq!(h.container(&ids[0]).await.phase, ContainerPhase::Lost);
    let failed = h.events("host.evacuate").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].result, EventResult::Failure);
    // Not retried within the back-off…
    h.tick(6_500, &["dc1-h0"]).await;
    assert_eq!(h.calls().len(), 1);
    // …but after it, and the same failure is not reported twice.
    h.tick(7_000, &["dc1-h0"]).await;
    assert_eq!(h.calls().len(), 2);
    assert_eq!(h.events("host.evacuate").await.len(), 1);
    h.mover.refuse.store(false, Ordering::SeqCst);
    let r = h.tick(9_000, &["dc1-h0"]).await;
    assert_eq!(r.evacuated["dc1-h0"], 1);
    assert_eq!(h.container(&ids[0]).await.host.as_deref(), Some("dc1-h1"));
}

#[tokio::test]
async fn a_crash_looping_container_moves_until_it_has_tried_enough_hosts() {
    let mut h = Harness::new(&["dc1"], 4, 0).await;
    let ids = h.group("dc1", &["dc1-h0"]).await;
    let id = &ids[0];
    h.tick(0, &[]).await;
    // A report from a host it is not on asks for nothing.
    h.st.failover().crash_loop("dc1-h3", 0, id);
    assert!(h.tick(250, &[]).await.crash_loop_moved.is_empty());
    // Nor one about a copy from another epoch (left from before a move).
    h.st.failover().crash_loop("dc1-h0", 7, id);
    assert!(h.tick(300, &[]).await.crash_loop_moved.is_empty());

    h.st.failover().crash_loop("dc1-h0", 0, id);
    h.st.failover().crash_loop("dc1-h0", 0, id);
    let r = h.tick(500, &[]).await;
    assert_eq!(r.crash_loop_moved, std::slice::from_ref(id));
    assert_eq!(h.calls().len(), 1, "reported twice, moved once");
    assert_eq!(h.calls()[0].1, ["dc1-h0"]);
    assert_eq!(h.container(id).await.host.as_deref(), Some("dc1-h1"));

    h.st.failover().crash_loop("dc1-h1", 0, id);
    let r = h.tick(750, &[]).await;
    assert_eq!(r.crash_loop_moved, std::slice::from_ref(id));
    assert_eq!(
        h.calls()[1].1,
        ["dc1-h0", "dc1-h1"],
        "avoids every host tried"
    );
    assert_eq!(h.container(id).await.host.as_deref(), Some("dc1-h2"));

    // Third host: given up (default 3), not moved again.
    h.st.failover().crash_loop("dc1-h2", 0, id);
    let r = h.tick(1_000, &[]).await;
    assert_eq!(r.crash_loop_given_up, std::slice::from_ref(id));
    assert_eq!(h.calls().len(), 2);
    let c = h.container(id).await;
    assert_eq!(c.phase, ContainerPhase::Failed);
    assert!(c.message.contains("given up"), "{}", c.message);
    let rec: CrashLoop = json::decode(
        &h.st
            .store()
            .get(&keys::failover_crash_loop(id))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(rec.given_up);
    assert_eq!(rec.hosts, ["dc1-h0", "dc1-h1", "dc1-h2"]);
    // Given up stays given up.
    h.st.failover().crash_loop("dc1-h2", 0, id);
    assert_eq!(h.tick(1_250, &[]).await, TickReport::default());

    // Its record goes once the container is deleted.
    h.st.store().delete(&keys::container(id)).await.unwrap();
    h.tick(61_000, &[]).await;
    assert!(h
        .st
        .store()
        .get(&keys::failover_crash_loop(id))
        .await
        .unwrap()
        .is_none());
}
