//! Failure handling: the mass-failure brake, crash-loop bookkeeping and host
//! drains, as stored under [`crate::keys::FAILOVER`] and shown by
//! `jdos failover status` and `jdos drain host`.

use serde::{Deserialize, Serialize};

use crate::{InstanceId, UnixMillis};

/// A datacenter where too many hosts failed at once: the failover controller
/// stops evacuating there (moving every container of a lost rack or power
/// feed onto the survivors would overload them, and a network partition
/// looks the same from the server) until an operator resumes it or enough
/// hosts come back. Key: [`crate::keys::failover_brake`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brake {
    /// The datacenter.
    pub datacenter: String,
    /// When the brake engaged.
    pub engaged_at_ms: UnixMillis,
    /// Hosts of the datacenter the controller judges (those with an agent).
    pub hosts_total: u32,
    /// Hosts suspect or down when it engaged.
    pub hosts_failing: Vec<String>,
    /// Hosts marked down while braked and not fenced (their epoch kept,
    /// their containers left in place as `lost`): fenced and evacuated when
    /// the brake is released.
    #[serde(default)]
    pub held: Vec<String>,
    /// Released by an operator: evacuation goes on although the share of
    /// failing hosts is still above the limit. The record is removed when
    /// the share falls back under it.
    #[serde(default)]
    pub released: bool,
    /// Who released it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    /// When it was released.
    #[serde(default)]
    pub released_at_ms: UnixMillis,
}

impl Brake {
    /// True while it holds evacuation back.
    pub fn engaged(&self) -> bool {
        !self.released
    }
}

/// `GET /api/v1/failover`: the controller's settings and active brakes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// Heartbeats missed this long make a host suspect.
    pub suspect_after_ms: u64,
    /// And this long make it down: its containers move.
    pub down_after_ms: u64,
    /// Share of a datacenter's hosts failing at once above which the brake
    /// engages.
    pub brake_fraction: f64,
    /// Fewest failing hosts that can engage the brake.
    pub brake_min_hosts: u32,
    /// Hosts a crash-looping container is tried on before it is given up.
    pub crash_loop_max_hosts: u32,
    /// Brakes, engaged or released.
    pub brakes: Vec<Brake>,
    /// Containers currently moved for crash-looping.
    pub crash_loops: Vec<CrashLoop>,
    /// The server whose controller acts (the holder of its leader lock);
    /// `None` while no server leads.
    #[serde(default)]
    pub leader: Option<String>,
}

/// `POST /api/v1/failover/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeFailover {
    /// The datacenter whose brake to release.
    pub datacenter: String,
}

/// The hosts a crash-looping container was tried on. Key:
/// [`crate::keys::failover_crash_loop`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoop {
    /// The container.
    pub id: InstanceId,
    /// Hosts it crash-looped on, oldest first.
    pub hosts: Vec<String>,
    /// Given up: it crash-looped on too many hosts and stays failed.
    #[serde(default)]
    pub given_up: bool,
    /// Last change.
    pub updated_at_ms: UnixMillis,
}

/// Where a drain is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    /// Moving containers.
    #[default]
    Running,
    /// Every container moved; the host stays cordoned.
    Done,
    /// Stopped with containers left on the host (see `message`).
    Failed,
}

impl DrainState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainState::Running => "running",
            DrainState::Done => "done",
            DrainState::Failed => "failed",
        }
    }

    /// True once it will not change any more.
    pub fn is_terminal(self) -> bool {
        self != DrainState::Running
    }
}

/// A host drain: progress of moving every container off a cordoned host,
/// readable while it runs. Key: [`crate::keys::failover_drain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The host.
    pub host: String,
    /// Who asked.
    pub actor: String,
    /// State.
    pub state: DrainState,
    /// Containers to move.
    pub total: u32,
    /// Containers moved (running elsewhere, same IP).
    pub moved: u32,
    /// Containers that could not be moved.
    pub failed: u32,
    /// Containers moved per batch.
    pub batch: u32,
    /// Last step, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Started at.
    pub started_at_ms: UnixMillis,
    /// Finished at (0 while running).
    #[serde(default)]
    pub finished_at_ms: UnixMillis,
}

/// `POST /api/v1/hosts/{name}/drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    /// Containers moved at once (default 4, at most 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}
