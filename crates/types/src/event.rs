//! Events: every cluster action, recorded and queryable.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// Outcome of the action an event records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventResult {
    /// It worked.
    #[default]
    Success,
    /// It failed (alertable).
    Failure,
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number, increasing (assigned by the recorder).
    pub seq: u64,
    /// When it happened.
    pub time_ms: UnixMillis,
    /// Who did it: a token name, `system`, or `agent:<host>`.
    pub actor: String,
    /// Verb, e.g. `host.register`, `host.cordon`, `group.scale`.
    pub action: String,
    /// Kind of object, e.g. `host`, `app`, `group`, `container`, `task`.
    pub object_kind: String,
    /// Object name or id.
    pub object: String,
    /// App it concerns, for filtering and scoping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Department it concerns, for scoping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Outcome.
    pub result: EventResult,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
