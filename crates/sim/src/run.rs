//! Runs a simulation: seed the store with an estate, place a workload with K
//! concurrent schedulers through the real optimistic commit, check the result.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jdos_scheduler::commit::{
    place_and_commit, CommitError, ContainerSpec, GroupPlacements, Planner,
};
use jdos_scheduler::store_planner::{load_snapshot, SnapshotFeed, StorePlanner};
use jdos_scheduler::{EffectiveCaps, Scheduler, SchedulerConfig, ZonePolicy};
use jdos_store::{json, Store, StoreError, Txn, TxnOp};
use jdos_types::keys;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::checker::{self, CheckReport};
use crate::estate::{Estate, EstateSpec};
use crate::report::{peak_rss_bytes, process_cpu_seconds, quantile, SimReport};
use crate::workload::{self, GroupSpec, WorkloadSpec};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Hosts.
    pub hosts: usize,
    /// Containers.
    pub containers: usize,
    /// Seed of the estate, workload and scheduler tie-breaks.
    pub seed: u64,
    /// Concurrent schedulers.
    pub schedulers: usize,
    /// Store URL for the report (the store itself is passed in).
    pub store_url: String,
    /// Conflicts tolerated per group before giving up.
    pub max_attempts: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            hosts: 6000,
            containers: 150_000,
            seed: 1,
            schedulers: 1,
            store_url: "memory://".into(),
            max_attempts: 64,
        }
    }
}

/// Simulation failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad configuration.
    #[error("invalid simulation: {0}")]
    Invalid(String),
    /// The store failed.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// A commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A scheduler task panicked or was cancelled.
    #[error("scheduler task failed: {0}")]
    Task(String),
}

/// One placed group, as the run saw it (for dumps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    /// Index into the workload.
    pub spec: usize,
    /// Caps the scheduler applied.
    pub caps: EffectiveCaps,
    /// Replicas left unplaced.
    pub unplaced: u32,
}

/// A finished run: the report plus what a dump needs.
pub struct SimRun {
    /// The figures.
    pub report: SimReport,
    /// The estate.
    pub estate: Estate,
    /// The workload.
    pub groups: Vec<GroupSpec>,
    /// Per group outcome, in workload order.
    pub results: Vec<GroupResult>,
    /// The independent check.
    pub check: CheckReport,
}

/// Writes the estate into the store in batches.
pub async fn seed_store(store: &dyn Store, estate: &Estate) -> Result<(), SimError> {
    let mut ops = Vec::new();
    for h in &estate.hosts {
        ops.push(TxnOp::put(keys::host(&h.name), json::encode(h)?));
    }
    for n in &estate.networks {
        ops.push(TxnOp::put(keys::network(&n.name), json::encode(n)?));
    }
    for chunk in ops.chunks(1000) {
        let mut t = Txn::new();
        t.success = chunk.to_vec();
        store.txn(t).await?;
    }
    Ok(())
}

/// Generates an estate and workload, places everything, checks the result.
pub async fn run(config: &SimConfig, store: Arc<dyn Store>) -> Result<SimRun, SimError> {
    let span = tracing::info_span!("sim", hosts = config.hosts, containers = config.containers);
    run_inner(config, store).instrument(span).await
}

async fn run_inner(config: &SimConfig, store: Arc<dyn Store>) -> Result<SimRun, SimError> {
    if config.hosts == 0 || config.schedulers == 0 {
        return Err(SimError::Invalid(
            "--hosts and --schedulers must be at least 1".into(),
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
            apps: None,
        },
        &estate,
        &policy,
    );
    seed_store(store.as_ref(), &estate).await?;
    let (snap, rev) = load_snapshot(store.as_ref()).await?;
    let groups = Arc::new(groups);
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<GroupResult>>>> =
        Arc::new(Mutex::new(vec![None; groups.len()]));

    // Watches start before any scheduler commits, so none misses history.
    let mut feeds = Vec::new();
    for _ in 0..config.schedulers {
        feeds.push(SnapshotFeed::start(store.as_ref(), rev + 1).await?);
    }
    let cpu0 = process_cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, feed) in feeds.into_iter().enumerate() {
        let store = store.clone();
        let groups = groups.clone();
        let next = next.clone();
        let results = results.clone();
        let mut snap = snap.clone();
        let policy = policy.clone();
        let seed = config.seed.wrapping_add(k as u64);
        let max_attempts = config.max_attempts;
        tasks.push(tokio::spawn(async move {
            let mut planner = StorePlanner::with_feed(store.clone(), feed);
            let mut sched = Scheduler::new(SchedulerConfig {
                zone_policy: policy,
                seed,
            });
            let mut lat = Vec::new();
            let mut conflicts = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(g) = groups.get(i) else { break };
                // Apply what other schedulers committed meanwhile; when the
                // feed lags too far the CAS still keeps us correct.
                if planner.refresh(&mut snap).is_err() {
                    let (s, r) = load_snapshot(store.as_ref()).await?;
                    snap = s;
                    let feed = SnapshotFeed::start(store.as_ref(), r + 1).await?;
                    planner = StorePlanner::with_feed(store.clone(), feed);
                }
                let t0 = Instant::now();
                let out = place_and_commit(
                    &mut sched,
                    &mut snap,
                    &planner,
                    &g.request,
                    &ContainerSpec {
                        image: g.image.clone(),
                        network: None,
                        created_at_ms: 0,
                    },
                    max_attempts,
                )
                .await?;
                let us = t0.elapsed().as_secs_f64() * 1e6;
                conflicts += out.conflicts_retried as u64;
                if !out.placed.is_empty() {
                    lat.push((us, out.placed.len()));
                }
                results.lock().expect("not poisoned")[i] = Some(GroupResult {
                    spec: i,
                    caps: out.caps,
                    unplaced: out.unplaced.map_or(0, |u| u.replicas),
                });
            }
            Ok::<_, SimError>((lat, conflicts))
        }));
    }
    let mut lat = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (l, c) = t.await.map_err(|e| SimError::Task(e.to_string()))??;
        lat.extend(l);
        conflicts += c;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu0;

    let results: Vec<GroupResult> = Arc::try_unwrap(results)
        .map_err(|_| SimError::Task("results still shared".into()))?
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .flatten()
        .collect();
    let groups = Arc::try_unwrap(groups).unwrap_or_else(|g| (*g).clone());
    let check = checker::check(store.as_ref(), &groups, &policy).await?;

    let requested: u64 = groups.iter().map(|g| g.request.replicas as u64).sum();
    let unplaceable: u64 = results.iter().map(|r| r.unplaced as u64).sum();
    let placed = check.containers as u64;
    let mut per: Vec<f64> = Vec::with_capacity(placed as usize);
    for (us, n) in &lat {
        per.extend(std::iter::repeat_n(us / *n as f64, *n));
    }
    let mut req_us: Vec<f64> = lat.iter().map(|(us, _)| *us).collect();
    let (mut cap_cpu, mut cap_mem, mut al_cpu, mut al_mem) = (0f64, 0f64, 0f64, 0f64);
    let (final_snap, _) = load_snapshot(store.as_ref()).await?;
    for h in final_snap.hosts().iter().filter(|h| h.schedulable()) {
        cap_cpu += h.capacity.cpu_millis as f64;
        cap_mem += h.capacity.memory_bytes as f64;
        al_cpu += h.allocated.cpu_millis as f64;
        al_mem += h.allocated.memory_bytes as f64;
    }
    let report = SimReport {
        hosts: estate.hosts.len(),
        switches: final_snap.switch_count(),
        racks: final_snap.rack_count(),
        groups: groups.len(),
        containers_requested: requested,
        containers_placed: placed,
        unplaceable,
        violations: check.violations,
        violation_kinds: check.kinds.clone(),
        seconds,
        cpu_seconds,
        placements_per_sec: placed as f64 / seconds.max(1e-9),
        p50_placement_us: quantile(&mut per, 0.50),
        p99_placement_us: quantile(&mut per, 0.99),
        p99_request_us: quantile(&mut req_us, 0.99),
        max_request_us: quantile(&mut req_us, 1.0),
        conflicts_retried: conflicts,
        schedulers: config.schedulers,
        store: config.store_url.clone(),
        seed: config.seed,
        cpu_utilization: al_cpu / cap_cpu.max(1.0),
        memory_utilization: al_mem / cap_mem.max(1.0),
        peak_rss_bytes: peak_rss_bytes(),
        mode: "scheduler".into(),
        ..SimReport::default()
    };
    Ok(SimRun {
        report,
        estate,
        groups,
        results,
        check,
    })
}

/// Reads a group's placement record (for dumps and tests).
pub async fn group_record(
    store: &dyn Store,
    g: &jdos_types::GroupKey,
) -> Result<GroupPlacements, StoreError> {
    match store.get(&keys::placement(g)).await? {
        Some(kv) => json::decode(&kv),
        None => Ok(GroupPlacements::default()),
    }
}
