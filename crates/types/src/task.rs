//! Tasks: durable units of work of the workflow engine, made of steps.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// State of a task or of one of its steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker (or for its app's mutex).
    #[default]
    Pending,
    /// A worker is executing it.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed after its retries.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl TaskState {
    /// True for succeeded, failed and cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// One step of a task's timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Step name (`allocate_ip`, `place`, `create`, `start`, `health`, `hooks` …).
    pub name: String,
    /// Its state.
    #[serde(default)]
    pub state: TaskState,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Started at.
    #[serde(default)]
    pub started_at_ms: UnixMillis,
    /// Finished at.
    #[serde(default)]
    pub finished_at_ms: UnixMillis,
    /// Last message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Progress of a long step: `done` of `total` units (containers, groups …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is counted (`containers`, `groups` …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub id: String,
    /// Operation: `deploy`, `scale`, `resize`, `migrate` …
    pub kind: String,
    /// App it works on: tasks of one app run one at a time.
    pub app: String,
    /// Who asked for it.
    pub actor: String,
    /// Operation parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// State.
    #[serde(default)]
    pub state: TaskState,
    /// Steps in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Department of the app (developer tokens see their department's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// What the task works on, e.g. `group shop/production/web`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// Scratch state steps persist between attempts and across restarts
    /// (what a step already did, so that re-running it does not repeat it).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// Progress of the current step, for progress bars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Worker running it (while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Not to be run before this time (retry back-off, waiting steps).
    #[serde(default)]
    pub not_before_ms: UnixMillis,
    /// A user asked to cancel it; the worker stops at the next step boundary.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Created at.
    #[serde(default)]
    pub created_at_ms: UnixMillis,
    /// Last changed at.
    #[serde(default)]
    pub updated_at_ms: UnixMillis,
}
