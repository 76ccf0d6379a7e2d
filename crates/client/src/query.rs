//! Query strings of the list routes.

use jdos_types::HostState;
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
    /// Only events at or after this time (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Only events with a sequence number greater than this (for tailing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `continue` token of the previous page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}
