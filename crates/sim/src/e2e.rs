//! End-to-end simulation (`jdos sim --e2e`): the whole platform path from
//! submitted deploys to containers reported running, in one process.
//!
//! - an in-process server state ([`AppState`]) over the given store, with
//!   the workflow engine and every operation registered;
//! - a fleet of real [`Agent`] loops, one per estate host, each with its
//!   own [`FakeDriver`] (no engine behind it: containers "start" at once)
//!   and a [`LocalControlPlane`] that calls the server's agent functions
//!   (`register`, `heartbeat`, `assignments`) directly instead of over HTTP;
//!   the hosts enter the store only through agent registration, and
//!   containers turn `running` only through the agents' heartbeat reports;
//! - the workload's groups grouped into apps; each app's record and groups
//!   are committed in one transaction and a `deploy` task per group is
//!   submitted to the engine (what `apply` does);
//! - the clock runs from the first submit until every container record in
//!   the store is `running`; then the independent checker reads the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jdos_agent::{Agent, AgentConfig, ControlPlane, ControlPlaneError};
use jdos_runtime::FakeDriver;
use jdos_scheduler::ZonePolicy;
use jdos_server::api::{agents, networks};
use jdos_server::auth::Caller;
use jdos_server::events::{Commit, EventDraft, Mutation};
use jdos_server::ops::{self, DeployParams, OpsContext};
use jdos_server::{AppState, HttpError};
use jdos_store::{json, Compare, Store, TxnOp};
use jdos_types::agent::{AgentRegister, AgentSession, AssignmentList, Heartbeat, HeartbeatReply};
use jdos_types::group::ContainerTemplate;
use jdos_types::metrics::{IngestSummary, MetricBatch};
use jdos_types::task::{Task, TaskState};
use jdos_types::{keys, App, Container, ContainerPhase, Group};
use jdos_workflow::EngineConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::checker::{self, CheckReport};
use crate::estate::{Estate, EstateSpec};
use crate::report::{peak_rss_bytes, process_cpu_seconds, quantile, SimReport, TaskTiming};
use crate::run::SimError;
use crate::workload::{self, GroupSpec, WorkloadSpec};

/// The join token of the simulated server (never leaves the process).
const JOIN_TOKEN: &str = "sim-e2e-join-token";

/// Actor of the simulated submits and department of the simulated apps.
const ACTOR: &str = "sim";

/// What to simulate end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eConfig {
    /// Hosts (each runs one agent).
    pub hosts: usize,
    /// Containers over all apps.
    pub containers: usize,
    /// Apps they are split into (`None`: as many as the workload's heavy
    /// tail gives, ~14 containers an app).
    pub apps: Option<usize>,
    /// Seed of the estate and the workload.
    pub seed: u64,
    /// Store URL for the report (the store itself is passed in).
    pub store_url: String,
    /// Workflow engine concurrency (tasks of different apps at once).
    pub concurrency: usize,
    /// Concurrent submitters of apps and deploy tasks.
    pub submitters: usize,
    /// Give up when not all running after this long.
    pub timeout: Duration,
    /// Agent heartbeat interval (reports ride on heartbeats).
    pub heartbeat: Duration,
    /// Host-metrics interval of each simulated agent; `None` (the default)
    /// collects none: a fake host has no /proc of its own, and a thousand
    /// agents would each scrape this machine's.
    pub agent_metrics: Option<Duration>,
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            hosts: 6000,
            containers: 150_000,
            apps: Some(5_000),
            seed: 1,
            store_url: "memory://".into(),
            concurrency: 512,
            submitters: 8,
            timeout: Duration::from_secs(600),
            heartbeat: Duration::from_secs(1),
            agent_metrics: None,
        }
    }
}

/// A finished end-to-end run.
pub struct E2eRun {
    /// The figures (the `e2e_*` fields set).
    pub report: SimReport,
    /// The estate.
    pub estate: Estate,
    /// The workload.
    pub groups: Vec<GroupSpec>,
    /// The independent check.
    pub check: CheckReport,
    /// Distinct container addresses over the container records.
    pub distinct_ips: usize,
}

/// [`ControlPlane`] calling the in-process server's agent functions, for
/// one agent: what `HttpControlPlane` does over HTTP, minus the network.
pub struct LocalControlPlane {
    st: AppState,
    join_token: String,
    token: RwLock<Option<String>>,
}

impl LocalControlPlane {
    /// A control plane into `st`, registering with `join_token`.
    pub fn new(st: AppState, join_token: &str) -> Self {
        LocalControlPlane {
            st,
            join_token: join_token.to_string(),
            token: RwLock::new(None),
        }
    }

    fn token(&self, host: &str) -> Result<String, ControlPlaneError> {
        self.token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ControlPlaneError::UnknownHost {
                host: host.to_string(),
                message: "not registered yet".into(),
            })
    }
}

fn cp_error(operation: &'static str, host: &str, e: HttpError) -> ControlPlaneError {
    let status = e.status.as_u16();
    // The same mapping as `ControlPlaneError::from_client` over HTTP.
    if operation != "register" && (status == 404 || status == 401) {
        ControlPlaneError::UnknownHost {
            host: host.to_string(),
            message: e.body.message,
        }
    } else {
        ControlPlaneError::Refused {
            operation,
            status,
            code: e.body.code,
            message: e.body.message,
        }
    }
}

#[async_trait]
impl ControlPlane for LocalControlPlane {
    async fn register(&self, req: &AgentRegister) -> Result<AgentSession, ControlPlaneError> {
        let host = req.host.name.clone();
        let s = agents::register(&self.st, &self.join_token, req.clone())
            .await
            .map_err(|e| cp_error("register", &host, e))?;
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(s.token.clone());
        Ok(s)
    }

    async fn heartbeat(
        &self,
        host: &str,
        hb: &Heartbeat,
    ) -> Result<HeartbeatReply, ControlPlaneError> {
        let token = self.token(host)?;
        agents::heartbeat(&self.st, host, &token, hb.clone())
            .await
            .map_err(|e| cp_error("heartbeat", host, e))
    }

    async fn assignments(
        &self,
        host: &str,
        after: u64,
        known: u64,
        wait: Duration,
    ) -> Result<AssignmentList, ControlPlaneError> {
        let token = self.token(host)?;
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        agents::assignments(&self.st, host, &token, after, wait_ms, known)
            .await
            .map_err(|e| cp_error("assignments", host, e))
    }

    async fn push_metrics(
        &self,
        host: &str,
        batch: &MetricBatch,
    ) -> Result<IngestSummary, ControlPlaneError> {
        // As the ingest endpoint does for an agent: the host label is forced.
        let labels = jdos_server::monitoring::MetricsStore::labels_of(batch, &[("host", host)])
            .map_err(|e| cp_error("metrics", host, HttpError::from(e)))?;
        self.st
            .tsdb()
            .ingest(batch, &labels)
            .map_err(|e| cp_error("metrics", host, e))
    }
}

/// The simulated hosts' runtime, shut down without blocking when dropped
/// (on every path out of the run, errors included): dropping a runtime
/// blocks, which an async context must not.
struct HostsRuntime(Option<tokio::runtime::Runtime>);

impl HostsRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle(),
            // Only `drop` takes it.
            None => unreachable!("the hosts' runtime is gone"),
        }
    }
}

impl Drop for HostsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One app of the workload: its record and its groups.
struct SimApp {
    app: App,
    groups: Vec<Group>,
}

/// Groups the workload's groups into apps (the generator names one group
/// per datacenter of each app).
fn apps_of(groups: &[GroupSpec]) -> Vec<SimApp> {
    let mut by: BTreeMap<String, SimApp> = BTreeMap::new();
    for g in groups {
        let r = &g.request;
        let entry = by.entry(r.group.app.clone()).or_insert_with(|| SimApp {
            app: App {
                name: r.group.app.clone(),
                owner: ACTOR.into(),
                department: ACTOR.into(),
                business_level: r.business_level,
                description: String::new(),
                labels: BTreeMap::new(),
                created_at_ms: 0,
            },
            groups: Vec::new(),
        });
        // One business level per app: the generator gives all of an app's
        // groups the same one.
        debug_assert_eq!(entry.app.business_level, r.business_level);
        entry.groups.push(Group {
            app: r.group.app.clone(),
            env: r.group.env.clone(),
            name: r.group.group.clone(),
            datacenter: r.datacenter.clone(),
            replicas: r.replicas,
            template: ContainerTemplate {
                image: g.image.clone(),
                resources: r.resources,
                network_zone: r.network_zone.clone(),
                network: r.network.clone(),
                ..Default::default()
            },
            placement: r.placement.clone(),
            autoscaling: None,
        });
    }
    by.into_values().collect()
}

/// Commits an app, its groups and one `deploy` task per group in one
/// transaction with their events, as an apply of a new app does.
async fn submit_app(st: &AppState, a: &SimApp) -> Result<Vec<String>, SimError> {
    let caller = Caller::system(ACTOR);
    let mut app = a.app.clone();
    app.created_at_ms = st.now_ms();
    let app_key = keys::app(&app.name);
    let mut compares = vec![Compare::absent(app_key.as_str())];
    let mut ops = vec![TxnOp::put(app_key.as_str(), json::encode(&app)?)];
    for g in &a.groups {
        let k = keys::group(&g.key());
        compares.push(Compare::absent(k.as_str()));
        ops.push(TxnOp::put(k.as_str(), json::encode(g)?));
    }
    // The deploy tasks go in the same transaction as the records, as
    // `apply` submits them: one commit per app, not one per task.
    let engine = st
        .require_engine()
        .map_err(|e| SimError::Invalid(e.body.message))?;
    let mut tasks = Vec::with_capacity(a.groups.len());
    for g in &a.groups {
        let mut t = DeployParams {
            group: g.key(),
            timeout_secs: Some(3600),
        }
        .task(ACTOR);
        t.department = Some(app.department.clone());
        let (task, task_ops) = engine
            .prepare(t, st.now_ms())
            .map_err(|e| SimError::Invalid(format!("deploy of {}: {e}", g.key())))?;
        compares.push(Compare::absent(keys::task(&task.id)));
        ops.extend(task_ops);
        tasks.push(task);
    }
    let event = EventDraft::new(&caller.name, "app.apply", "app", &app.name)
        .app(&app.name, &app.department)
        .message(format!(
            "app created; groups: {} created; {} task(s) submitted",
            a.groups.len(),
            tasks.len()
        ));
    let m = Mutation {
        compares,
        ops,
        event,
    };
    // The tasks' `task.submit` events in the same commit, as `apply` does.
    let submitted = ops::submitted_events(&tasks);
    match st
        .events()
        .commit_with(st.store(), m, submitted, st.now_ms())
        .await?
    {
        Commit::Done { .. } => {}
        Commit::Stale => {
            return Err(SimError::Invalid(format!(
                "app {} or one of its groups exists already",
                app.name
            )))
        }
    }
    Ok(tasks.into_iter().map(|t| t.id).collect())
}

/// Registers every estate host through its agent and waits until all are in.
async fn start_fleet(
    st: &AppState,
    estate: &Estate,
    heartbeat: Duration,
    agent_metrics: Option<Duration>,
    shutdown: &watch::Receiver<bool>,
    on: &tokio::runtime::Handle,
) -> Result<JoinSet<()>, SimError> {
    let mut fleet = JoinSet::new();
    let mut statuses = Vec::with_capacity(estate.hosts.len());
    for h in &estate.hosts {
        let mut cfg = AgentConfig::new(&h.name, &h.datacenter, &h.switch, &h.rack, h.capacity);
        cfg.resource_zone = Some(h.resource_zone.clone());
        cfg.labels = h.labels.clone();
        cfg.timings.heartbeat_interval = heartbeat;
        cfg.timings.fence_after = (heartbeat * 30).max(Duration::from_secs(30));
        cfg.metrics_interval = agent_metrics;
        let agent = Agent::new(cfg);
        statuses.push(agent.status());
        let control = Arc::new(LocalControlPlane::new(st.clone(), JOIN_TOKEN));
        let driver = Arc::new(FakeDriver::new());
        let shutdown = shutdown.clone();
        let host = h.name.clone();
        fleet.spawn_on(
            async move {
                if let Err(e) = agent.run(driver, control, shutdown).await {
                    tracing::error!(host, error = %e, "simulated agent stopped");
                }
            },
            on,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for mut s in statuses {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.wait_for(|s| s.registered)).await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(SimError::Invalid(
                    "simulated agents did not all register within 300 s".into(),
                ))
            }
        }
    }
    Ok(fleet)
}

/// Runs the end-to-end simulation over `store` (empty).
pub async fn run_e2e(config: &E2eConfig, store: Arc<dyn Store>) -> Result<E2eRun, SimError> {
    if config.hosts == 0 || config.concurrency == 0 || config.submitters == 0 {
        return Err(SimError::Invalid(
            "--hosts, concurrency and submitters must be at least 1".into(),
        ));
    }
    let policy = ZonePolicy::default();
    let estate = Estate::generate(&EstateSpec {
        hosts: config.hosts,
        seed: config.seed,
    });
    let groups = workload::generate(
        &WorkloadSpec {
            containers: config.containers,
            seed: config.seed,
            max_fill_percent: 65,
            apps: config.apps,
        },
        &estate,
        &policy,
    );
    let apps = apps_of(&groups);
    let expected: usize = groups.iter().map(|g| g.request.replicas as usize).sum();

    let st = AppState::new(store.clone());
    st.set_join_token(JOIN_TOKEN);
    // The server's timings reach the agents in their sessions. Nothing in
    // the simulation marks hosts down (no failover loop runs); self-fencing
    // is relaxed so that a starved process does not stop its own fleet.
    let hb = u64::try_from(config.heartbeat.as_millis())
        .unwrap_or(1000)
        .max(1);
    st.set_timings(jdos_server::Timings {
        heartbeat_interval_ms: hb,
        suspect_after_ms: hb * 3,
        down_after_ms: hb * 6,
        fence_after_ms: (hb * 30).max(30_000),
    });
    let (stop, shutdown) = watch::channel(false);
    let setup = Instant::now();
    // The simulated hosts run on a runtime of their own, as real hosts run
    // on machines of their own: the server's tasks (engine, event recorder,
    // placements) do not queue behind thousands of agent loops, and the
    // OS shares the cores between the two.
    let hosts_rt = HostsRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sim-hosts")
            .enable_all()
            .build()
            .map_err(|e| SimError::Invalid(format!("cannot start the hosts' runtime: {e}")))?,
    ));
    let mut fleet = start_fleet(
        &st,
        &estate,
        config.heartbeat,
        config.agent_metrics,
        &shutdown,
        hosts_rt.handle(),
    )
    .await?;
    let caller = Caller::system(ACTOR);
    for n in &estate.networks {
        networks::create(&st, &caller, n.clone())
            .await
            .map_err(|e| SimError::Invalid(format!("network {}: {}", n.name, e.body.message)))?;
    }
    let mut ec = EngineConfig::new("sim");
    ec.concurrency = config.concurrency;
    let engine = ops::engine(&st, ec, &OpsContext::new(&st));
    let engine_task = engine.start(shutdown.clone());
    tracing::info!(
        hosts = estate.hosts.len(),
        apps = apps.len(),
        setup_ms = setup.elapsed().as_millis() as u64,
        "fleet registered; submitting"
    );

    // Follow container phases from here on.
    let rev = store.revision().await?;
    let mut w = store.watch(keys::CONTAINERS, rev + 1).await?;

    let cpu0 = process_cpu_seconds();
    let started = Instant::now();
    let apps = Arc::new(apps);
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = JoinSet::new();
    for _ in 0..config.submitters {
        let (st, apps, next) = (st.clone(), apps.clone(), next.clone());
        submitters.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(a) = apps.get(i) else { break };
                ids.extend(submit_app(&st, a).await?);
            }
            Ok::<_, SimError>(ids)
        });
    }
    let mut task_ids = Vec::new();
    while let Some(r) = submitters.join_next().await {
        task_ids.extend(r.map_err(|e| SimError::Task(e.to_string()))??);
    }
    let submit_seconds = started.elapsed().as_secs_f64();
    tracing::info!(tasks = task_ids.len(), submit_seconds, "all submitted");

    let mut phases: HashMap<String, ContainerPhase> = HashMap::with_capacity(expected);
    let mut running = 0usize;
    let deadline = started + config.timeout;
    let mut last_progress = Instant::now();
    let mut timed_out = false;
    while running < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = match tokio::time::timeout(left.min(Duration::from_secs(5)), w.next()).await {
            Ok(Some(b)) => b?,
            Ok(None) => return Err(SimError::Task("container watch ended".into())),
            Err(_) => {
                if Instant::now() >= deadline {
                    timed_out = true;
                    break;
                }
                // Nothing moved for a while: stop early when every task
                // ended (one failed: not all will run).
                if last_progress.elapsed() > Duration::from_secs(10)
                    && all_ended(store.as_ref()).await?
                {
                    break;
                }
                continue;
            }
        };
        last_progress = Instant::now();
        for ev in batch {
            let key = ev.kv.key.clone();
            let phase = if ev.kind == jdos_store::EventKind::Delete {
                None
            } else {
                Some(json::decode::<Container>(&ev.kv)?.phase)
            };
            let was = match phase {
                Some(p) => phases.insert(key, p),
                None => phases.remove(&key),
            };
            if was == Some(ContainerPhase::Running) {
                running -= 1;
            }
            if phase == Some(ContainerPhase::Running) {
                running += 1;
            }
        }
    }
    // A deploy's last steps (post-start hooks, its record) end after its
    // containers run: the run ends when every task has, too.
    while !timed_out && !all_ended(store.as_ref()).await? {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu0;
    tracing::info!(running, expected, e2e_seconds, "end to end done");

    // Task outcomes (read straight from the store, once); a record's
    // version counts its writes.
    let mut tasks: Vec<Task> = Vec::new();
    let mut task_writes = 0u64;
    jdos_store::for_each_page(store.as_ref(), keys::TASKS, 4096, |kvs| {
        for kv in kvs {
            task_writes += kv.version;
            tasks.push(json::decode(kv)?);
        }
        Ok::<_, jdos_store::StoreError>(())
    })
    .await?;
    let mut durations: Vec<f64> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| t.updated_at_ms.saturating_sub(t.created_at_ms) as f64 / 1000.0)
        .collect();
    let succeeded = durations.len();
    let failed = tasks
        .iter()
        .filter(|t| matches!(t.state, TaskState::Failed | TaskState::Cancelled))
        .count();

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), engine_task).await;
    while tokio::time::timeout(Duration::from_secs(10), fleet.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    fleet.abort_all();
    drop(hosts_rt);

    let groups_vec = groups;
    let check = checker::check(store.as_ref(), &groups_vec, &policy).await?;
    let containers: Vec<Container> = json::list_all(store.as_ref(), keys::CONTAINERS).await?;
    let ips: std::collections::HashSet<_> = containers.iter().filter_map(|c| c.ip).collect();
    let with_ip = containers.iter().filter(|c| c.ip.is_some()).count();
    let mut check = check;
    if ips.len() != with_ip {
        // The checker counts duplicates per network; this is the global
        // view (no address twice anywhere).
        *check.kinds.entry("ip.global_duplicate".into()).or_default() +=
            (with_ip - ips.len()) as u64;
        check.violations += (with_ip - ips.len()) as u64;
    }
    let report = SimReport {
        hosts: estate.hosts.len(),
        groups: groups_vec.len(),
        containers_requested: expected as u64,
        containers_placed: check.containers as u64,
        unplaceable: (expected as u64).saturating_sub(check.containers as u64),
        violations: check.violations,
        violation_kinds: check.kinds.clone(),
        seconds: e2e_seconds,
        cpu_seconds,
        placements_per_sec: check.containers as f64 / e2e_seconds.max(1e-9),
        store: config.store_url.clone(),
        seed: config.seed,
        peak_rss_bytes: peak_rss_bytes(),
        mode: "e2e".into(),
        e2e_seconds: Some(e2e_seconds),
        e2e_timed_out: Some(timed_out),
        apps: Some(apps.len()),
        containers_running: Some(running as u64),
        containers_per_sec: Some(running as f64 / e2e_seconds.max(1e-9)),
        tasks: Some(tasks.len() as u64),
        tasks_succeeded: Some(succeeded as u64),
        tasks_failed: Some(failed as u64),
        p50_task_seconds: Some(quantile(&mut durations, 0.50)),
        p99_task_seconds: Some(quantile(&mut durations, 0.99)),
        task_writes_mean: Some(task_writes as f64 / tasks.len().max(1) as f64),
        submit_seconds: Some(submit_seconds),
        slowest_tasks: {
            let mut done: Vec<&Task> = tasks.iter().filter(|t| t.updated_at_ms > 0).collect();
            done.sort_by_key(|t| {
                std::cmp::Reverse(t.updated_at_ms.saturating_sub(t.created_at_ms))
            });
            done.iter().take(5).map(|t| TaskTiming::of(t)).collect()
        },
        ..SimReport::default()
    };
    Ok(E2eRun {
        report,
        estate,
        groups: groups_vec,
        distinct_ips: ips.len(),
        check,
    })
}

/// True when no task is pending or running.
async fn all_ended(store: &dyn Store) -> Result<bool, SimError> {
    let tasks: Vec<Task> = json::list_all(store, keys::TASKS).await?;
    Ok(tasks
        .iter()
        .all(|t| !matches!(t.state, TaskState::Pending | TaskState::Running)))
}
