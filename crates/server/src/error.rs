//! Errors: [`HttpError`] is what a handler returns (always rendered as a JSON
//! [`ApiError`] body), [`ServerError`] is what starting the server returns.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jdos_store::StoreError;
use jdos_types::{ApiError, ValidationErrors};

/// An API error with its HTTP status. Every error the server answers with is
/// one of these, so every error body is a JSON [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {body}")]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: ApiError,
}

impl HttpError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            body: ApiError::new(code, message),
        }
    }

    /// 400 `validation_failed` about one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut v = ValidationErrors::new();
        v.add(field, "invalid", message);
        v.into()
    }

    /// 400 `bad_request` (malformed JSON, bad query string…).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} {name:?} not found"),
        )
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Sets the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }
}

impl From<ValidationErrors> for HttpError {
    fn from(v: ValidationErrors) -> Self {
        HttpError {
            status: StatusCode::BAD_REQUEST,
            body: v.into(),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => HttpError::bad_request(m),
            StoreError::Closed => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is closed: the server is shutting down",
            ),
            other => HttpError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.body.code, message = %self.body.message, "request failed");
        }
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Errors of [`crate::start`].
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server running there? pick another --listen)")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The data directory could not be created or written.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The store could not be opened or used.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Seeding the dev topology or another startup write was refused.
    #[error("{0}")]
    Api(#[from] HttpError),
    /// The IPAM index could not be rebuilt from the store at start-up.
    #[error("ipam: {0}")]
    Ipam(#[from] jdos_ipam::IpamError),
    /// The metrics store could not be opened.
    #[error("metrics store {path}: {source}")]
    Tsdb {
        /// Its directory.
        path: std::path::PathBuf,
        /// Cause.
        source: jdos_monitor::TsdbError,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
}
