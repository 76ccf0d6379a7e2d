//! Extractors that answer malformed input with a JSON [`ApiError`](jdos_types::ApiError) body
//! instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// A JSON request body; malformed JSON or a wrong shape is a 400 naming what is wrong.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> HttpError {
    let field = match &r {
        JsonRejection::JsonDataError(_) => field_in(&r.body_text()),
        _ => None,
    };
    let message = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON: send the header content-type: application/json".to_string()
        }
        JsonRejection::JsonSyntaxError(_) => format!("malformed JSON body: {}", r.body_text()),
        JsonRejection::JsonDataError(_) => {
            format!(
                "the JSON body does not have the expected shape: {}",
                r.body_text()
            )
        }
        _ => format!("cannot read the request body: {}", r.body_text()),
    };
    with_field(HttpError::bad_request(message), field)
}

fn with_field(e: HttpError, field: Option<String>) -> HttpError {
    match field {
        Some(f) => e.with_field(f),
        None => e,
    }
}

/// The field a deserialization error is about, so that the answer names it
/// in `field` like a validation error does. axum's text is
/// `<what failed>: [<path>: ]<serde message>`, where the path (`capacity`,
/// `reserved[0].start`) is left out at the top level and a missing field is
/// named in the message instead (``missing field `name` ``).
fn field_in(text: &str) -> Option<String> {
    let detail = text.split_once(": ").map_or(text, |(_, d)| d);
    // A path starts with a field name: `[0]` (a body sent as an array where
    // an object was expected) names no field.
    let is_path = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
    };
    let (path, rest) = match detail.split_once(": ") {
        Some((p, rest)) if is_path(p) => (Some(p), rest),
        _ => (None, detail),
    };
    let missing = rest
        .strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f);
    match (path, missing) {
        (Some(p), Some(m)) => Some(format!("{p}.{m}")),
        (Some(p), None) => Some(p.to_string()),
        (None, Some(m)) => Some(m.to_string()),
        (None, None) => None,
    }
}

/// A query string; a bad parameter is a 400 naming it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> HttpError {
    let text = r.body_text();
    with_field(
        HttpError::bad_request(format!("bad query string: {text}")),
        field_in(&text),
    )
}

/// Path parameters; a bad one is a 400.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> HttpError {
    HttpError::bad_request(format!("bad path: {}", r.body_text()))
}

#[cfg(test)]
mod tests {
    use super::field_in;

    #[test]
    fn fields_are_read_from_deserialization_errors() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        let cases = [
            ("capacity: invalid type: integer `5`, expected struct Resources at line 1 column 16", Some("capacity")),
            ("role: unknown variant `root`, expected one of `admin`, `ops`, `developer` at line 1 column 26", Some("role")),
            ("missing field `datacenter` at line 1 column 13", Some("datacenter")),
            ("capacity: missing field `cpu_millis` at line 1 column 20", Some("capacity.cpu_millis")),
            ("reserved[0].start: invalid IPv4 address syntax at line 1 column 40", Some("reserved[0].start")),
            ("invalid type: sequence, expected struct App at line 1 column 0", None),
            ("[0]: invalid type: integer `1`, expected a string at line 1 column 2", None),
        ];
        for (detail, want) in cases {
            assert_eq!(
                field_in(&format!("{prefix}{detail}")).as_deref(),
                want,
                "{detail}"
            );
        }
        assert_eq!(
            field_in("Failed to deserialize query string: since_ms: invalid digit found in string")
                .as_deref(),
            Some("since_ms")
        );
    }
}
