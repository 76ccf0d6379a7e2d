//! Request and response bodies of the HTTP API (`/api/v1/…`), shared by the
//! server and the client so that both agree on the wire format.

use serde::{Deserialize, Serialize};

use crate::topology::{HostAllocation, Labels};
use crate::{Container, Host, Resources, Role};

/// Every list endpoint answers with a page of items and, when more remain, a
/// `continue` token to pass back as `?continue=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Pass back as `?continue=` for the next page; absent on the last page.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// `POST /api/v1/hosts`: register (or re-register) a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterHost {
    /// Host name.
    pub name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Switch.
    pub switch: String,
    /// Rack.
    pub rack: String,
    /// Capacity.
    pub capacity: Resources,
    /// Resource zone (default `general`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_zone: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Driver of its agent (`docker`, `fake`, `simulated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// `PATCH /api/v1/hosts/{name}`: change what an operator may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateHost {
    /// New capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Resources>,
    /// New resource zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_zone: Option<String>,
    /// Labels replacing the current ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `GET /api/v1/hosts/{name}`: a host with what runs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDetail {
    /// The host.
    pub host: Host,
    /// Its allocation.
    pub allocation: HostAllocation,
    /// Containers placed on it.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// `POST /api/v1/tokens`: create a token (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateToken {
    /// Name shown as the actor of events.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department (required for developers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// Answer to [`CreateToken`]: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Token id.
    pub id: String,
    /// The bearer string `<id>.<secret>`.
    pub token: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// `GET /api/v1/groups/{app}/{env}/{group}`: a group with its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDetail {
    /// The group.
    pub group: crate::Group,
    /// Its containers (including those being removed), by index.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// `GET /api/v1/events/head`: where the event trail ends now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHead {
    /// The newest event's sequence number (0 when there is none).
    pub seq: u64,
}

/// Body of `POST /api/v1/groups/{app}/{env}/{group}/snapshot-scale`: commit
/// a running container of the group to an image and scale out with clones
/// of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotScaleRequest {
    /// Target replicas (more than the group has).
    pub replicas: u32,
    /// Index of the container to snapshot (default: the lowest-indexed
    /// running one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_index: Option<u32>,
    /// Place clones on any host, not only the source's: every engine must
    /// have the image (one shared engine, or pushed to a registry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_host: bool,
    /// Seconds to wait for the commit and for the clones (default 300 each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}
