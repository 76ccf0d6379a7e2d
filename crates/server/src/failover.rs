//! Failure handling: the host health controller, the mass-failure brake,
//! crash-loop migration and host drains.
//!
//! The [`Controller`] is a level-triggered reconciler run every
//! [`FailoverConfig::tick`]: it compares each agent-backed host's last
//! heartbeat (kept in memory by the agent endpoints) with the timings.
//!
//! - ready → **suspect** after `suspect_after`: not schedulable, event.
//! - → **down** after `down_after`: the host's fencing **epoch** is bumped in
//!   the same write, then every live container on it is re-placed by the
//!   scheduler on other hosts with the group's spread and **the same IP**
//!   (the platform's `relocate`), one event per host and per group.
//! - suspect/down → **ready** when it heartbeats again. A host that was down
//!   comes back under its new epoch: its agent learns it from the heartbeat
//!   reply, reconciles to its (now emptied) assignments and destroys the
//!   moved containers; reports it sends under the old epoch are ignored, so
//!   it cannot bring a moved container back.
//! - **Brake**: when more than [`judge::BrakePolicy::fraction`] of a
//!   datacenter's hosts (and at least `min_hosts`) are suspect or down at
//!   once, nothing there is evacuated: a [`Brake`] record is written under
//!   `keys::FAILOVER`, a failure event `failover.brake` raised, and the hosts
//!   that go down are *held* (epoch kept, containers left in place as
//!   `lost`) until an operator resumes (`jdos failover resume`) or enough
//!   hosts come back.
//! - **Crash loops**: a container its agent reports as crash-looping is
//!   moved to another host; after `crash_loop_max_hosts` hosts it is given up
//!   (phase failed, failure event).
//!
//! With several servers on one store only the holder of the `failover`
//! leader lock runs it (`crate::leader`: one judge of liveness, or two
//! servers would bump epochs and evacuate twice). Liveness is still in
//! memory, so the leader must also be the server the agents heartbeat to;
//! sharing the table is not built.

pub mod drain;
pub mod judge;

mod brake;
mod controller;
mod crash;
mod store;
#[cfg(test)]
mod tests;
mod wiring;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use jdos_types::failover::Brake;
use jdos_types::InstanceId;

pub use brake::resume;
pub use controller::{Controller, Heartbeats, Mover, TickReport};
pub use judge::{BrakePolicy, HealthTimings, Verdict};
pub use wiring::{controller, start};

/// Settings of the failover controller.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    /// Suspect and down intervals.
    pub timings: HealthTimings,
    /// The mass-failure brake.
    pub brake: BrakePolicy,
    /// How often liveness is judged.
    pub tick: Duration,
    /// Hosts a crash-looping container is tried on before it is given up.
    pub crash_loop_max_hosts: u32,
    /// Groups relocated at once during an evacuation.
    pub parallelism: usize,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            timings: HealthTimings::default(),
            brake: BrakePolicy::default(),
            tick: Duration::from_millis(250),
            crash_loop_max_hosts: 3,
            parallelism: 8,
        }
    }
}

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct FailoverMetrics {
    suspect: AtomicU64,
    down: AtomicU64,
    recovered: AtomicU64,
    evacuated: AtomicU64,
    unplaced: AtomicU64,
    brakes: AtomicU64,
    crash_loop_moves: AtomicU64,
    crash_loop_given_up: AtomicU64,
    last_evacuation_ms: AtomicU64,
}

impl FailoverMetrics {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Renders them in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP jdos_failover_host_transitions_total Host state changes made by the failover controller.\n# TYPE jdos_failover_host_transitions_total counter\n");
        for (to, c) in [
            ("suspect", &self.suspect),
            ("down", &self.down),
            ("ready", &self.recovered),
        ] {
            let _ = writeln!(
                out,
                "jdos_failover_host_transitions_total{{to=\"{to}\"}} {}",
                get(c)
            );
        }
        let counters = [
            (
                "jdos_failover_evacuated_containers_total",
                "Containers moved off down hosts, keeping their IPs.",
                &self.evacuated,
            ),
            (
                "jdos_failover_unplaced_containers_total",
                "Evacuation attempts that found no host for a container.",
                &self.unplaced,
            ),
            (
                "jdos_failover_brakes_total",
                "Mass-failure brakes engaged.",
                &self.brakes,
            ),
            (
                "jdos_failover_crash_loop_moves_total",
                "Crash-looping containers moved to another host.",
                &self.crash_loop_moves,
            ),
            (
                "jdos_failover_crash_loop_given_up_total",
                "Containers given up after crash-looping on too many hosts.",
                &self.crash_loop_given_up,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jdos_failover_last_evacuation_seconds Time from a host's down mark to its last container re-placed, for the latest evacuation.\n# TYPE jdos_failover_last_evacuation_seconds gauge\njdos_failover_last_evacuation_seconds {}",
            get(&self.last_evacuation_ms) as f64 / 1000.0
        );
    }
}

/// State the controller shares with the API: counters and the crash-loop
/// inbox the agent endpoints feed.
#[derive(Debug, Default)]
pub struct FailoverShared {
    /// Counters.
    pub metrics: FailoverMetrics,
    config: RwLock<FailoverConfig>,
    crash_loops: Mutex<Vec<(String, u64, InstanceId)>>,
}

impl FailoverShared {
    /// The controller's settings (as shown by `jdos failover status`).
    pub fn config(&self) -> FailoverConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the settings the controller runs with.
    pub fn set_config(&self, c: FailoverConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// Notes that `host`'s agent, running the copy of `id` made under
    /// `epoch` (the report's epoch label), reports it crash-looping (its
    /// restart back-off gave up). The controller moves it on its next tick;
    /// a report about a copy that is not the container's current one is
    /// ignored there.
    pub fn crash_loop(&self, host: &str, epoch: u64, id: &InstanceId) {
        let mut q = self.crash_loops.lock().unwrap_or_else(|p| p.into_inner());
        if !q.iter().any(|(h, _, i)| h == host && i == id) {
            q.push((host.to_string(), epoch, id.clone()));
        }
    }

    fn take_crash_loops(&self) -> Vec<(String, u64, InstanceId)> {
        let mut q = self.crash_loops.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashSet::new();
        std::mem::take(&mut *q)
            .into_iter()
            .filter(|(_, _, id)| seen.insert(id.clone()))
            .collect()
    }
}

/// Brakes as stored, for `jdos failover status`.
pub async fn brakes(st: &crate::AppState) -> Result<Vec<Brake>, crate::HttpError> {
    Ok(crate::kv::list_all(st.store(), jdos_types::keys::FAILOVER_BRAKES).await?)
}
