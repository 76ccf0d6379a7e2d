//! Errors of the agent: talking to the control plane, and running.

use jdos_client::ClientError;
use jdos_runtime::DriverError;

/// A failed call to the control plane.
///
/// The split matters for fencing: [`ControlPlaneError::is_unreachable`]
/// errors mean the server may already consider this host dead, while a
/// refusal means it answered (and knows the host is alive, or wants it to
/// register again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlPlaneError {
    /// No connection could be made, or it broke mid-call.
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// The server did not answer in time.
    #[error("control plane did not answer within {after_ms} ms")]
    Timeout {
        /// How long the call was given.
        after_ms: u64,
    },
    /// The server does not know this host (or no longer accepts its agent
    /// token): register again.
    #[error("the server does not know host {host:?} or its agent token: {message}")]
    UnknownHost {
        /// The host name.
        host: String,
        /// The server's message.
        message: String,
    },
    /// The server refused the call (bad join token, invalid registration …).
    #[error("the server refused {operation} ({status} {code}): {message}")]
    Refused {
        /// Which call.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// The server's stable error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server answered something this agent does not understand.
    #[error("cannot understand the server's answer to {operation}: {message} (are the agent and server the same version?)")]
    Protocol {
        /// Which call.
        operation: &'static str,
        /// Decoder message.
        message: String,
    },
}

impl ControlPlaneError {
    /// True when the server was not reached (transport failure, timeout, or
    /// a 5xx that says it could not do its job): time spent in this state
    /// counts toward self-fencing.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ControlPlaneError::Unreachable(_) | ControlPlaneError::Timeout { .. } => true,
            ControlPlaneError::Refused { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True when the agent should register again.
    pub fn needs_register(&self) -> bool {
        matches!(self, ControlPlaneError::UnknownHost { .. })
    }

    /// Maps a client error of `operation` on behalf of `host`, whose call
    /// was given `timeout_ms`.
    pub fn from_client(
        operation: &'static str,
        host: &str,
        timeout_ms: u64,
        e: ClientError,
    ) -> Self {
        match e {
            ClientError::Api { status, error } => {
                if operation != "register" && (status == 404 || status == 401) {
                    ControlPlaneError::UnknownHost {
                        host: host.to_string(),
                        message: error.message,
                    }
                } else {
                    ControlPlaneError::Refused {
                        operation,
                        status,
                        code: error.code,
                        message: error.message,
                    }
                }
            }
            ClientError::Connect { addr, message } => {
                ControlPlaneError::Unreachable(format!("{addr}: {message}"))
            }
            ClientError::Http { addr, message } => {
                ControlPlaneError::Unreachable(format!("{addr}: {message}"))
            }
            ClientError::Timeout { .. } => ControlPlaneError::Timeout {
                after_ms: timeout_ms,
            },
            ClientError::Decode { message, .. } => {
                ControlPlaneError::Protocol { operation, message }
            }
            ClientError::InvalidAddress { addr, reason } => ControlPlaneError::Refused {
                operation,
                status: 0,
                code: "invalid_address".into(),
                message: format!("{addr}: {reason}"),
            },
        }
    }
}

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// Registration was refused (a wrong join token, a bad host record):
    /// retrying will not help.
    #[error("registration refused: {0}")]
    Register(ControlPlaneError),
    /// The driver failed in a way the agent cannot work around.
    #[error("driver: {0}")]
    Driver(#[from] DriverError),
}
