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
    /// Created at.
    #[serde(default)]
    pub created_at_ms: UnixMillis,
    /// Last changed at.
    #[serde(default)]
    pub updated_at_ms: UnixMillis,
}
