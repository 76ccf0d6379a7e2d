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
    HttpError::bad_request(message)
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
    HttpError::bad_request(format!("bad query string: {}", r.body_text()))
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
