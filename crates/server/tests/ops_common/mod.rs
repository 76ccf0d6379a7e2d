//! Harness of the operations tests: a server state over a memory store with
//! a seeded topology, a network and an app; the workflow engine with every
//! operation; and in-process fake agents, one per host, that make a
//! `FakeDriver` hold exactly their host's work orders and report through
//! the platform like the real agent does.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_runtime::{ContainerSpec, DestroyOptions, Driver, FakeDriver, NetworkRealization};
use jdos_server::dev::{self, DevTopology};
use jdos_server::hooks::HookExecutor;
use jdos_server::ops::{self, OpsContext};
use jdos_server::{AppState, Platform};
use jdos_store::{json, MemoryStore, Store};
use jdos_types::agent::{Assignment, ContainerReport, SnapshotReport};
use jdos_types::container::DesiredState;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::GIB;
use jdos_types::topology::HostAllocation;
use jdos_types::{
    keys, App, BusinessLevel, Container, ContainerPhase, Group, GroupKey, Host, InstanceId,
    IpAssignment, Network, Resources, Task, TaskState,
};
use jdos_workflow::{Engine, EngineConfig, NewTask};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const T: Duration = Duration::from_secs(60);

/// A server (state + engine) over a shared store.
pub struct Server {
    pub st: AppState,
    pub engine: Arc<Engine>,
    pub stop: watch::Sender<bool>,
    pub handle: JoinHandle<()>,
}

impl Server {
    /// As if the process were killed: the engine task and every task it
    /// runs are dropped mid-step, nothing more is written.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn engine_config(worker: &str) -> EngineConfig {
    EngineConfig {
        worker_id: worker.into(),
        concurrency: 16,
        lease_ttl: Duration::from_secs(10),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
    }
}

/// Starts a server state with its engine on `store`.
pub async fn server(store: Arc<dyn Store>, worker: &str) -> Server {
    let st = AppState::new(store);
    st.ipam().rebuild().await.unwrap();
    let cx = OpsContext::with_hooks(
        &st,
        HookExecutor::new(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let engine = ops::engine(&st, engine_config(worker), &cx);
    let (stop, rx) = watch::channel(false);
    let handle = engine.start(rx);
    Server {
        st,
        engine,
        stop,
        handle,
    }
}

/// What a test runs against.
pub struct Fx {
    pub store: Arc<dyn Store>,
    pub srv: Server,
    pub agents: Agents,
}

/// Hosts: 2 switches × 2 racks × `hosts_per_rack` in datacenter
/// `langfang`, network `net1` (a /24) trunked to both switches, app `shop`
/// of department `retail`.
pub async fn fixture(hosts_per_rack: u32) -> Fx {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let seed = AppState::new(store.clone());
    let topo = DevTopology {
        datacenters: 1,
        switches_per_dc: 2,
        racks_per_switch: 2,
        hosts_per_rack,
        ..Default::default()
    };
    dev::seed(&seed, &topo).await.unwrap();
    seed.ipam()
        .create_network(Network {
            name: "net1".into(),
            vlan: 100,
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec!["langfang-s1".into(), "langfang-s2".into()],
            quarantine_secs: 300,
        })
        .await
        .unwrap();
    put_app(store.as_ref(), "shop", "retail", &[("tier", "web")]).await;
    drop(seed);
    let srv = server(store.clone(), "server-1").await;
    let mut hosts: Vec<Host> = json::list_all(store.as_ref(), keys::HOSTS).await.unwrap();
    // Seeded hosts say `simulated` (nobody reports for them, so retired
    // containers are finalized at once); these have agents that report, as
    // registered hosts do.
    for h in &mut hosts {
        h.driver = "fake".into();
        store
            .put(&keys::host(&h.name), json::encode(&*h).unwrap(), None)
            .await
            .unwrap();
    }
    let agents = Agents::start(
        srv.st.platform().clone(),
        store.clone(),
        hosts.iter().map(|h| h.name.clone()).collect(),
    );
    Fx { store, srv, agents }
}

pub async fn put_app(store: &dyn Store, name: &str, department: &str, labels: &[(&str, &str)]) {
    let app = App {
        name: name.into(),
        owner: "alice".into(),
        department: department.into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at_ms: 0,
    };
    store
        .put(&keys::app(name), json::encode(&app).unwrap(), None)
        .await
        .unwrap();
}

pub fn group(app: &str, name: &str, replicas: u32) -> Group {
    Group {
        app: app.into(),
        env: "production".into(),
        name: name.into(),
        datacenter: "langfang".into(),
        replicas,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            command: vec!["httpd".into(), "-f".into()],
            resources: Resources::new(250, GIB / 4),
            ..Default::default()
        },
        placement: jdos_types::group::Placement {
            max_per_host: Some(4),
            ..Default::default()
        },
        autoscaling: None,
    }
}

pub async fn put_group(store: &dyn Store, g: &Group) {
    store
        .put(&keys::group(&g.key()), json::encode(g).unwrap(), None)
        .await
        .unwrap();
}

pub fn key(g: &Group) -> GroupKey {
    g.key()
}

/// Submits a task (department `retail`) without waiting for it.
pub async fn submit(engine: &Engine, mut req: NewTask) -> Task {
    req.department = Some("retail".into());
    engine.submit(req).await.unwrap()
}

/// Submits and waits for a task to finish.
pub async fn run(engine: &Engine, req: NewTask) -> Task {
    let t = submit(engine, req).await;
    engine.wait(&t.id, T).await.unwrap()
}

pub fn assert_succeeded(t: &Task) {
    assert_eq!(
        t.state,
        TaskState::Succeeded,
        "task {} failed: {}\n{:#?}",
        t.kind,
        t.error,
        t.steps
    );
}

/// The group's container records.
pub async fn containers(store: &dyn Store, g: &GroupKey) -> Vec<Container> {
    json::list_all(store, &keys::containers_of_group(g))
        .await
        .unwrap()
}

/// Address records owned by containers of `app`.
pub async fn ips_of(store: &dyn Store, app: &str) -> Vec<IpAssignment> {
    let all: Vec<IpAssignment> = json::list_all(store, keys::IPS).await.unwrap();
    all.into_iter().filter(|a| a.identity.app == app).collect()
}

/// Every allocation equals the sum of the live records on its host.
pub async fn assert_allocations_match(store: &dyn Store) {
    let allocs: Vec<HostAllocation> = json::list_all(store, keys::ALLOC).await.unwrap();
    let records: Vec<Container> = json::list_all(store, keys::CONTAINERS).await.unwrap();
    let mut sum: BTreeMap<String, (u64, u64, u32)> = BTreeMap::new();
    for c in &records {
        if let Some(h) = &c.host {
            let e = sum.entry(h.clone()).or_default();
            e.0 += c.resources.cpu_millis;
            e.1 += c.resources.memory_bytes;
            e.2 += 1;
        }
    }
    for a in allocs {
        let want = sum.get(&a.host).copied().unwrap_or_default();
        assert_eq!(
            (
                a.allocated.cpu_millis,
                a.allocated.memory_bytes,
                a.containers
            ),
            want,
            "allocation of {} does not match its containers",
            a.host
        );
    }
}

/// Polls `f` until it returns true.
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + T;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// In-process fake agents, one per host.
pub struct Agents {
    pub drivers: BTreeMap<String, Arc<FakeDriver>>,
    /// Live resource updates applied (no restart).
    pub live_updates: Arc<AtomicU64>,
    /// Containers (re)created.
    pub creates: Arc<AtomicU64>,
    /// While set, agents apply work orders but do not report `running`
    /// (a container that never gets healthy).
    pub hold_running: Arc<AtomicBool>,
    /// While set, agents leave snapshot orders alone (an agent slow to
    /// commit).
    pub hold_snapshots: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for h in &self.handles {
            h.abort();
        }
    }
}

impl Agents {
    pub fn start(platform: Arc<Platform>, store: Arc<dyn Store>, hosts: Vec<String>) -> Agents {
        let (stop, rx) = watch::channel(false);
        let live_updates = Arc::new(AtomicU64::new(0));
        let creates = Arc::new(AtomicU64::new(0));
        let hold_running = Arc::new(AtomicBool::new(false));
        let hold_snapshots = Arc::new(AtomicBool::new(false));
        let mut drivers = BTreeMap::new();
        let mut handles = Vec::new();
        for h in hosts {
            let d = Arc::new(FakeDriver::new().with_name_scope(&h));
            drivers.insert(h.clone(), d.clone());
            let agent = FakeAgent {
                host: h,
                platform: platform.clone(),
                store: store.clone(),
                driver: d,
                applied: HashMap::new(),
                last: HashMap::new(),
                live_updates: live_updates.clone(),
                creates: creates.clone(),
                hold_running: hold_running.clone(),
                hold_snapshots: hold_snapshots.clone(),
                snapshots: HashMap::new(),
            };
            handles.push(tokio::spawn(agent.run(rx.clone())));
        }
        Agents {
            drivers,
            live_updates,
            creates,
            hold_running,
            hold_snapshots,
            stop,
            handles,
        }
    }

    /// Containers the engines run, over all hosts.
    pub fn running(&self) -> usize {
        self.drivers.values().map(|d| d.container_count()).sum()
    }
}

/// What the agent applied for one container.
#[derive(Clone, PartialEq)]
struct Applied {
    generation: u64,
    spec_hash: String,
    resources: (u64, u64),
    desired: DesiredState,
}

struct FakeAgent {
    host: String,
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    driver: Arc<FakeDriver>,
    applied: HashMap<InstanceId, Applied>,
    last: HashMap<InstanceId, ContainerReport>,
    live_updates: Arc<AtomicU64>,
    creates: Arc<AtomicU64>,
    hold_running: Arc<AtomicBool>,
    hold_snapshots: Arc<AtomicBool>,
    // Snapshot orders carried out, as the real agent remembers them.
    snapshots: HashMap<InstanceId, SnapshotReport>,
}

impl FakeAgent {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::debug!(host = %self.host, error = %e, "fake agent round failed");
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(15)) => {}
            }
        }
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        let orders: Vec<Assignment> =
            json::list_all(self.store.as_ref(), &keys::assignments_of_host(&self.host)).await?;
        let mut reports = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for o in &orders {
            let id = o.container.id.clone();
            seen.insert(id.clone());
            let mut acted = false;
            let (phase, gone) = match o.container.desired {
                DesiredState::Deleted => {
                    if self.applied.remove(&id).is_some() {
                        let _ = self.driver.destroy(&id, DestroyOptions::purge()).await;
                    }
                    (ContainerPhase::Stopped, true)
                }
                DesiredState::Stopped => {
                    if let Some(a) = self.applied.get_mut(&id) {
                        if a.desired != DesiredState::Stopped {
                            self.driver.stop(&id, Duration::ZERO).await?;
                            a.desired = DesiredState::Stopped;
                        }
                        (ContainerPhase::Stopped, false)
                    } else {
                        (ContainerPhase::Stopped, true)
                    }
                }
                DesiredState::Running => {
                    let realization = NetworkRealization::default();
                    let net = o.network.as_ref().map(|n| (n, &realization));
                    if let Some(n) = &o.network {
                        self.driver.ensure_network(n, &realization).await?;
                    }
                    let spec = ContainerSpec::for_container(&o.container, &o.template, net)?;
                    let mut sized = spec.clone();
                    sized.resources = Resources::default();
                    let want = Applied {
                        generation: o.generation,
                        spec_hash: sized.spec_hash(),
                        resources: (spec.resources.cpu_millis, spec.resources.memory_bytes),
                        desired: DesiredState::Running,
                    };
                    match self.applied.get(&id) {
                        Some(a) if *a == want => {}
                        // Only the size changed: a live cgroup update.
                        Some(a)
                            if a.generation == want.generation
                                && a.spec_hash == want.spec_hash
                                && a.desired == DesiredState::Running =>
                        {
                            self.driver
                                .update_resources(&id, &spec.resources, &spec.isolation)
                                .await?;
                            self.live_updates.fetch_add(1, Ordering::SeqCst);
                            self.applied.insert(id.clone(), want);
                            acted = true;
                        }
                        _ => {
                            let _ = self.driver.destroy(&id, DestroyOptions::purge()).await;
                            self.driver.create(&spec).await?;
                            self.driver.start(&id).await?;
                            self.creates.fetch_add(1, Ordering::SeqCst);
                            self.applied.insert(id.clone(), want);
                            acted = true;
                        }
                    }
                    if let Some(reference) = o.snapshot.as_ref().filter(|r| {
                        !self.hold_snapshots.load(Ordering::SeqCst)
                            && self.snapshots.get(&id).map(|s| &s.reference) != Some(*r)
                    }) {
                        let done = self.driver.commit(&id, reference).await;
                        self.snapshots.insert(
                            id.clone(),
                            SnapshotReport {
                                reference: reference.clone(),
                                image_id: done.as_ref().cloned().unwrap_or_default(),
                                error: done.err().map(|e| e.to_string()).unwrap_or_default(),
                            },
                        );
                        acted = true;
                    }
                    if self.hold_running.load(Ordering::SeqCst) {
                        (ContainerPhase::Starting, false)
                    } else {
                        (ContainerPhase::Running, false)
                    }
                }
            };
            let r = ContainerReport {
                id: id.clone(),
                phase,
                gone,
                restarts: 0,
                crash_loop: false,
                epoch: o.container.host_epoch,
                generation: o.generation,
                message: String::new(),
                snapshot: self
                    .snapshots
                    .get(&id)
                    .filter(|s| o.snapshot.as_ref() == Some(&s.reference))
                    .cloned(),
            };
            if acted || self.last.get(&id) != Some(&r) {
                self.last.insert(id, r.clone());
                reports.push(r);
            }
        }
        // Fencing: anything not ordered here goes.
        let stale: Vec<InstanceId> = self
            .applied
            .keys()
            .filter(|i| !seen.contains(*i))
            .cloned()
            .collect();
        for id in stale {
            self.applied.remove(&id);
            self.last.remove(&id);
            let _ = self.driver.destroy(&id, DestroyOptions::purge()).await;
        }
        if !reports.is_empty() {
            if let Err(e) = self.platform.apply_reports(&self.host, &reports).await {
                // Not acknowledged: send them again next round.
                for r in &reports {
                    self.last.remove(&r.id);
                }
                return Err(e.into());
            }
        }
        Ok(())
    }
}
