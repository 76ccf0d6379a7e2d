//! [`Agent`]: the node agent's loops.
//!
//! Three tasks share one host:
//! - the **session** task registers, heartbeats every interval with the
//!   changed reports, registers again when the server no longer knows the
//!   host, and tells the reconciler when the server has not been reached for
//!   `fence_after` (it then kills everything) or is reached again;
//! - the **poller** long-polls the host's assignments;
//! - the **reconciler** (this file's `Reconciler`, run on the caller's
//!   task) owns all container state: it lists the engine, asks the
//!   [planner](crate::plan) what to do, hands actions to the
//!   [executor](crate::exec) (concurrently, bounded), watches running
//!   containers for exits (`Driver::wait`) and health, and writes reports.
//!
//! Epoch: when a heartbeat answers with a newer host epoch than the agent
//! holds, the host was declared down meanwhile; the reconciler holds still
//! until a fresh assignment list of that epoch arrives and reconciles to it
//! before doing anything else (containers moved elsewhere are destroyed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jdos_runtime::health::probe;
use jdos_runtime::{ContainerStatus, Driver, DriverError, HealthStatus, LabelFilter, ProbeOutcome};
use jdos_types::agent::{
    AgentRegister, AgentSession, Assignment, AssignmentList, ContainerReport, Heartbeat,
};
use jdos_types::{InstanceId, UnixMillis};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use crate::config::{AgentConfig, Timings};
use crate::control::ControlPlane;
use crate::error::AgentError;
use crate::exec::{Executor, Outcome};
use crate::plan::{next_restart, plan, PlanContext, PlanMode, Trackers, Wanted};
use crate::report::{report, ReportBook};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What an agent shows of itself (for `jdos dev`, tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// A registration succeeded at least once.
    pub registered: bool,
    /// The host epoch the agent runs under.
    pub epoch: u64,
    /// Self-fenced: the server has not been reached for `fence_after`.
    pub fenced: bool,
    /// The assignments are known and current (not holding still).
    pub converging: bool,
    /// Revision of the assignment list in use.
    pub assignments_revision: u64,
    /// Number of assignments.
    pub assignments: usize,
    /// The current report of every assignment.
    pub reports: Vec<ContainerReport>,
    /// Reconcile passes done.
    pub passes: u64,
    /// Resync passes skipped: no event, and the engine reported no change.
    pub quiet_passes: u64,
}

/// What periodic tasks beside the reconcile loop get (metric collection
/// lives in `collect.rs` and is started with one of these).
#[derive(Clone)]
pub struct AgentContext {
    /// Host name.
    pub host: String,
    /// The driver.
    pub driver: Arc<dyn Driver>,
    /// The control plane.
    pub control: Arc<dyn ControlPlane>,
    /// Flips to `true` when the agent stops.
    pub shutdown: watch::Receiver<bool>,
}

/// A node agent (see the module docs).
pub struct Agent {
    config: AgentConfig,
    status: watch::Sender<AgentStatus>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("host", &self.config.name)
            .finish()
    }
}

enum Event {
    Assignments(AssignmentList, u64),
    Contact { epoch: u64, revision: u64 },
    Registered(AgentSession),
    Lost,
    Exited(InstanceId, u64),
    Probe(InstanceId, u64, ProbeOutcome),
    Done(Outcome),
}

struct Shared {
    host: String,
    control: Arc<dyn ControlPlane>,
    book: Mutex<ReportBook>,
    epoch: AtomicU64,
    timings: Mutex<Timings>,
    // Bumped to make the poller fetch a fresh list at once (after=0).
    fetch_gen: AtomicU64,
    kick: Notify,
    // The next fetch asks for every assignment in full (`known` = 0): the
    // reconciler lacked an assignment a list said was unchanged.
    need_full: AtomicBool,
    // The reports changed: heartbeat soon rather than at the next beat.
    report_due: Notify,
    registered: watch::Sender<u64>,
    // When the server last accepted a call (agent start until then).
    last_contact: Mutex<Instant>,
}

impl Shared {
    fn contact(&self, at: Instant) {
        let mut c = self.last_contact.lock().unwrap_or_else(|p| p.into_inner());
        *c = (*c).max(at);
    }

    fn last_contact(&self) -> Instant {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the agent must have fenced itself if no call succeeds before.
    /// Counted from the last call the server accepted, whatever failed
    /// since: only an accepted heartbeat keeps the server from declaring
    /// this host down.
    fn fence_deadline(&self) -> Instant {
        self.last_contact() + self.timings().fence_after
    }

    fn kick_poll(&self) -> u64 {
        let g = self.fetch_gen.fetch_add(1, Ordering::SeqCst) + 1;
        self.kick.notify_one();
        g
    }

    fn timings(&self) -> Timings {
        *self.timings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Agent {
    /// An agent for the host `config` describes.
    pub fn new(config: AgentConfig) -> Self {
        Agent {
            config,
            status: watch::Sender::new(AgentStatus::default()),
        }
    }

    /// Follows the agent's status.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` turns `true` (containers are left running: a
    /// restarted agent adopts them) or registration is refused.
    pub async fn run(
        self,
        driver: Arc<dyn Driver>,
        control: Arc<dyn ControlPlane>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        self.config
            .validate()
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let span = tracing::info_span!("agent", host = %self.config.name);
        let host = self.config.name.clone();
        let shared = Arc::new(Shared {
            host: host.clone(),
            control: control.clone(),
            book: Mutex::new(ReportBook::new()),
            epoch: AtomicU64::new(0),
            timings: Mutex::new(self.config.timings),
            fetch_gen: AtomicU64::new(0),
            need_full: AtomicBool::new(false),
            kick: Notify::new(),
            report_due: Notify::new(),
            registered: watch::Sender::new(0),
            last_contact: Mutex::new(Instant::now()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let register = AgentRegister {
            host: self.config.register_host(driver.name()),
            version: self.config.version.clone(),
        };
        let session = tokio::spawn(
            session_task(shared.clone(), register, tx.clone(), shutdown.clone())
                .instrument(span.clone()),
        );
        let poller = tokio::spawn(
            poll_task(
                shared.clone(),
                self.config.long_poll,
                tx.clone(),
                shutdown.clone(),
            )
            .instrument(span.clone()),
        );
        // Periodic tasks beside the loop start here, each with an
        // `AgentContext` (metric collection: `collect.rs`).
        let context = AgentContext {
            host: host.clone(),
            driver: driver.clone(),
            control,
            shutdown: shutdown.clone(),
        };
        let _collector = self.config.metrics_interval.map(|every| {
            crate::collect::spawn(
                context,
                every,
                self.config.datacenter.clone(),
                jdos_monitor::collect::Paths::default(),
            )
        });

        let exec = Arc::new(Executor::new(
            driver.clone(),
            self.config.network.clone(),
            self.config.parallelism,
        ));
        let mut r = Reconciler {
            config: self.config,
            shared: shared.clone(),
            driver,
            exec,
            tx,
            status: self.status,
            wanted: BTreeMap::new(),
            orders: BTreeMap::new(),
            trackers: Trackers::new(),
            watchers: BTreeMap::new(),
            have_list: false,
            fenced: false,
            awaiting_gen: None,
            need_epoch: 0,
            revision: 0,
            passes: 0,
            dirty: true,
            listed_generation: None,
            quiet_passes: 0,
            observed: BTreeMap::new(),
        };
        let result = r.run(rx, &mut shutdown, session).instrument(span).await;
        poller.abort();
        r.stop_watchers();
        result
    }
}

async fn session_task(
    shared: Arc<Shared>,
    register: AgentRegister,
    tx: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let host = shared.host.clone();
    let mut registered = false;
    let mut failures = 0u32;
    let mut last_warned: Option<Instant> = None;
    loop {
        if stopping(&shutdown) {
            return Ok(());
        }
        let timings = shared.timings();
        let attempt = Instant::now();
        let result = if registered {
            let (reports, full) = shared
                .book
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending();
            let hb = Heartbeat {
                epoch: shared.epoch.load(Ordering::SeqCst),
                reports: reports.clone(),
                full,
                sent_at_ms: now_ms(),
            };
            match shared.control.heartbeat(&host, &hb).await {
                Ok(reply) => {
                    let mut book = shared.book.lock().unwrap_or_else(|p| p.into_inner());
                    book.ack(&reports, full);
                    if reply.want_full {
                        book.want_full();
                    }
                    drop(book);
                    let _ = tx.send(Event::Contact {
                        epoch: reply.epoch,
                        revision: reply.assignments_revision,
                    });
                    Ok(())
                }
                Err(e) if e.needs_register() => {
                    info!(error = %e, "the server does not know this host: registering again");
                    registered = false;
                    continue;
                }
                Err(e) => Err(e),
            }
        } else {
            match shared.control.register(&register).await {
                Ok(session) => {
                    info!(
                        epoch = session.host.epoch,
                        heartbeat_ms = session.heartbeat_interval_ms,
                        fence_after_ms = session.fence_after_ms,
                        "registered"
                    );
                    registered = true;
                    apply_session(&shared, &session);
                    shared
                        .book
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .want_full();
                    shared.registered.send_modify(|n| *n += 1);
                    let _ = tx.send(Event::Registered(session));
                    // Heartbeat at once, at the session's pace.
                    shared.contact(attempt);
                    failures = 0;
                    continue;
                }
                Err(e) if !e.is_unreachable() => {
                    // A wrong join token or a host record the server
                    // rejects: retrying does not help.
                    return Err(AgentError::Register(e));
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {
                // The server saw us somewhere between sending and the
                // answer: count from the sending, the earlier bound.
                shared.contact(attempt);
                if failures > 0 {
                    info!(failures, "the server is reachable again");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    let since_contact_ms = shared.last_contact().elapsed().as_millis() as u64;
                    warn!(error = %e, failures, since_contact_ms, "cannot reach the server");
                    last_warned = Some(Instant::now());
                }
            }
        }
        let pause = if registered || failures == 0 {
            timings.heartbeat_interval
        } else {
            // Registration retries back off a little, up to the interval.
            timings
                .heartbeat_interval
                .min(Duration::from_millis(200 << failures.min(4)))
        };
        // Paced from the start of this attempt, so a slow answer does not
        // stretch the interval the server sees. A changed report goes out
        // early (a deploy waits for it), at most every REPORT_GAP, so a
        // burst of changes shares one call.
        let early = registered && failures == 0;
        tokio::select! {
            _ = tokio::time::sleep_until((attempt + pause).into()) => {}
            _ = shared.report_due.notified(), if early => {
                let at = attempt + pause.min(REPORT_GAP);
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shutdown.changed() => {}
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// The agent should stop: asked to, or whoever could ask is gone.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

fn apply_session(shared: &Shared, s: &AgentSession) {
    shared.epoch.fetch_max(s.host.epoch, Ordering::SeqCst);
    let mut t = shared.timings.lock().unwrap_or_else(|p| p.into_inner());
    if s.heartbeat_interval_ms > 0 {
        t.heartbeat_interval = Duration::from_millis(s.heartbeat_interval_ms);
    }
    if s.fence_after_ms > 0 {
        t.fence_after = Duration::from_millis(s.fence_after_ms);
    }
}

async fn poll_task(
    shared: Arc<Shared>,
    long_poll: Duration,
    tx: mpsc::UnboundedSender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut registered = shared.registered.subscribe();
    // Nothing to fetch before the first registration.
    if registered.wait_for(|n| *n > 0).await.is_err() {
        return;
    }
    let mut revision = 0u64;
    let mut served_gen = u64::MAX;
    let mut seen_registrations = 0u64;
    let mut failures = 0u32;
    loop {
        if stopping(&shutdown) {
            return;
        }
        let gen = shared.fetch_gen.load(Ordering::SeqCst);
        let regs = *registered.borrow();
        // A fresh list (not a long-poll) after a kick or a new registration.
        let after = if gen != served_gen || regs != seen_registrations {
            0
        } else {
            revision
        };
        // The reconciler holds the list at `revision`: what did not change
        // since then may come by identity only.
        let known = if shared.need_full.swap(false, Ordering::SeqCst) {
            0
        } else {
            revision
        };
        let call = shared
            .control
            .assignments(&shared.host, after, known, long_poll);
        tokio::select! {
            r = call => match r {
                Ok(list) => {
                    failures = 0;
                    revision = list.revision;
                    served_gen = gen;
                    seen_registrations = regs;
                    debug!(revision, items = list.items.len(), "assignments");
                    if tx.send(Event::Assignments(list, gen)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures & 15 == 0 {
                        warn!(error = %e, "cannot fetch assignments");
                    }
                    let pause = Duration::from_millis(100 << failures.min(5));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shared.kick.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
            },
            _ = shared.kick.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

// Tasks watching one run of a running container.
struct Watch {
    run: u64,
    waiter: Option<JoinHandle<()>>,
    prober: Option<JoinHandle<()>>,
}

impl Watch {
    fn stop(&mut self) {
        if let Some(w) = self.waiter.take() {
            w.abort();
        }
        if let Some(p) = self.prober.take() {
            p.abort();
        }
    }
}

struct Reconciler {
    config: AgentConfig,
    shared: Arc<Shared>,
    driver: Arc<dyn Driver>,
    exec: Arc<Executor>,
    tx: mpsc::UnboundedSender<Event>,
    status: watch::Sender<AgentStatus>,
    wanted: BTreeMap<InstanceId, Wanted>,
    // The orders `wanted` was prepared from.
    orders: BTreeMap<InstanceId, Assignment>,
    trackers: Trackers,
    watchers: BTreeMap<InstanceId, Watch>,
    observed: BTreeMap<InstanceId, ContainerStatus>,
    // An assignment list arrived since the agent started.
    have_list: bool,
    fenced: bool,
    // Holding still until a list fetched at this poll generation arrives.
    awaiting_gen: Option<u64>,
    // Holding still until a list of this epoch arrives.
    need_epoch: u64,
    revision: u64,
    passes: u64,
    // Something happened since the last listing (an event that asked for
    // a pass): the next pass must list and plan.
    dirty: bool,
    // The driver's generation read before the last listing.
    listed_generation: Option<u64>,
    // Passes skipped because nothing changed.
    quiet_passes: u64,
}

/// Shortest pause between heartbeats sent early because reports changed.
const REPORT_GAP: Duration = Duration::from_millis(100);

/// Delay before a pass after an action finished: lets a burst of
/// completions share one engine listing.
const AFTER_ACTION: Duration = Duration::from_millis(50);

impl Reconciler {
    fn mode(&self) -> PlanMode {
        if self.fenced {
            PlanMode::Fenced
        } else if !self.have_list
            || self.awaiting_gen.is_some()
            || self.shared.epoch.load(Ordering::SeqCst) < self.need_epoch
        {
            PlanMode::Hold
        } else {
            PlanMode::Normal
        }
    }

    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        shutdown: &mut watch::Receiver<bool>,
        mut session: JoinHandle<Result<(), AgentError>>,
    ) -> Result<(), AgentError> {
        let mut pass_at = Instant::now();
        let mut revision_behind = 0u32;
        loop {
            if stopping(shutdown) {
                break;
            }
            let fence_at = self.shared.fence_deadline();
            if !self.fenced && Instant::now() >= fence_at {
                if let Some(d) = self.handle(Event::Lost, &mut revision_behind) {
                    self.dirty = true;
                    pass_at = pass_at.min(Instant::now() + d);
                }
            }
            let mut wake = pass_at;
            if !self.fenced {
                wake = wake.min(fence_at);
            }
            let wake = tokio::time::Instant::from_std(wake);
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if let Some(delay) = self.handle(ev, &mut revision_behind) {
                        self.dirty = true;
                        pass_at = pass_at.min(Instant::now() + delay);
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() < pass_at {
                        continue;
                    }
                }
                r = &mut session => {
                    return match r {
                        Ok(r) => r,
                        Err(e) => Err(AgentError::Config(format!("session task died: {e}"))),
                    };
                }
                _ = shutdown.changed() => { continue; }
            }
            self.pass().await;
            let now = Instant::now();
            pass_at = now + self.config.resync_interval;
            if let Some(at) = next_restart(&self.trackers) {
                let delta = Duration::from_millis(at.saturating_sub(now_ms()));
                pass_at = pass_at.min(now + delta);
            }
        }
        session.abort();
        info!(
            passes = self.passes,
            quiet_passes = self.quiet_passes,
            "agent stopping; containers are left running"
        );
        Ok(())
    }

    /// Applies an event; returns how soon a pass is due because of it.
    fn handle(&mut self, ev: Event, revision_behind: &mut u32) -> Option<Duration> {
        match ev {
            Event::Assignments(list, gen) => {
                if self.awaiting_gen.is_some_and(|g| gen >= g) {
                    self.awaiting_gen = None;
                }
                self.shared.epoch.fetch_max(list.epoch, Ordering::SeqCst);
                if list.epoch < self.need_epoch {
                    // Read before the server bumped the epoch: fetch again.
                    self.awaiting_gen = Some(self.shared.kick_poll());
                }
                self.revision = list.revision;
                *revision_behind = 0;
                self.have_list = true;
                let host = self.config.name.clone();
                let mut wanted = BTreeMap::new();
                let mut orders = BTreeMap::new();
                // Unchanged since the list held: keep the order and its
                // prepared spec as they are. One this agent does not have
                // means the list builds on another: fetch every order in full.
                if let Some(id) = list
                    .kept
                    .iter()
                    .find(|id| !(self.orders.contains_key(*id) && self.wanted.contains_key(*id)))
                {
                    warn!(container = %id, "an unchanged assignment is unknown here: fetching the full list");
                    self.shared.need_full.store(true, Ordering::SeqCst);
                    self.awaiting_gen = Some(self.shared.kick_poll());
                    return Some(Duration::ZERO);
                }
                for id in list.kept {
                    if let (Some(a), Some(w)) = (self.orders.remove(&id), self.wanted.remove(&id)) {
                        wanted.insert(id.clone(), w);
                        orders.insert(id, a);
                    }
                }
                for a in list.items {
                    let id = a.id().clone();
                    // An unchanged order keeps its prepared spec: building
                    // and hashing specs was most of handling a new list.
                    let w = match (self.orders.remove(&id), self.wanted.remove(&id)) {
                        (Some(prev), Some(w)) if prev == a => w,
                        _ => Wanted::from_assignment(&a, &host, &self.config.network),
                    };
                    wanted.insert(id.clone(), w);
                    orders.insert(id, a);
                }
                self.wanted = wanted;
                self.orders = orders;
                Some(Duration::ZERO)
            }
            Event::Contact { epoch, revision } => {
                let mine = self.shared.epoch.load(Ordering::SeqCst);
                let mut due = None;
                if self.fenced {
                    info!("the server is reachable again: reconciling to fresh assignments");
                    self.fenced = false;
                    self.awaiting_gen = Some(self.shared.kick_poll());
                    due = Some(Duration::ZERO);
                }
                if epoch > mine && epoch > self.need_epoch {
                    warn!(
                        old = mine,
                        new = epoch,
                        "host epoch moved on (declared down meanwhile): holding until fresh assignments arrive"
                    );
                    self.need_epoch = epoch;
                    self.awaiting_gen = Some(self.shared.kick_poll());
                    due = Some(Duration::ZERO);
                }
                if revision > self.revision {
                    // The long-poll should have brought it; if two
                    // heartbeats in a row say otherwise, fetch directly.
                    *revision_behind += 1;
                    if *revision_behind >= 2 {
                        *revision_behind = 0;
                        self.shared.kick_poll();
                    }
                }
                due
            }
            Event::Registered(session) => {
                self.shared
                    .epoch
                    .fetch_max(session.host.epoch, Ordering::SeqCst);
                if self.fenced {
                    info!("registered again after fencing: reconciling to fresh assignments");
                    self.fenced = false;
                    self.awaiting_gen = Some(self.shared.kick_poll());
                }
                self.publish();
                Some(Duration::ZERO)
            }
            Event::Lost => {
                if self.fenced {
                    return None;
                }
                warn!(
                    fence_after_ms = self.shared.timings().fence_after.as_millis() as u64,
                    "the server has not been reached for too long: self-fencing (killing every container)"
                );
                self.fenced = true;
                Some(Duration::ZERO)
            }
            Event::Exited(id, run) => {
                let current = self.trackers.get(&id).is_some_and(|t| t.run == run);
                current.then_some(Duration::ZERO)
            }
            Event::Probe(id, run, outcome) => {
                let t = self.trackers.get_mut(&id)?;
                if t.run != run {
                    return None;
                }
                let h = t.health.as_mut()?;
                let before = h.status();
                let after = h.record(now_ms(), &outcome);
                if before == after {
                    return None;
                }
                debug!(container = %id, ?after, "health changed");
                Some(if after == HealthStatus::Unhealthy {
                    Duration::ZERO
                } else {
                    AFTER_ACTION
                })
            }
            Event::Done(o) => {
                let now = now_ms();
                let health = self
                    .wanted
                    .get(&o.id)
                    .and_then(|w| w.spec.as_ref().ok())
                    .and_then(|s| s.health.clone());
                if let Some(t) = self.trackers.get_mut(&o.id) {
                    t.in_flight = false;
                    if o.snapshot.is_some() {
                        t.snapshot = o.snapshot;
                    }
                    if let Some(hash) = o.updated_to {
                        if o.error.is_none() {
                            t.live_hash = Some(hash);
                        } else {
                            // Not retried live: the next pass recreates it.
                            t.live_failed = Some(hash);
                        }
                    }
                    match &o.error {
                        None if o.started => t.started(now, health.as_ref()),
                        None => {}
                        Some(e) if matches!(o.kind, "create" | "start" | "recreate") => {
                            t.fail(now, format!("{} failed: {e}", o.kind));
                        }
                        Some(e) => t.message = format!("{} failed: {e}", o.kind),
                    }
                }
                Some(AFTER_ACTION)
            }
        }
    }

    async fn pass(&mut self) {
        let now = now_ms();
        // A resync finds what changed behind the agent's back. When no
        // event asked for a pass, no restart is due and the engine says
        // nothing changed since the last listing, the plan would be the
        // same: skip it (most passes of a quiet host; a simulated fleet of
        // thousands spent most of its time here). When only the orders
        // changed, the last listing is still the engine's state.
        let generation = self.driver.generation();
        let restart_due = next_restart(&self.trackers).is_some_and(|at| at <= now);
        let unchanged = generation.is_some() && generation == self.listed_generation;
        if !self.dirty && !restart_due && unchanged {
            self.quiet_passes += 1;
            return;
        }
        let observed = if unchanged {
            // New orders, the engine as last listed: plan on that listing.
            std::mem::take(&mut self.observed)
        } else {
            match self
                .driver
                .list(&LabelFilter::host(&self.config.name))
                .await
            {
                Ok(listed) => {
                    let mut observed = BTreeMap::new();
                    for s in listed {
                        match s.instance.clone() {
                            Some(id) => {
                                observed.insert(id, s);
                            }
                            None => {
                                warn!(name = %s.name, "a jdos container without a valid instance label; leaving it alone")
                            }
                        }
                    }
                    observed
                }
                Err(e) => {
                    warn!(error = %e, "cannot list the engine's containers; retrying");
                    self.dirty = true;
                    self.listed_generation = None;
                    return;
                }
            }
        };
        self.dirty = false;
        // Read before listing: a change during the listing is seen next time.
        self.listed_generation = generation;
        let ctx = PlanContext {
            now,
            mode: self.mode(),
            policy: self.config.backoff,
        };
        let actions = plan(&self.wanted, &observed, &mut self.trackers, &ctx);
        self.observed = observed;
        for a in &actions {
            if let Some(t) = self.trackers.get_mut(a.id()) {
                t.in_flight = true;
            }
            if let Some(mut w) = self.watchers.remove(a.id()) {
                w.stop();
            }
        }
        for a in actions {
            let exec = self.exec.clone();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let o = exec.execute(a).await;
                let _ = tx.send(Event::Done(o));
            });
        }
        self.watch_running();
        // Forget identities that are neither wanted, present nor busy.
        let (wanted, observed) = (&self.wanted, &self.observed);
        self.trackers
            .retain(|id, t| t.in_flight || wanted.contains_key(id) || observed.contains_key(id));
        self.passes += 1;
        self.publish();
    }

    /// Starts exit waiters and health probers for running containers that
    /// have none for their current run; stops those of the others.
    fn watch_running(&mut self) {
        let ids: Vec<InstanceId> = self.watchers.keys().cloned().collect();
        for id in ids {
            let keep = self.observed.get(&id).is_some_and(|s| s.state.is_running())
                && self
                    .trackers
                    .get(&id)
                    .is_some_and(|t| !t.in_flight && self.watchers[&id].run == t.run);
            if !keep {
                if let Some(mut w) = self.watchers.remove(&id) {
                    w.stop();
                }
            }
        }
        for (id, s) in &self.observed {
            if !s.state.is_running() || self.watchers.contains_key(id) {
                continue;
            }
            let Some(t) = self.trackers.get(id).filter(|t| !t.in_flight) else {
                continue;
            };
            let run = t.run;
            let waiter = {
                let (d, tx, id) = (self.driver.clone(), self.tx.clone(), id.clone());
                // Without `wait` support the periodic listing sees exits.
                Some(tokio::spawn(async move {
                    match d.wait(&id).await {
                        Err(DriverError::Unsupported { .. }) => {}
                        _ => {
                            let _ = tx.send(Event::Exited(id, run));
                        }
                    }
                }))
            };
            let check = self
                .wanted
                .get(id)
                .and_then(|w| w.spec.as_ref().ok())
                .and_then(|spec| {
                    let ip = spec.network.as_ref().map(|n| n.ipv4).or(s.ip);
                    spec.health.clone().map(|h| (h, ip))
                });
            let prober = check.map(|(check, ip)| {
                let (d, tx, id) = (self.driver.clone(), self.tx.clone(), id.clone());
                tokio::spawn(async move {
                    let every = Duration::from_millis(check.interval_ms.max(100));
                    loop {
                        tokio::time::sleep(every).await;
                        let outcome = probe(&check, ip, d.as_ref(), &id).await;
                        if tx.send(Event::Probe(id.clone(), run, outcome)).is_err() {
                            return;
                        }
                    }
                })
            });
            self.watchers.insert(
                id.clone(),
                Watch {
                    run,
                    waiter,
                    prober,
                },
            );
        }
    }

    fn publish(&mut self) {
        let reports: BTreeMap<InstanceId, ContainerReport> = self
            .wanted
            .iter()
            .map(|(id, w)| {
                (
                    id.clone(),
                    report(id, w, self.observed.get(id), self.trackers.get(id)),
                )
            })
            .collect();
        // `run` consumed the agent: with no receiver left, none can appear,
        // and a fleet of simulated agents skips the copy.
        let watched = self.status.receiver_count() > 0;
        let list: Vec<ContainerReport> = if watched {
            reports.values().cloned().collect()
        } else {
            Vec::new()
        };
        let ready = self.have_list && self.passes > 0;
        let due = self
            .shared
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(reports, ready);
        if due {
            self.shared.report_due.notify_one();
        }
        if !watched {
            return;
        }
        let status = AgentStatus {
            registered: *self.shared.registered.borrow() > 0,
            epoch: self.shared.epoch.load(Ordering::SeqCst),
            fenced: self.fenced,
            converging: self.mode() == PlanMode::Normal,
            assignments_revision: self.revision,
            assignments: self.wanted.len(),
            reports: list,
            passes: self.passes,
            quiet_passes: self.quiet_passes,
        };
        self.status.send_replace(status);
    }

    fn stop_watchers(&mut self) {
        for (_, mut w) in std::mem::take(&mut self.watchers) {
            w.stop();
        }
    }
}
