//! The wire between the server and its agents (`/api/v1/agents/…`).
//!
//! An agent registers its host, then loops: heartbeat (every
//! `heartbeat_interval_ms`, carrying what its engine runs) and long-poll its
//! work orders. A work order ([`Assignment`]) is self-contained: the agent
//! needs no other read to create the container. The agent makes its engine
//! hold exactly its assignments; anything else jdos-labelled on the host is
//! destroyed (fencing), and it stops every container by itself when it has
//! not reached the server for `fence_after_ms`, before the server declares
//! the host down and moves them.

use serde::{Deserialize, Serialize};

use crate::api::RegisterHost;
use crate::group::ContainerTemplate;
use crate::{Container, ContainerPhase, Host, HostState, InstanceId, Network, UnixMillis};

/// One container a host must run (or stop, or remove): the value at
/// [`crate::keys::assignment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The container record: identity, image, resources, host, host epoch,
    /// IP and network, and `desired` (running, stopped, or deleted: remove
    /// it and report it gone).
    pub container: Container,
    /// The group's template: command, env, ports, isolation, storage,
    /// health check, stop grace.
    pub template: ContainerTemplate,
    /// The network of `container.ip`, so the agent can realize it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Bumped to make the agent recreate a container whose spec did not
    /// change (rolling restart).
    #[serde(default)]
    pub generation: u64,
    /// Commit the running container to this image reference (`repo:tag`,
    /// snapshot scale-out). The agent commits once per reference and
    /// reports the outcome in [`ContainerReport::snapshot`] while the order
    /// stands; the server removes the order once it has the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl Assignment {
    /// The identity it is for.
    pub fn id(&self) -> &InstanceId {
        &self.container.id
    }
}

/// `POST /api/v1/agents/register`, authorized by the join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRegister {
    /// The host as the agent sees it (capacity from /proc and its flags).
    pub host: RegisterHost,
    /// Agent version.
    #[serde(default)]
    pub version: String,
}

/// The answer to a registration: the host record and the timings to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSession {
    /// The host as the server holds it (state, epoch, cordon).
    pub host: Host,
    /// A bearer token for this host's agent endpoints only.
    pub token: String,
    /// Send a heartbeat this often.
    pub heartbeat_interval_ms: u64,
    /// The server marks the host suspect after this long without one.
    pub suspect_after_ms: u64,
    /// The server marks it down (and moves its containers) after this long.
    pub down_after_ms: u64,
    /// The agent stops all its containers itself after this long without
    /// reaching the server (less than `down_after_ms`).
    pub fence_after_ms: u64,
}

/// What the agent last saw of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerReport {
    /// Identity.
    pub id: InstanceId,
    /// Phase (`running`, `unhealthy`, `failed` …).
    pub phase: ContainerPhase,
    /// The container does not exist on the host (after a delete, or never
    /// created).
    #[serde(default)]
    pub gone: bool,
    /// Restarts done by the agent.
    #[serde(default)]
    pub restarts: u32,
    /// The restart back-off gave up: move it elsewhere.
    #[serde(default)]
    pub crash_loop: bool,
    /// The epoch label of the running container.
    #[serde(default)]
    pub epoch: u64,
    /// The assignment generation it was made from.
    #[serde(default)]
    pub generation: u64,
    /// Why it is not running, or the health check's last failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The outcome of the assignment's snapshot order, once carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotReport>,
}

/// What came of a snapshot order: the value at [`crate::keys::snapshot`]
/// once the server has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// The image reference committed to.
    pub reference: String,
    /// The engine's image id (empty on failure).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Why the commit failed (empty on success).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `POST /api/v1/agents/{host}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The epoch the agent runs under.
    pub epoch: u64,
    /// Reports that changed since the last acknowledged heartbeat (all of
    /// them when `full` is set).
    #[serde(default)]
    pub reports: Vec<ContainerReport>,
    /// `reports` covers every assignment (first heartbeat, or on request).
    #[serde(default)]
    pub full: bool,
    /// Agent clock, for skew diagnosis.
    #[serde(default)]
    pub sent_at_ms: UnixMillis,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The host's state as the server sees it.
    pub state: HostState,
    /// The host's current epoch: an agent with an older one was fenced and
    /// must reconcile against fresh assignments before running anything.
    pub epoch: u64,
    /// Revision of the host's assignments; a newer one than the agent holds
    /// means a fetch is due.
    pub assignments_revision: u64,
    /// Ask the agent to send a full report next time.
    #[serde(default)]
    pub want_full: bool,
}

/// `GET /api/v1/agents/{host}/assignments?after=REV&wait_ms=N`: answers at
/// once when the host's assignments changed after `after`, else when they
/// change or `wait_ms` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentList {
    /// Store revision the list was read at; pass back as `after`.
    pub revision: u64,
    /// The host's epoch.
    pub epoch: u64,
    /// Every assignment of the host, but those listed in `kept`.
    pub items: Vec<Assignment>,
    /// Asked with `known`: the assignments unchanged since that revision,
    /// by identity only (the agent keeps the copy it has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<InstanceId>,
}
