//! What can go wrong talking to a jdos server.

use jdos_types::ApiError;
use reqwest::StatusCode;

/// An error from a [`crate::Client`] call. Each variant's text says what
/// failed and what to do, so a CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status and body.
    #[error("{}", render_api_error(error))]
    Api {
        /// HTTP status code.
        status: u16,
        /// The server's error body (`code`, `message`, `field`, `details`).
        error: ApiError,
    },
    /// No TCP connection could be made.
    #[error("cannot reach the jdos server at {addr} ({message}): is the server running? start one with `jdos dev`, or pass --addr / set JDOS_ADDR")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why, e.g. `connection refused`.
        message: String,
    },
    /// The server did not answer in time.
    #[error("the jdos server at {addr} did not answer in time: check its logs or try again")]
    Timeout {
        /// The address tried.
        addr: String,
    },
    /// The answer was not what this client understands (a version mismatch
    /// between client and server, usually).
    #[error("cannot decode the server's answer to {what}: {message} (are the client and server the same version?)")]
    Decode {
        /// Which route.
        what: String,
        /// Decoder message.
        message: String,
    },
    /// The address given is not usable.
    #[error("invalid server address {addr:?}: {reason} (expected host:port or http://host:port)")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other transport failure (connection reset mid-answer, …).
    #[error("request to the jdos server at {addr} failed: {message}")]
    Http {
        /// The address tried.
        addr: String,
        /// What failed.
        message: String,
    },
}

impl ClientError {
    /// The API error body, when the server answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a `404 not_found` answer.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// `<message> (field: x)`, plus a hint for auth failures, which are the ones
/// a person most often has to act on outside the command line they typed.
pub fn render_api_error(e: &ApiError) -> String {
    let mut s = e.message.clone();
    if s.is_empty() {
        s = e.code.clone();
    }
    // Validation errors list every field; the message names the first and
    // says "(and N more)": name the others instead.
    let more: Vec<String> = e
        .details
        .iter()
        .filter(|d| Some(&d.field) != e.field.as_ref())
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect();
    if !more.is_empty() {
        if let Some(i) = s.rfind(" (and ") {
            if s.ends_with(" more)") {
                s.truncate(i);
            }
        }
    }
    if let Some(field) = &e.field {
        s.push_str(&format!(" (field: {field})"));
    }
    if !more.is_empty() {
        s.push_str(&format!("; also {}", more.join("; ")));
    }
    let says_what_to_do = s.contains(" ask ") || s.contains("--token");
    match e.code.as_str() {
        "unauthorized" if !says_what_to_do => s.push_str(
            " — pass a valid token with --token / JDOS_TOKEN or run `jdos login --addr ADDR --token TOKEN`",
        ),
        "forbidden" if !says_what_to_do => {
            s.push_str(" — this token's role does not allow it; ask an admin")
        }
        _ => {}
    }
    s
}

/// Builds an [`ApiError`] from an error answer. The server always sends one as
/// JSON; anything else (a proxy page, a framework rejection) is summarized as
/// plain text, never dumped raw.
pub(crate) fn api_error_from_body(status: StatusCode, body: &[u8]) -> ApiError {
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        return e;
    }
    let code = match status.as_u16() {
        400 | 422 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        s if s >= 500 => "internal",
        _ => "error",
    };
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() || text.starts_with('{') || text.starts_with('<') {
        format!(
            "the server answered {} {}",
            status.as_u16(),
            reason.to_lowercase()
        )
    } else {
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        format!("{} (HTTP {})", first, status.as_u16())
    };
    ApiError::new(code, message)
}

/// The innermost cause of a transport error, e.g. `Connection refused (os error 111)`.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::FieldError;

    #[test]
    fn api_errors_render_message_and_field() {
        let e = ApiError::new("validation_failed", "name: must not be empty (and 1 more)")
            .with_field("name");
        assert_eq!(
            render_api_error(&e),
            "name: must not be empty (and 1 more) (field: name)"
        );
        let mut v = e.clone();
        v.details = vec![
            FieldError {
                field: "name".into(),
                code: "required".into(),
                message: "must not be empty".into(),
            },
            FieldError {
                field: "department".into(),
                code: "required".into(),
                message: "a developer token needs a department".into(),
            },
        ];
        assert_eq!(
            render_api_error(&v),
            "name: must not be empty (field: name); also department: a developer token needs a department"
        );
        let f = ApiError::new("forbidden", "developers cannot cordon hosts");
        assert!(render_api_error(&f).contains("ask an admin"));
        let f = ApiError::new("forbidden", "no: ask an operator");
        assert_eq!(render_api_error(&f), "no: ask an operator");
    }

    #[test]
    fn non_json_bodies_become_short_messages() {
        let e = api_error_from_body(StatusCode::NOT_FOUND, b"");
        assert_eq!(e.code, "not_found");
        assert_eq!(e.message, "the server answered 404 not found");
        let e = api_error_from_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            b"Failed to deserialize the JSON body into the target type: missing field `role`",
        );
        assert_eq!(e.code, "bad_request");
        assert!(e.message.contains("missing field `role`"));
        let raw = br#"{"unexpected":"shape"}"#;
        let e = api_error_from_body(StatusCode::INTERNAL_SERVER_ERROR, raw);
        assert!(!e.message.contains("unexpected"), "no raw JSON dump");
    }
}
