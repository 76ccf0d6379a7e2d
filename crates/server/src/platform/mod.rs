//! The platform layer: the operations every workflow step, controller and
//! agent endpoint builds on.
//!
//! The container record (`keys::container`) is the platform's truth; the
//! assignment (`keys::assignment(host, id)`) is the work order of the host's
//! agent. Every operation here writes both — plus the host allocations, the
//! group's placement record, IP records and an event — in ONE store
//! transaction, so a crash leaves either all or nothing, and every operation
//! is idempotent: the workflow engine re-runs a step after a crash and the
//! re-run finishes what is missing and changes nothing else.
//!
//! | operation | what it does |
//! |---|---|
//! | [`Platform::place_missing`] | places the replicas a group lacks (scheduler + IPAM), records `scheduled`, not yet published |
//! | [`Platform::publish`] / [`Platform::republish`] | writes the work orders of placed containers |
//! | [`Platform::retire`] | desired = deleted in record and work order (the agent removes it) |
//! | [`Platform::finalize`] | for retired containers the agent reported gone (or whose host is down): delete, release allocation and placement entry, IP to quarantine |
//! | [`Platform::relocate`] | re-places containers on other hosts with the same IPs, moving their work orders |
//! | [`Platform::stop_in_place`] | desired = stopped (two-phase live migration) |
//! | [`Platform::containers`], [`Platform::wait_phase`] | reads for workflow steps |
//!
//! Placement runs against one scheduler [`Snapshot`](jdos_scheduler::Snapshot)
//! kept fresh from store watches (allocations applied in place, host changes
//! that matter to placement trigger a rebuild), so an operation costs a few
//! reads and one transaction, not a reload of the estate.

mod finalize;
mod hub;
mod network;
mod ops;
mod placer;
mod planner;
mod relocate;
pub mod reports;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_ipam::{Ipam, IpamError};
use jdos_scheduler::commit::CommitError;
use jdos_scheduler::{Explanation, SchedulerConfig};
use jdos_store::{json, Store, StoreError};
use jdos_types::agent::Assignment;
use jdos_types::{keys, App, Container, ContainerPhase, GroupKey, InstanceId};

use crate::error::HttpError;
use crate::events::EventRecorder;
use crate::state::Clock;

pub use hub::AssignmentHub;
pub use reports::ReportOutcome;

/// Attempts of one placement, relocation or release under conflicts.
const MAX_ATTEMPTS: u32 = 16;
/// Schedulers (each with its own snapshot) one server plans with.
const PLACERS: usize = 4;
/// Re-plans of a record-level write (publish, retire …) under conflicts.
const MAX_REPLANS: u32 = 16;

/// What a platform operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Address management failed (network exhausted, deleting …).
    #[error("ipam: {0}")]
    Ipam(#[from] IpamError),
    /// The group's app does not exist.
    #[error("app {0:?} not found: create it before placing its groups")]
    AppNotFound(String),
    /// Some replicas fit on no host; the others were placed.
    #[error("{unplaced} of the {wanted} missing replicas of {group} fit on no host ({explanation}); {placed} placed")]
    Unplaced {
        /// The group.
        group: GroupKey,
        /// Replicas that were missing.
        wanted: u32,
        /// Replicas placed by this call.
        placed: u32,
        /// Replicas still missing.
        unplaced: u32,
        /// What filtered the hosts.
        explanation: Explanation,
    },
    /// Other writers kept changing the same objects.
    #[error("{0}: other writers kept changing the same objects; retry")]
    Contention(String),
    /// Waiting for containers timed out.
    #[error("timed out after {waited_ms} ms waiting for {pending} container(s) to reach {want}; first: {first}")]
    Timeout {
        /// How long it waited.
        waited_ms: u64,
        /// Containers not there yet.
        pending: usize,
        /// The phases waited for.
        want: String,
        /// The first pending container and its phase.
        first: String,
    },
    /// A record could not be decoded or an invariant does not hold.
    #[error("{0}")]
    Invalid(String),
}

impl PlatformError {
    /// True when a retry later may succeed (contention, capacity, store
    /// hiccups, timeouts); false for errors a retry repeats.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            PlatformError::AppNotFound(_) | PlatformError::Invalid(_)
        )
    }
}

impl From<CommitError> for PlatformError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(s) => PlatformError::Store(s),
            CommitError::TooManyConflicts { group, attempts } => {
                PlatformError::Contention(format!("placing {group} ({attempts} attempts)"))
            }
            CommitError::Refused(m) => PlatformError::Invalid(m),
        }
    }
}

impl From<HttpError> for PlatformError {
    fn from(e: HttpError) -> Self {
        PlatformError::Invalid(format!("{}: {}", e.body.code, e.body.message))
    }
}

impl From<PlatformError> for HttpError {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::Store(s) => s.into(),
            PlatformError::AppNotFound(a) => HttpError::not_found("app", &a),
            PlatformError::Ipam(IpamError::Exhausted { .. }) | PlatformError::Unplaced { .. } => {
                HttpError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "no_capacity",
                    e.to_string(),
                )
            }
            PlatformError::Contention(_) => HttpError::conflict(e.to_string()),
            other => HttpError::internal(other.to_string()),
        }
    }
}

/// Result alias.
pub type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// The platform layer of one server: cheap to share (`Arc`).
pub struct Platform {
    store: Arc<dyn Store>,
    ipam: Arc<Ipam>,
    events: Arc<EventRecorder>,
    clock: Clock,
    /// Independent schedulers with their own snapshots: placements of
    /// different groups plan and commit concurrently (the store's
    /// compare-and-swap keeps them apart), so commits pipeline through the
    /// store's group commit instead of queueing behind one lock.
    placers: Vec<tokio::sync::Mutex<Option<placer::Placer>>>,
    next_placer: std::sync::atomic::AtomicUsize,
    sched_config: SchedulerConfig,
    hub: AssignmentHub,
    /// Retired containers this server knows of, for the sweeper.
    retired: Mutex<HashSet<InstanceId>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").finish_non_exhaustive()
    }
}

impl Platform {
    /// A platform over the server's store, allocator, event recorder and clock.
    pub fn new(
        store: Arc<dyn Store>,
        ipam: Arc<Ipam>,
        events: Arc<EventRecorder>,
        clock: Clock,
    ) -> Self {
        Platform {
            hub: AssignmentHub::new(store.clone()),
            store,
            ipam,
            events,
            clock,
            placers: (0..PLACERS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_placer: std::sync::atomic::AtomicUsize::new(0),
            sched_config: SchedulerConfig::default(),
            retired: Mutex::new(HashSet::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The change feed of every host's work orders (long-polls wait on it).
    pub fn hub(&self) -> &AssignmentHub {
        &self.hub
    }

    /// A free placer, else waits for one (round robin).
    async fn placer_slot(&self) -> tokio::sync::MutexGuard<'_, Option<placer::Placer>> {
        let n = self.placers.len();
        let start = self
            .next_placer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % n;
        for i in 0..n {
            if let Ok(g) = self.placers[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.placers[start].lock().await
    }

    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// The live and retired containers of a group, by index.
    pub async fn containers(&self, group: &GroupKey) -> Result<Vec<Container>> {
        Ok(json::list_all(self.store(), &keys::containers_of_group(group)).await?)
    }

    /// The records of `ids` that exist, in the order asked.
    pub async fn records(&self, ids: &[InstanceId]) -> Result<Vec<(Container, u64)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(kv) = self.store.get(&keys::container(id)).await? {
                out.push((json::decode(&kv)?, kv.mod_revision));
            }
        }
        Ok(out)
    }

    /// Waits until every container of `ids` is in one of `phases` (a
    /// container whose record is gone counts as done only when `phases` is
    /// empty: "wait until they are all gone"). Returns their records.
    pub async fn wait_phase(
        &self,
        ids: &[InstanceId],
        phases: &[ContainerPhase],
        timeout: Duration,
    ) -> Result<Vec<Container>> {
        let started = std::time::Instant::now();
        let prefix = common_prefix(ids);
        let mut watch = self.store.watch(&prefix, 0).await?;
        loop {
            let recs = self.records(ids).await?;
            let pending: Vec<&Container> = if phases.is_empty() {
                recs.iter().map(|(c, _)| c).collect()
            } else {
                let p: Vec<&Container> = recs
                    .iter()
                    .map(|(c, _)| c)
                    .filter(|c| !phases.contains(&c.phase))
                    .collect();
                if recs.len() < ids.len() {
                    // A deleted record never reaches a phase.
                    return Err(PlatformError::Invalid(format!(
                        "{} of the containers waited for no longer exist",
                        ids.len() - recs.len()
                    )));
                }
                p
            };
            if pending.is_empty() {
                return Ok(recs.into_iter().map(|(c, _)| c).collect());
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                let want = if phases.is_empty() {
                    "gone".to_string()
                } else {
                    phases
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                };
                let first = pending[0];
                return Err(PlatformError::Timeout {
                    waited_ms: started.elapsed().as_millis() as u64,
                    pending: pending.len(),
                    want,
                    first: format!("{} is {}", first.id, first.phase.as_str()),
                });
            }
            match tokio::time::timeout(left, watch.next()).await {
                Ok(Some(_)) => {
                    // Drain whatever else queued: one re-read covers it all.
                    while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, watch.next()).await
                    {
                    }
                }
                Ok(None) => watch = self.store.watch(&prefix, 0).await?,
                Err(_) => {}
            }
        }
    }

    async fn app(&self, name: &str) -> Result<App> {
        match self.store.get(&keys::app(name)).await? {
            Some(kv) => Ok(json::decode(&kv)?),
            None => Err(PlatformError::AppNotFound(name.to_string())),
        }
    }

    /// The work order of `id` on `host`, with its revision.
    async fn assignment(&self, host: &str, id: &InstanceId) -> Result<Option<(Assignment, u64)>> {
        match self.store.get(&keys::assignment(host, id)).await? {
            Some(kv) => Ok(Some((json::decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }
}

/// The narrowest container prefix covering `ids` (their group's when they
/// share one).
fn common_prefix(ids: &[InstanceId]) -> String {
    match ids.first() {
        Some(first) if ids.iter().all(|i| i.group_key() == first.group_key()) => {
            keys::containers_of_group(&first.group_key())
        }
        _ => keys::CONTAINERS.to_string(),
    }
}
