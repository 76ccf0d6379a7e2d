//! The failover controller over the real platform layer and store: a host
//! that stops heartbeating is fenced and its containers re-placed on other
//! hosts with the same IPs, work orders moved; a stale agent's reports are
//! ignored; the host comes back empty under its new epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jdos_server::api::hosts;
use jdos_server::auth::Caller;
use jdos_server::failover::{self, FailoverConfig};
use jdos_server::AppState;
use jdos_store::{json, MemoryStore, Store};
use jdos_types::agent::{Assignment, ContainerReport};
use jdos_types::api::RegisterHost;
use jdos_types::container::DesiredState;
use jdos_types::group::{ContainerTemplate, Placement};
use jdos_types::resources::GIB;
use jdos_types::topology::HostAllocation;
use jdos_types::{
    keys, App, BusinessLevel, Container, ContainerPhase, Group, Host, HostState, Network, Resources,
};

const HOSTS: [&str; 4] = ["h0", "h1", "h2", "h3"];

struct Fx {
    st: AppState,
    clock: Arc<AtomicU64>,
}

impl Fx {
    fn at(&self, t: u64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    /// Every host but `silent` heartbeats at `t` (epoch as the store says).
    async fn beat(&self, t: u64, silent: &[&str]) {
        self.at(t);
        for h in HOSTS.iter().filter(|h| !silent.contains(h)) {
            let epoch = self.host(h).await.epoch;
            self.st.liveness().touch(h, t, epoch);
        }
    }

    async fn host(&self, name: &str) -> Host {
        hosts::load(self.st.store(), name).await.unwrap().value
    }
}

async fn fixture() -> Fx {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(AtomicU64::new(1_000));
    let c = clock.clone();
    let st = AppState::with_clock(store.clone(), Arc::new(move || c.load(Ordering::SeqCst)));
    for (i, h) in HOSTS.iter().enumerate() {
        let req = RegisterHost {
            name: h.to_string(),
            datacenter: "dc1".into(),
            switch: format!("s{}", i % 2),
            rack: format!("r{i}"),
            capacity: Resources::new(8_000, 16 * GIB),
            resource_zone: None,
            labels: Default::default(),
            driver: Some("docker".into()),
        };
        hosts::register(&st, &Caller::system("test"), req)
            .await
            .unwrap();
    }
    st.ipam()
        .create_network(Network {
            name: "net1".into(),
            vlan: 100,
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec!["s0".into(), "s1".into()],
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
    Fx { st, clock }
}

fn group(replicas: u32) -> Group {
    Group {
        app: "shop".into(),
        env: "production".into(),
        name: "web".into(),
        datacenter: "dc1".into(),
        replicas,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(500, GIB),
            ..Default::default()
        },
        // Room for a lost host's share on the others (the default switch
        // cap, half the replicas, would keep one off).
        placement: Placement {
            max_per_host: Some(3),
            max_per_switch: Some(8),
            ..Default::default()
        },
        autoscaling: None,
    }
}

async fn deploy(fx: &Fx, g: &Group) -> Vec<Container> {
    fx.st
        .store()
        .put(&keys::group(&g.key()), json::encode(g).unwrap(), None)
        .await
        .unwrap();
    let cs = fx.st.platform().place_missing(g, g.replicas).await.unwrap();
    let ids: Vec<_> = cs.iter().map(|c| c.id.clone()).collect();
    fx.st.platform().publish(g, &ids).await.unwrap();
    cs
}

async fn records(store: &dyn Store, g: &Group) -> Vec<Container> {
    json::list_all(store, &keys::containers_of_group(&g.key()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_host_is_fenced_and_its_containers_move_with_their_ips() {
    let fx = fixture().await;
    let g = group(8);
    let before = deploy(&fx, &g).await;
    let on_h0: Vec<&Container> = before
        .iter()
        .filter(|c| c.host.as_deref() == Some("h0"))
        .collect();
    assert!(!on_h0.is_empty(), "the spread puts some on h0: {before:?}");
    let mut ctrl = failover::controller(&fx.st, FailoverConfig::default());

    // Everyone heartbeats for a while, then h0 loses power at 2 s.
    for t in (1_000..=2_000).step_by(250) {
        fx.beat(t, &[]).await;
        ctrl.tick().await.unwrap();
    }
    let mut down_at = None;
    for t in (2_250..=9_000).step_by(250) {
        fx.beat(t, &["h0"]).await;
        let r = ctrl.tick().await.unwrap();
        if !r.down.is_empty() {
            assert_eq!(r.down, ["h0"]);
            assert_eq!(r.evacuated["h0"], on_h0.len());
            down_at = Some(t);
        }
    }
    assert_eq!(down_at, Some(8_000), "down 6 s after the last heartbeat");
    let h0 = fx.host("h0").await;
    assert_eq!((h0.state, h0.epoch), (HostState::Down, 1));

    let after = records(fx.st.store(), &g).await;
    let ips_before: BTreeMap<_, _> = before.iter().map(|c| (c.id.clone(), c.ip)).collect();
    let mut ips = BTreeSet::new();
    for c in &after {
        assert_ne!(c.host.as_deref(), Some("h0"), "{c:?}");
        assert_eq!(c.ip, ips_before[&c.id], "same IP for {}", c.id);
        assert!(ips.insert(c.ip.unwrap()), "IP {} held twice", c.ip.unwrap());
        let host = fx.host(c.host.as_deref().unwrap()).await;
        assert_eq!(c.host_epoch, host.epoch);
        // Its work order now lives under its new host, desired running.
        let a: Assignment = json::decode(
            &fx.st
                .store()
                .get(&keys::assignment(&host.name, &c.id))
                .await
                .unwrap()
                .expect("work order on the new host"),
        )
        .unwrap();
        assert_eq!(a.container.desired, DesiredState::Running);
    }
    let left: Vec<Assignment> = json::list_all(fx.st.store(), &keys::assignments_of_host("h0"))
        .await
        .unwrap();
    assert!(left.is_empty(), "h0 keeps no work order: {left:?}");
    let alloc: HostAllocation = json::decode(
        &fx.st
            .store()
            .get(&keys::alloc("h0"))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(alloc.containers, 0);

    // The stale agent comes back and reports the moved containers running
    // under its old epoch: ignored.
    let stale: Vec<ContainerReport> = on_h0
        .iter()
        .map(|c| ContainerReport {
            id: c.id.clone(),
            phase: ContainerPhase::Running,
            gone: false,
            restarts: 0,
            crash_loop: false,
            epoch: 0,
            generation: 0,
            message: String::new(),
            snapshot: None,
        })
        .collect();
    let out = fx.st.platform().apply_reports("h0", &stale).await.unwrap();
    assert_eq!(out.ignored, on_h0.len());
    assert_eq!(out.applied, 0);
    for c in records(fx.st.store(), &g).await {
        assert_ne!(c.host.as_deref(), Some("h0"));
    }
    // Its heartbeat makes it ready again, under the new epoch.
    fx.at(9_250);
    fx.st.liveness().touch("h0", 9_250, 0);
    let r = ctrl.tick().await.unwrap();
    assert_eq!(r.recovered, ["h0"]);
    let h0 = fx.host("h0").await;
    assert_eq!((h0.state, h0.epoch), (HostState::Ready, 1));
}

#[tokio::test]
async fn with_no_room_elsewhere_the_containers_stay_lost_until_a_host_frees_up() {
    let fx = fixture().await;
    // Cordon h2 and h3: only h0 and h1 take containers.
    for h in ["h2", "h3"] {
        hosts::cordon(&fx.st, &Caller::system("test"), h, true)
            .await
            .unwrap();
    }
    let g = Group {
        placement: Placement {
            max_per_host: Some(1),
            ..Default::default()
        },
        ..group(2)
    };
    deploy(&fx, &g).await;
    let mut ctrl = failover::controller(&fx.st, FailoverConfig::default());
    fx.beat(1_000, &[]).await;
    ctrl.tick().await.unwrap();
    fx.beat(7_000, &["h0"]).await;
    let r = ctrl.tick().await.unwrap();
    assert_eq!(r.down, ["h0"]);
    assert_eq!(r.unplaced, 1, "max one per host and h1 has one");
    let lost: Vec<Container> = records(fx.st.store(), &g)
        .await
        .into_iter()
        .filter(|c| c.host.as_deref() == Some("h0"))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].phase, ContainerPhase::Lost);
    // Room appears: the retry moves it.
    hosts::cordon(&fx.st, &Caller::system("test"), "h2", false)
        .await
        .unwrap();
    fx.beat(9_000, &["h0"]).await;
    let r = ctrl.tick().await.unwrap();
    assert_eq!(r.evacuated.get("h0"), Some(&1));
    let moved = records(fx.st.store(), &g).await;
    assert!(moved.iter().all(|c| c.host.as_deref() != Some("h0")));
    assert_eq!(
        moved.iter().find(|c| c.id == lost[0].id).unwrap().ip,
        lost[0].ip
    );
}

#[tokio::test]
async fn a_drain_refuses_bad_input_developers_and_down_hosts() {
    use jdos_server::failover::drain;
    use jdos_types::failover::DrainRequest;
    let fx = fixture().await;
    let ops = Caller::system("ops");
    let e = drain::start(&fx.st, &ops, "h1", DrainRequest { batch: Some(0) })
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 400);
    assert_eq!(e.body.field.as_deref(), Some("batch"));
    let dev = Caller {
        token_id: "t".into(),
        name: "dev".into(),
        role: jdos_types::Role::Developer,
        department: Some("retail".into()),
    };
    let e = drain::start(&fx.st, &dev, "h1", DrainRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    let e = drain::start(&fx.st, &ops, "nope", DrainRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 404);
    // A down host is the controller's to evacuate.
    let mut ctrl = failover::controller(&fx.st, FailoverConfig::default());
    fx.beat(1_000, &[]).await;
    ctrl.tick().await.unwrap();
    fx.beat(8_000, &["h0"]).await;
    assert_eq!(ctrl.tick().await.unwrap().down, ["h0"]);
    let e = drain::start(&fx.st, &ops, "h0", DrainRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 409);
    // Nothing was written by the refusals: no drain record.
    assert!(drain::get(&fx.st, "h1").await.is_err());
    assert!(!fx.host("h1").await.cordoned);
}
