//! The one error type of every [`Driver`](crate::Driver) operation.

use jdos_types::ValidationErrors;

/// What went wrong in a driver operation. Messages are lowercase, say what
/// failed and, where there is one, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The spec was rejected before anything was created.
    #[error("invalid container spec: {0}")]
    InvalidSpec(ValidationErrors),

    /// The named object does not exist on this engine.
    #[error("{kind} {name:?} not found: {hint}")]
    NotFound {
        /// `container`, `network`, `image`, `volume`, `exec`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What to do about it.
        hint: String,
    },

    /// The operation clashes with something that exists (a container of the
    /// same name, a Docker network with another subnet, an address in use …).
    /// Nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The driver does not implement this optional operation.
    #[error("{operation} is not supported by the {driver} driver")]
    Unsupported {
        /// The driver's name (`docker`, `fake`).
        driver: &'static str,
        /// The operation (`exec`, `commit` …).
        operation: &'static str,
    },

    /// The container engine cannot be reached.
    #[error("container engine unavailable: {0}")]
    Unavailable(String),

    /// The engine answered with an error.
    #[error("engine error during {operation}: {message}")]
    Engine {
        /// The operation that failed.
        operation: &'static str,
        /// The engine's HTTP status, when it sent one.
        status: Option<u16>,
        /// The engine's message.
        message: String,
    },

    /// Preparing or removing a host path of a storage tier failed.
    #[error("storage: {0}")]
    Storage(String),

    /// The operation did not finish in time.
    #[error("{operation} timed out after {after_ms} ms")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// How long it was given.
        after_ms: u64,
    },
}

impl DriverError {
    /// A `NotFound` for a container named `name`.
    pub fn container_not_found(name: impl Into<String>) -> Self {
        DriverError::NotFound {
            kind: "container",
            name: name.into(),
            hint: "it was never created on this host or was destroyed; create it first".into(),
        }
    }

    /// A `NotFound` for a Docker network named `name`.
    pub fn network_not_found(name: impl Into<String>) -> Self {
        DriverError::NotFound {
            kind: "network",
            name: name.into(),
            hint: "realize the jdos network on this host first (Driver::ensure_network)".into(),
        }
    }

    /// True for [`DriverError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::NotFound { .. })
    }

    /// True for [`DriverError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, DriverError::Conflict(_))
    }

    /// True for [`DriverError::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, DriverError::Unsupported { .. })
    }

    /// True when retrying the same call later may succeed (the engine was
    /// unreachable, busy or slow), as opposed to a bad request.
    pub fn is_transient(&self) -> bool {
        match self {
            DriverError::Unavailable(_) | DriverError::Timeout { .. } => true,
            DriverError::Engine { status, .. } => status.is_none_or(|s| s >= 500),
            _ => false,
        }
    }
}

impl From<ValidationErrors> for DriverError {
    fn from(e: ValidationErrors) -> Self {
        DriverError::InvalidSpec(e)
    }
}
