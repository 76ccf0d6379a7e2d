//! The reconcile planner: what to do to make the engine hold exactly the
//! host's assignments. A pure function of the wanted state, the observed
//! containers, the agent's per-container bookkeeping ([`Tracker`]) and the
//! time: no IO, no clock, so it is property-tested on its own and the
//! executor ([`crate::exec`]) only carries its actions out.
//!
//! Rules (level-triggered, safe to re-run after a crash):
//! - an identity never gets a second container: a create is planned only
//!   when the engine shows none of that identity and no action on it is in
//!   flight (the engine refuses a duplicate name anyway);
//! - a jdos container of this host with no assignment is destroyed
//!   (fencing: it was moved or deleted while this agent was away);
//! - `deleted` is destroyed (its data too) and then reported gone;
//! - `running` is created and started; a container made from another spec
//!   (hash label), generation or epoch is recreated — except when only its
//!   cpu and memory limits differ (same shape hash, generation and epoch):
//!   those are updated live ([`Action::Update`], a cgroup update, same
//!   container) and recreated only if the engine refuses; one that exited is
//!   restarted in place after the [`RestartTracker`]'s back-off, until it
//!   has failed `migrate_after` times in a row (crash loop: the server moves
//!   it); a container that turned unhealthy counts as one failure;
//! - a snapshot order ([`Assignment::snapshot`]) on an existing container
//!   that matches its spec is carried out once per reference
//!   ([`Action::Commit`]); the outcome stays in the tracker and is
//!   reported while the order stands;
//! - `stopped` is stopped (and left as it is otherwise);
//! - in [`PlanMode::Fenced`] every running container is killed and nothing
//!   starts; in [`PlanMode::Hold`] nothing is done at all (the assignments
//!   are not known or not current).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jdos_runtime::{
    BackoffPolicy, ContainerSpec, ContainerStatus, HealthStatus, HealthTracker, NetworkRealization,
    RestartDecision, RestartTracker, RuntimeState,
};
use jdos_types::agent::{Assignment, SnapshotReport};
use jdos_types::container::DesiredState;
use jdos_types::{InstanceId, Network, UnixMillis};

/// Label (on the container, part of its spec hash) holding the assignment
/// generation it was made from. Not `jdos.`-prefixed: those are computed by
/// the runtime from the spec itself.
pub const GENERATION_LABEL: &str = "jdos-agent/generation";

/// One assignment, prepared for planning: its spec built once.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Running, stopped or deleted.
    pub desired: DesiredState,
    /// The assignment generation.
    pub generation: u64,
    /// The host epoch the container is placed under.
    pub epoch: u64,
    /// The container spec, or why none can be built from the assignment.
    pub spec: Result<Arc<ContainerSpec>, String>,
    /// The network to realize before creating.
    pub network: Option<Network>,
    /// The spec's hash (empty when there is no spec).
    pub hash: String,
    /// The spec's hash without cpu and memory limits (empty when there is
    /// no spec).
    pub shape: String,
    /// Commit the container to this image reference.
    pub snapshot: Option<String>,
}

impl Wanted {
    /// Prepares `a` for the agent of `host`, realizing its network as
    /// `realization` says. The spec's host is this agent's, whatever the
    /// record says, so the container carries this host's label and a later
    /// list finds it (no duplicate can hide under another host's label).
    pub fn from_assignment(a: &Assignment, host: &str, realization: &NetworkRealization) -> Self {
        let mut container = a.container.clone();
        container.host = Some(host.to_string());
        let spec = ContainerSpec::for_container(
            &container,
            &a.template,
            a.network.as_ref().map(|n| (n, realization)),
        )
        .and_then(|mut s| {
            s.labels
                .insert(GENERATION_LABEL.to_string(), a.generation.to_string());
            s.validate()?;
            Ok(s)
        })
        .map(Arc::new)
        .map_err(|e| e.to_string());
        let hash = spec.as_ref().map(|s| s.spec_hash()).unwrap_or_default();
        let shape = spec.as_ref().map(|s| s.shape_hash()).unwrap_or_default();
        Wanted {
            desired: a.container.desired,
            generation: a.generation,
            epoch: a.container.host_epoch,
            spec,
            network: a.network.clone(),
            hash,
            shape,
            snapshot: a.snapshot.clone(),
        }
    }
}

/// The generation label of an observed container (0 when absent).
pub fn generation_of(status: &ContainerStatus) -> u64 {
    status
        .labels
        .get(GENERATION_LABEL)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// The agent's memory of one container identity between passes.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Restart back-off and failure count.
    pub restart: RestartTracker,
    /// It was last seen (or made) running: the next time it is seen not
    /// running, that is an exit to count.
    pub was_running: bool,
    /// A restart is due at this time (back-off).
    pub restart_at: Option<UnixMillis>,
    /// The back-off gave up: the server should move it.
    pub crash_loop: bool,
    /// Restarts done by this agent.
    pub restarts: u32,
    /// An action on it is being carried out: plan nothing else for it.
    pub in_flight: bool,
    /// Its health-check verdicts since its last start.
    pub health: Option<HealthTracker>,
    /// Increases with every start, so watchers of an earlier run are told
    /// apart.
    pub run: u64,
    /// Why it is not running as wanted (exit, failed action, health).
    pub message: String,
    /// The spec hash its limits were last updated to live: its labels still
    /// carry the hash it was created with (labels are immutable), so this is
    /// how a pass knows the update is done. Lost on an agent restart: an
    /// adopted container is taken to have its creation limits (the engine's
    /// list does not show limits), which costs one idempotent update more —
    /// or, if the wanted limits went back to exactly the creation ones
    /// meanwhile, leaves the live ones in place until the next change.
    pub live_hash: Option<String>,
    /// A live update to this spec hash was refused: recreate instead.
    pub live_failed: Option<String>,
    /// The last snapshot order carried out and its outcome: not carried out
    /// again for the same reference (an agent restart forgets it; a second
    /// commit only points the same tag at a fresher snapshot).
    pub snapshot: Option<SnapshotReport>,
}

impl Tracker {
    /// A fresh tracker.
    pub fn new(policy: BackoffPolicy) -> Self {
        Tracker {
            restart: RestartTracker::new(policy),
            was_running: false,
            restart_at: None,
            crash_loop: false,
            restarts: 0,
            in_flight: false,
            health: None,
            run: 0,
            message: String::new(),
            live_hash: None,
            live_failed: None,
            snapshot: None,
        }
    }

    /// Counts one failure at `now` (an exit, a failed start, an unhealthy
    /// verdict): schedules a restart or declares a crash loop.
    pub fn fail(&mut self, now: UnixMillis, why: String) {
        self.was_running = false;
        self.health = None;
        match self.restart.on_exit(now) {
            RestartDecision::RestartAfter(d) => {
                self.restart_at = Some(now.saturating_add(millis(d)));
                self.message = why;
            }
            RestartDecision::Migrate { failures } => {
                self.restart_at = None;
                self.crash_loop = true;
                self.message =
                    format!("{why}; crash loop: {failures} failures in a row, waiting to be moved");
            }
        }
    }

    /// It was (re)started at `now`.
    pub fn started(&mut self, now: UnixMillis, health: Option<&jdos_types::workload::HealthCheck>) {
        if self.restart_at.take().is_some() {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.was_running = true;
        self.restart.on_started(now);
        self.health = health.map(|h| HealthTracker::new(h, now));
        self.run = self.run.wrapping_add(1);
        self.message.clear();
    }

    /// Forgets failures: a new spec or generation starts over (a snapshot
    /// taken stays taken).
    pub fn reset(&mut self, policy: BackoffPolicy) {
        let run = self.run;
        let snapshot = self.snapshot.take();
        *self = Tracker::new(policy);
        self.run = run;
        self.snapshot = snapshot;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every identity's tracker.
pub type Trackers = BTreeMap<InstanceId, Tracker>;

/// What the planner may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    /// Make the engine match the assignments.
    Normal,
    /// Do nothing: the assignments are unknown or stale (a newer epoch was
    /// announced and the fresh list has not arrived).
    Hold,
    /// The server has not been reached for too long: kill everything,
    /// start nothing.
    Fenced,
}

/// Inputs of a pass besides the state.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext {
    /// Now, ms since the epoch.
    pub now: UnixMillis,
    /// What may be done.
    pub mode: PlanMode,
    /// Restart back-off for new trackers.
    pub policy: BackoffPolicy,
}

/// Why a container is destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestroyReason {
    /// Its assignment says `deleted`.
    Deleted,
    /// It has no assignment on this host (moved or deleted while away).
    Unassigned,
}

/// Why a container is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its assignment says `stopped`.
    Desired,
    /// It failed its health check: restarted after the back-off.
    Unhealthy,
    /// Self-fencing: killed at once.
    Fenced,
}

/// One step for the executor. Actions of one pass concern different
/// identities and may run concurrently.
#[derive(Debug, Clone)]
pub enum Action {
    /// Realize the network, create the container, and start it if `start`.
    Create {
        /// What to create.
        spec: Arc<ContainerSpec>,
        /// Its network.
        network: Option<Network>,
        /// Start it too.
        start: bool,
    },
    /// Start an existing container.
    Start {
        /// Which.
        id: InstanceId,
    },
    /// Stop a running container.
    Stop {
        /// Which.
        id: InstanceId,
        /// Time between SIGTERM and SIGKILL.
        grace: Duration,
        /// Why.
        reason: StopReason,
    },
    /// Change the cpu and memory limits of the existing container in place
    /// (running or not): nothing else of it differs from `spec`.
    Update {
        /// The spec whose limits to apply.
        spec: Arc<ContainerSpec>,
        /// Its hash, recorded in the tracker once applied.
        hash: String,
    },
    /// Destroy (keeping its data) and create again from `spec`, started.
    Recreate {
        /// The new spec.
        spec: Arc<ContainerSpec>,
        /// Its network.
        network: Option<Network>,
        /// What differed.
        why: String,
    },
    /// Commit the container's filesystem to an image.
    Commit {
        /// Which.
        id: InstanceId,
        /// The image reference (`repo:tag`).
        reference: String,
    },
    /// Remove the container and its data.
    Destroy {
        /// Which.
        id: InstanceId,
        /// Why.
        reason: DestroyReason,
    },
}

impl Action {
    /// The identity it acts on.
    pub fn id(&self) -> &InstanceId {
        match self {
            Action::Create { spec, .. }
            | Action::Recreate { spec, .. }
            | Action::Update { spec, .. } => &spec.instance,
            Action::Start { id }
            | Action::Stop { id, .. }
            | Action::Commit { id, .. }
            | Action::Destroy { id, .. } => id,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Stop { .. } => "stop",
            Action::Recreate { .. } => "recreate",
            Action::Update { .. } => "update",
            Action::Commit { .. } => "commit",
            Action::Destroy { .. } => "destroy",
        }
    }
}

/// Why an exited container stopped, in words.
pub fn exit_message(status: &ContainerStatus) -> String {
    let code = status
        .exit_code
        .map_or_else(|| "unknown".to_string(), |c| c.to_string());
    let mut m = if status.oom_killed {
        format!("killed by the kernel's OOM killer (exit {code}): raise its memory limit")
    } else {
        format!("exited with code {code}")
    };
    if !status.error.is_empty() {
        m.push_str(": ");
        m.push_str(&status.error);
    }
    m
}

/// What a container needs to match its wanted spec.
#[derive(Debug, PartialEq, Eq)]
enum Drift {
    /// Nothing.
    None,
    /// New cpu / memory limits only: a live update.
    Limits,
    /// To be made again, for this reason.
    Recreate(String),
}

/// What differs between the wanted spec and a container.
fn drift(w: &Wanted, status: &ContainerStatus, t: &Tracker) -> Drift {
    if matches!(status.state, RuntimeState::Dead | RuntimeState::Removing) {
        return Drift::Recreate(
            format!("the engine holds it as {:?}", status.state).to_lowercase(),
        );
    }
    let same_spec = status.spec_hash() == Some(w.hash.as_str());
    if !same_spec && status.shape_hash() != Some(w.shape.as_str()) {
        return Drift::Recreate("its spec changed".into());
    }
    let generation = generation_of(status);
    if generation != w.generation {
        return Drift::Recreate(format!("generation {generation} -> {}", w.generation));
    }
    let epoch = status.epoch().unwrap_or(0);
    if epoch != w.epoch {
        return Drift::Recreate(format!(
            "made under host epoch {epoch}, placed under {}",
            w.epoch
        ));
    }
    // Its limits are those of the last live update, else those it was made
    // with.
    let current = t.live_hash.as_deref().or(status.spec_hash());
    if current == Some(w.hash.as_str()) {
        Drift::None
    } else if t.live_failed.as_deref() == Some(w.hash.as_str()) {
        Drift::Recreate("the engine refused to change its limits live".into())
    } else {
        Drift::Limits
    }
}

/// Plans one pass. Updates `trackers` with what the observation shows
/// (exits counted once, restarts scheduled, crash loops declared) and
/// returns at most one action per identity, none for an identity with an
/// action in flight. The caller marks each returned action's tracker in
/// flight until it is done.
pub fn plan(
    wanted: &BTreeMap<InstanceId, Wanted>,
    observed: &BTreeMap<InstanceId, ContainerStatus>,
    trackers: &mut Trackers,
    ctx: &PlanContext,
) -> Vec<Action> {
    let now = ctx.now;
    let mut actions = Vec::new();
    if ctx.mode == PlanMode::Hold {
        return actions;
    }
    let ids: BTreeSet<&InstanceId> = wanted.keys().chain(observed.keys()).collect();
    for id in ids {
        let t = trackers
            .entry(id.clone())
            .or_insert_with(|| Tracker::new(ctx.policy));
        if t.in_flight {
            continue;
        }
        let obs = observed.get(id);
        if ctx.mode == PlanMode::Fenced {
            if let Some(s) = obs.filter(|s| s.state.is_running()) {
                // Not a failure of the container: no back-off, restarted
                // at once if the server still wants it when we are back.
                t.was_running = false;
                t.health = None;
                let _ = s;
                actions.push(Action::Stop {
                    id: id.clone(),
                    grace: Duration::ZERO,
                    reason: StopReason::Fenced,
                });
            }
            continue;
        }
        let Some(w) = wanted.get(id) else {
            if obs.is_some() {
                actions.push(Action::Destroy {
                    id: id.clone(),
                    reason: DestroyReason::Unassigned,
                });
            }
            continue;
        };
        if w.desired == DesiredState::Deleted {
            if obs.is_some() {
                actions.push(Action::Destroy {
                    id: id.clone(),
                    reason: DestroyReason::Deleted,
                });
            }
            continue;
        }
        let spec = match &w.spec {
            Ok(s) => s,
            Err(why) => {
                t.message = format!("cannot run this assignment: {why}");
                continue;
            }
        };
        let Some(status) = obs else {
            if w.desired == DesiredState::Running
                && !t.crash_loop
                && t.restart_at.is_none_or(|at| at <= now)
            {
                actions.push(Action::Create {
                    spec: spec.clone(),
                    network: w.network.clone(),
                    start: true,
                });
            }
            continue;
        };
        let running = status.state.is_running();
        if w.desired == DesiredState::Stopped {
            if running {
                t.was_running = false;
                t.health = None;
                actions.push(Action::Stop {
                    id: id.clone(),
                    grace: Duration::from_secs(u64::from(spec.stop_grace_secs)),
                    reason: StopReason::Desired,
                });
            }
            continue;
        }
        // desired: running
        match drift(w, status, t) {
            Drift::None => {}
            Drift::Limits => {
                actions.push(Action::Update {
                    spec: spec.clone(),
                    hash: w.hash.clone(),
                });
                continue;
            }
            Drift::Recreate(why) => {
                t.reset(ctx.policy);
                actions.push(Action::Recreate {
                    spec: spec.clone(),
                    network: w.network.clone(),
                    why,
                });
                continue;
            }
        }
        if let Some(reference) = w
            .snapshot
            .as_ref()
            .filter(|r| t.snapshot.as_ref().is_none_or(|s| &s.reference != *r))
        {
            actions.push(Action::Commit {
                id: id.clone(),
                reference: reference.clone(),
            });
            continue;
        }
        if running {
            if !t.was_running {
                // Adopted (found running after an agent restart) or started
                // by someone else: watch it from now on.
                t.was_running = true;
                t.restart.on_started(now);
                t.run = t.run.wrapping_add(1);
            }
            if t.health.is_none() {
                if let Some(h) = &spec.health {
                    t.health = Some(HealthTracker::new(h, now));
                }
            }
            t.restart.on_running(now);
            if let Some(h) = t
                .health
                .as_ref()
                .filter(|h| h.status() == HealthStatus::Unhealthy)
            {
                let why = format!(
                    "unhealthy: {}",
                    h.last_failure().unwrap_or("health check failed")
                );
                t.fail(now, why);
                actions.push(Action::Stop {
                    id: id.clone(),
                    grace: Duration::from_secs(u64::from(spec.stop_grace_secs)),
                    reason: StopReason::Unhealthy,
                });
            }
            continue;
        }
        if t.was_running {
            t.fail(now, exit_message(status));
        }
        if t.crash_loop || t.restart_at.is_some_and(|at| at > now) {
            continue;
        }
        actions.push(Action::Start { id: id.clone() });
    }
    actions
}

/// When the next pass is due for a back-off to end, if any.
pub fn next_restart(trackers: &Trackers) -> Option<UnixMillis> {
    trackers
        .values()
        .filter(|t| !t.in_flight && !t.crash_loop)
        .filter_map(|t| t.restart_at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_runtime::labels;
    use jdos_types::group::ContainerTemplate;
    use jdos_types::resources::MIB;
    use jdos_types::{Container, ContainerPhase, Resources};
    use proptest::prelude::*;

    const HOST: &str = "h1";

    fn template(cmd: &str, memory_mib: u64) -> ContainerTemplate {
        ContainerTemplate {
            image: "img".into(),
            command: vec![cmd.into()],
            env: Default::default(),
            resources: Resources::new(100, memory_mib * MIB),
            ports: vec![],
            network_zone: None,
            network: None,
            isolation: Default::default(),
            storage: Default::default(),
            health: None,
            stop_grace_secs: Some(1),
            hooks: Default::default(),
        }
    }

    fn wanted(i: u32, desired: DesiredState, cmd: &str, generation: u64) -> (InstanceId, Wanted) {
        sized(i, desired, cmd, generation, 32)
    }

    fn sized(
        i: u32,
        desired: DesiredState,
        cmd: &str,
        generation: u64,
        memory_mib: u64,
    ) -> (InstanceId, Wanted) {
        let id: InstanceId = format!("a/e/g/{i}").parse().unwrap();
        let t = template(cmd, memory_mib);
        let a = Assignment {
            container: Container {
                id: id.clone(),
                datacenter: "dc".into(),
                host: Some(HOST.into()),
                host_epoch: 1,
                network: None,
                ip: None,
                image: t.image.clone(),
                resources: t.resources,
                desired,
                phase: ContainerPhase::Scheduled,
                restarts: 0,
                message: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
            },
            template: t,
            network: None,
            generation,
            snapshot: None,
        };
        (
            id,
            Wanted::from_assignment(&a, HOST, &NetworkRealization::bridge()),
        )
    }

    /// A container as the engine would show one made from `spec`.
    fn status_of(spec: &ContainerSpec, state: RuntimeState) -> ContainerStatus {
        ContainerStatus {
            instance: Some(spec.instance.clone()),
            name: spec.docker_name(),
            id: spec.docker_name(),
            image: spec.image.clone(),
            state,
            exit_code: (state == RuntimeState::Exited).then_some(1),
            oom_killed: false,
            error: String::new(),
            ip: None,
            started_at_ms: None,
            finished_at_ms: None,
            restart_count: 0,
            labels: Arc::new(spec.all_labels()),
        }
    }

    fn ctx(now: UnixMillis) -> PlanContext {
        PlanContext {
            now,
            mode: PlanMode::Normal,
            policy: BackoffPolicy {
                initial_ms: 100,
                max_ms: 1000,
                multiplier: 2,
                reset_after_ms: 10_000,
                migrate_after: 3,
            },
        }
    }

    /// A model engine: applies actions as a driver would (one container
    /// per identity; create of an existing identity is a conflict), and
    /// the agent's bookkeeping of their outcomes. `limits` holds each
    /// container's memory limit as the engine applies it (labels keep the
    /// creation spec, like Docker's).
    fn apply(
        engine: &mut BTreeMap<InstanceId, ContainerStatus>,
        limits: &mut BTreeMap<InstanceId, u64>,
        trackers: &mut Trackers,
        actions: &[Action],
        now: UnixMillis,
    ) {
        for a in actions {
            let t = trackers.get_mut(a.id()).unwrap();
            match a {
                Action::Update { spec, hash } => {
                    assert!(
                        engine.contains_key(&spec.instance),
                        "update of a missing container"
                    );
                    limits.insert(spec.instance.clone(), spec.resources.memory_bytes);
                    t.live_hash = Some(hash.clone());
                }
                Action::Create { spec, start, .. } => {
                    assert!(
                        !engine.contains_key(&spec.instance),
                        "duplicate create of {}",
                        spec.instance
                    );
                    let st = if *start {
                        RuntimeState::Running
                    } else {
                        RuntimeState::Created
                    };
                    engine.insert(spec.instance.clone(), status_of(spec, st));
                    limits.insert(spec.instance.clone(), spec.resources.memory_bytes);
                    if *start {
                        t.started(now, None);
                    }
                }
                Action::Recreate { spec, .. } => {
                    assert!(engine.remove(&spec.instance).is_some());
                    engine.insert(
                        spec.instance.clone(),
                        status_of(spec, RuntimeState::Running),
                    );
                    limits.insert(spec.instance.clone(), spec.resources.memory_bytes);
                    t.started(now, None);
                }
                Action::Start { id } => {
                    engine.get_mut(id).unwrap().state = RuntimeState::Running;
                    t.started(now, None);
                }
                Action::Stop { id, .. } => {
                    engine.get_mut(id).unwrap().state = RuntimeState::Exited;
                }
                Action::Destroy { id, .. } => {
                    engine.remove(id);
                    limits.remove(id);
                }
                Action::Commit { reference, .. } => {
                    t.snapshot = Some(SnapshotReport {
                        reference: reference.clone(),
                        image_id: "sha256:x".into(),
                        error: String::new(),
                    });
                }
            }
        }
    }

    #[test]
    fn adopting_matching_containers_plans_nothing() {
        let w: BTreeMap<_, _> = (0..5)
            .map(|i| wanted(i, DesiredState::Running, "run", 0))
            .collect();
        let observed: BTreeMap<_, _> = w
            .iter()
            .map(|(id, w)| {
                (
                    id.clone(),
                    status_of(w.spec.as_ref().unwrap(), RuntimeState::Running),
                )
            })
            .collect();
        let mut trackers = Trackers::new();
        assert!(plan(&w, &observed, &mut trackers, &ctx(0)).is_empty());
        assert!(trackers.values().all(|t| t.was_running));
    }

    #[test]
    fn generation_or_spec_changes_recreate_and_fencing_kills() {
        let (id, w0) = wanted(0, DesiredState::Running, "run", 0);
        let observed: BTreeMap<_, _> = [(
            id.clone(),
            status_of(w0.spec.as_ref().unwrap(), RuntimeState::Running),
        )]
        .into();
        let mut trackers = Trackers::new();
        for w in [
            wanted(0, DesiredState::Running, "run", 1).1,
            wanted(0, DesiredState::Running, "other", 0).1,
        ] {
            let wm: BTreeMap<_, _> = [(id.clone(), w)].into();
            let a = plan(&wm, &observed, &mut trackers, &ctx(0));
            assert!(matches!(a.as_slice(), [Action::Recreate { .. }]), "{a:?}");
        }
        let wm: BTreeMap<_, _> = [(id.clone(), w0)].into();
        let mut c = ctx(0);
        c.mode = PlanMode::Fenced;
        let a = plan(&wm, &observed, &mut trackers, &c);
        assert!(
            matches!(a.as_slice(), [Action::Stop { reason: StopReason::Fenced, grace, .. }] if grace.is_zero())
        );
        c.mode = PlanMode::Hold;
        assert!(plan(&BTreeMap::new(), &observed, &mut trackers, &c).is_empty());
    }

    #[test]
    fn a_size_change_is_a_live_update_and_a_refused_one_recreates() {
        let (id, w32) = sized(0, DesiredState::Running, "run", 0, 32);
        let observed: BTreeMap<_, _> = [(
            id.clone(),
            status_of(w32.spec.as_ref().unwrap(), RuntimeState::Running),
        )]
        .into();
        let (_, w64) = sized(0, DesiredState::Running, "run", 0, 64);
        let hash64 = w64.hash.clone();
        let at64: BTreeMap<_, _> = [(id.clone(), w64)].into();
        let at32: BTreeMap<_, _> = [(id.clone(), w32)].into();
        let mut trackers = Trackers::new();
        assert!(plan(&at32, &observed, &mut trackers, &ctx(0)).is_empty());
        let a = plan(&at64, &observed, &mut trackers, &ctx(0));
        assert!(
            matches!(a.as_slice(), [Action::Update { spec, hash }]
                if *hash == hash64 && spec.resources.memory_bytes == 64 * MIB),
            "{a:?}"
        );
        // Applied: the labels still say 32 MiB, the tracker knows better.
        trackers.get_mut(&id).unwrap().live_hash = Some(hash64.clone());
        assert!(plan(&at64, &observed, &mut trackers, &ctx(1)).is_empty());
        // Back to the creation size: another live update, not "nothing".
        let a = plan(&at32, &observed, &mut trackers, &ctx(2));
        assert!(matches!(a.as_slice(), [Action::Update { .. }]), "{a:?}");
        // The engine refused 64 MiB: the container is made again at 64.
        let t = trackers.get_mut(&id).unwrap();
        t.live_hash = None;
        t.live_failed = Some(hash64);
        let a = plan(&at64, &observed, &mut trackers, &ctx(3));
        assert!(
            matches!(a.as_slice(), [Action::Recreate { why, .. }] if why.contains("refused")),
            "{a:?}"
        );
        assert!(
            trackers[&id].live_failed.is_none(),
            "a new container starts over"
        );
        // A size change together with another change recreates.
        let (_, other) = sized(0, DesiredState::Running, "other", 0, 64);
        let a = plan(
            &[(id.clone(), other)].into(),
            &observed,
            &mut trackers,
            &ctx(4),
        );
        assert!(matches!(a.as_slice(), [Action::Recreate { .. }]), "{a:?}");
    }

    #[test]
    fn a_snapshot_order_is_committed_once_per_reference() {
        let (id, mut w) = wanted(0, DesiredState::Running, "run", 0);
        let observed: BTreeMap<_, _> = [(
            id.clone(),
            status_of(w.spec.as_ref().unwrap(), RuntimeState::Running),
        )]
        .into();
        w.snapshot = Some("jdos-snapshot/a-g:t1".into());
        let mut wm: BTreeMap<_, _> = [(id.clone(), w)].into();
        let mut trackers = Trackers::new();
        let a = plan(&wm, &observed, &mut trackers, &ctx(0));
        assert!(
            matches!(a.as_slice(), [Action::Commit { reference, .. }] if reference == "jdos-snapshot/a-g:t1"),
            "{a:?}"
        );
        trackers.get_mut(&id).unwrap().snapshot = Some(SnapshotReport {
            reference: "jdos-snapshot/a-g:t1".into(),
            image_id: "sha256:1".into(),
            error: String::new(),
        });
        assert!(plan(&wm, &observed, &mut trackers, &ctx(1)).is_empty());
        wm.get_mut(&id).unwrap().snapshot = Some("jdos-snapshot/a-g:t2".into());
        let a = plan(&wm, &observed, &mut trackers, &ctx(2));
        assert!(matches!(a.as_slice(), [Action::Commit { .. }]), "{a:?}");
        // No container, no commit: it is created first.
        let a = plan(&wm, &BTreeMap::new(), &mut trackers, &ctx(3));
        assert!(matches!(a.as_slice(), [Action::Create { .. }]), "{a:?}");
    }

    #[test]
    fn exits_back_off_and_end_in_a_crash_loop() {
        let (id, w) = wanted(0, DesiredState::Running, "run", 0);
        let spec = w.spec.clone().unwrap();
        let wm: BTreeMap<_, _> = [(id.clone(), w)].into();
        let mut trackers = Trackers::new();
        let running: BTreeMap<_, _> =
            [(id.clone(), status_of(&spec, RuntimeState::Running))].into();
        let exited: BTreeMap<_, _> = [(id.clone(), status_of(&spec, RuntimeState::Exited))].into();
        assert!(plan(&wm, &running, &mut trackers, &ctx(0)).is_empty());
        // Crash at t=1000: restart due at 1100, not before.
        assert!(plan(&wm, &exited, &mut trackers, &ctx(1000)).is_empty());
        assert!(plan(&wm, &exited, &mut trackers, &ctx(1050)).is_empty());
        let a = plan(&wm, &exited, &mut trackers, &ctx(1100));
        assert!(matches!(a.as_slice(), [Action::Start { .. }]));
        trackers.get_mut(&id).unwrap().started(1100, None);
        // Second crash: 200 ms back-off.
        assert!(plan(&wm, &exited, &mut trackers, &ctx(1200)).is_empty());
        assert!(plan(&wm, &exited, &mut trackers, &ctx(1399)).is_empty());
        assert_eq!(plan(&wm, &exited, &mut trackers, &ctx(1400)).len(), 1);
        trackers.get_mut(&id).unwrap().started(1400, None);
        // Third: crash loop, never restarted here again.
        assert!(plan(&wm, &exited, &mut trackers, &ctx(1500)).is_empty());
        let t = &trackers[&id];
        assert!(t.crash_loop);
        assert_eq!(t.restarts, 2);
        assert!(t.message.contains("exited with code 1"), "{}", t.message);
        assert!(plan(&wm, &exited, &mut trackers, &ctx(100_000)).is_empty());
    }

    fn arb_desired() -> impl Strategy<Value = DesiredState> {
        prop_oneof![
            3 => Just(DesiredState::Running),
            1 => Just(DesiredState::Stopped),
            1 => Just(DesiredState::Deleted),
        ]
    }

    proptest! {
        /// Whatever the engine holds at first (any state, stale specs,
        /// strays), planning and applying converges in two passes to
        /// exactly the assignments, never with two actions or containers
        /// for one identity, and then plans nothing.
        #[test]
        fn converges_to_exactly_the_assignments(
            wants in proptest::collection::btree_map(0u32..12, (arb_desired(), 0u64..2, prop_oneof![Just(32u64), Just(64)]), 0..10),
            present in proptest::collection::btree_map(0u32..12, (0u8..4, 0u64..3, prop_oneof![Just(32u64), Just(64)]), 0..10),
        ) {
            let w: BTreeMap<_, _> = wants
                .iter()
                .map(|(i, (d, g, m))| sized(*i, *d, "run", *g, *m))
                .collect();
            let mut engine: BTreeMap<InstanceId, ContainerStatus> = present
                .iter()
                .map(|(i, (state, g, m))| {
                    let (id, w) = sized(*i, DesiredState::Running, "run", *g, *m);
                    let st = [RuntimeState::Running, RuntimeState::Exited, RuntimeState::Created, RuntimeState::Dead][*state as usize];
                    let mut s = status_of(w.spec.as_ref().unwrap(), st);
                    if st == RuntimeState::Exited { s.exit_code = Some(0); }
                    (id, s)
                })
                .collect();
            let mut limits: BTreeMap<InstanceId, u64> = present
                .iter()
                .map(|(i, (_, _, m))| (sized(*i, DesiredState::Running, "run", 0, *m).0, *m * MIB))
                .collect();
            let mut trackers = Trackers::new();
            for round in 0..3u64 {
                let now = 1_000_000 + round * 10_000;
                let actions = plan(&w, &engine, &mut trackers, &ctx(now));
                let ids: BTreeSet<_> = actions.iter().map(|a| a.id().clone()).collect();
                prop_assert_eq!(ids.len(), actions.len(), "one action per identity");
                if round == 2 {
                    prop_assert!(actions.is_empty(), "converged, yet planned {:?}", actions);
                }
                for a in &actions {
                    // A size change alone never costs the container.
                    if let (Action::Recreate { .. }, Some(s)) = (a, engine.get(a.id())) {
                        let want = &w[a.id()];
                        let only_size = s.shape_hash() == Some(want.shape.as_str())
                            && generation_of(s) == want.generation
                            && !matches!(s.state, RuntimeState::Dead);
                        prop_assert!(!only_size, "recreated {} for a size change", a.id());
                    }
                }
                apply(&mut engine, &mut limits, &mut trackers, &actions, now);
            }
            for (id, want) in &w {
                let have = engine.get(id);
                match want.desired {
                    DesiredState::Deleted => prop_assert!(have.is_none()),
                    DesiredState::Running => {
                        let s = have.expect("running one exists");
                        prop_assert!(s.state.is_running());
                        let spec = want.spec.as_ref().unwrap();
                        prop_assert_eq!(s.shape_hash(), Some(want.shape.as_str()));
                        prop_assert_eq!(limits.get(id).copied(), Some(spec.resources.memory_bytes));
                        prop_assert_eq!(s.labels.get(labels::HOST).map(String::as_str), Some(HOST));
                    }
                    DesiredState::Stopped => prop_assert!(have.is_none_or(|s| !s.state.is_running())),
                }
            }
            for id in engine.keys() {
                prop_assert!(w.contains_key(id), "{} has no assignment but was kept", id);
            }
        }
    }
}
