//! Errors of the engine's API.

use std::time::Duration;

use jdos_store::StoreError;

/// What went wrong in an [`crate::Engine`] call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No [`crate::Operation`] of this kind is registered on this engine.
    #[error("unknown task kind {0:?}: no operation of that kind is registered")]
    UnknownKind(String),
    /// No such task.
    #[error("task {0} not found")]
    NotFound(String),
    /// A request field is not acceptable.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`crate::Engine::wait`] gave up before the task finished.
    #[error("task {id} did not finish within {timeout:?}")]
    Timeout {
        /// Task id.
        id: String,
        /// How long it waited.
        timeout: Duration,
    },
}

impl WorkflowError {
    /// A stable machine-readable code (for API errors).
    pub fn code(&self) -> &'static str {
        match self {
            WorkflowError::Store(_) => "store_error",
            WorkflowError::UnknownKind(_) => "unknown_task_kind",
            WorkflowError::NotFound(_) => "not_found",
            WorkflowError::Invalid { .. } => "invalid",
            WorkflowError::Timeout { .. } => "timeout",
        }
    }

    /// The offending request field, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            WorkflowError::Invalid { field, .. } => Some(field),
            WorkflowError::UnknownKind(_) => Some("kind"),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        WorkflowError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
