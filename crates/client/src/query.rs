//! Query strings of the list routes.

use jdos_types::{ContainerPhase, EventResult, HostState};
use serde::Serialize;

/// Paging of a list route: `?limit=&continue=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListQuery {
    /// Page size (the server caps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// `GET /api/v1/hosts?datacenter=&state=&limit=&continue=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostQuery {
    /// Only hosts of this datacenter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Only hosts in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<HostState>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// `GET /api/v1/events?app=&object_kind=&object=&since_ms=&after_seq=&limit=&continue=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventQuery {
    /// Only events of this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only events on this kind of object (`host`, `app`, `token`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<String>,
    /// Only events on this object (name or id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Only events with this result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<EventResult>,
    /// Only this action (`app.apply`, `host.cordon` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only events at or after this time (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Only events with a sequence number greater than this (for tailing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Long-poll: when nothing matches yet, the server waits up to this
    /// many ms (at most 30000) for a match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// `GET /api/v1/groups?app=&env=&datacenter=&limit=&continue=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupQuery {
    /// Only groups of this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only this environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only this datacenter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// `GET /api/v1/containers?app=&env=&group=&host=&phase=&limit=&continue=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerQuery {
    /// Only containers of this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only this environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only containers on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only containers in this phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<ContainerPhase>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}
