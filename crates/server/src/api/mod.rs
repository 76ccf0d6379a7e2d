//! The HTTP API: one file per resource, each exposing `routes()`, gathered
//! by [`routes`] into the one table that builds both the router and the
//! OpenAPI document.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Extension, Router};
use serde_json::Value;

use crate::error::HttpError;
use crate::openapi::{self, Documented};
use crate::state::AppState;

pub mod agents;
pub mod alerting;
pub mod apply;
pub mod apps;
pub mod autoscaling;
pub mod containers;
pub mod events;
pub mod failover;
pub mod groups;
pub mod hosts;
pub mod list;
pub mod meta;
pub mod monitoring;
pub mod networks;
pub mod operations;
pub mod schemas;
pub mod scope;
pub mod tasks;
pub mod tokens;
pub mod topology;

/// Every route of the server.
///
/// To add a resource (e.g. the IPAM engineer's `networks.rs`): write
/// `src/api/<resource>.rs` with a `pub fn routes() -> Vec<Route>` (see
/// `hosts.rs`: handlers take `State<AppState>`, the [`Caller`](crate::auth::Caller)
/// extractor, [`ApiJson`](crate::extract::ApiJson) / `ApiPath` / `ApiQuery`,
/// return `Result<_, HttpError>`, and write through
/// [`AppState::mutate`](crate::state::AppState::mutate) inside
/// [`AppState::audited`](crate::state::AppState::audited) so that the event is
/// recorded), implement [`Documented`] for its bodies (samples in the same
/// file are fine), declare it with `pub mod` above, and replace the
/// commented `networks` line below with one `.chain(<resource>::routes())`.
/// The router and `/api/v1/openapi.json` both come from this list.
pub fn routes() -> Vec<Route> {
    meta::routes()
        .into_iter()
        .chain(tokens::routes())
        .chain(hosts::routes())
        .chain(topology::routes())
        .chain(apps::routes())
        .chain(events::routes())
        .chain(networks::routes())
        .chain(agents::routes())
        .chain(alerting::routes())
        .chain(tasks::routes())
        .chain(autoscaling::routes())
        .chain(operations::routes())
        .chain(apply::routes())
        .chain(groups::routes())
        .chain(containers::routes())
        .chain(failover::routes())
        .chain(monitoring::routes())
        .collect()
}

/// A documented body.
#[derive(Debug, Clone)]
pub enum Body {
    /// A JSON body of a [`Documented`] type.
    Json {
        /// Schema name.
        name: String,
        /// Builds the schema.
        schema: fn() -> Value,
    },
    /// Plain text.
    Text,
    /// Free-form JSON.
    AnyJson,
}

impl Body {
    /// The body of a documented type.
    pub fn json<T: Documented>() -> Body {
        Body::Json {
            name: T::schema_name(),
            schema: openapi::schema_of::<T>,
        }
    }
}

/// A documented query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// JSON schema type (`string`, `integer`).
    pub ty: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// The pagination parameters every list takes.
pub const PAGE_PARAMS: [Param; 2] = [
    Param {
        name: "limit",
        ty: "integer",
        description: "page size (default 500, at most 5000)",
    },
    Param {
        name: "continue",
        ty: "string",
        description: "the `continue` of the previous page",
    },
];

/// One route: method, path, documentation and handler.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template (`/api/v1/hosts/{name}`).
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// OpenAPI tag (the resource).
    pub tag: &'static str,
    /// Needs a bearer token.
    pub auth: bool,
    /// Query parameters.
    pub query: &'static [Param],
    /// Request body.
    pub request: Option<Body>,
    /// Success response body.
    pub response: Option<Body>,
    /// Success status.
    pub status: u16,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Route {
    /// A route needing a bearer token, answering 200 with no documented body yet.
    pub fn new<H, T>(method: Method, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("standard method");
        Route {
            method,
            path,
            summary: "",
            tag: "",
            auth: true,
            query: &[],
            request: None,
            response: None,
            status: 200,
            handler: axum::routing::on(filter, handler),
        }
    }

    /// Sets the summary and tag.
    pub fn doc(mut self, tag: &'static str, summary: &'static str) -> Self {
        self.tag = tag;
        self.summary = summary;
        self
    }

    /// Documents the request body.
    pub fn accepts<T: Documented>(mut self) -> Self {
        self.request = Some(Body::json::<T>());
        self
    }

    /// Documents the response body.
    pub fn returns<T: Documented>(mut self) -> Self {
        self.response = Some(Body::json::<T>());
        self
    }

    /// Documents a non-typed response body.
    pub fn returns_body(mut self, b: Body) -> Self {
        self.response = Some(b);
        self
    }

    /// Documents the query parameters.
    pub fn query(mut self, q: &'static [Param]) -> Self {
        self.query = q;
        self
    }

    /// Sets the success status.
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }

    /// Needs no token.
    pub fn public(mut self) -> Self {
        self.auth = false;
        self
    }
}

/// Builds the router from [`routes`], with JSON 404/405 fallbacks, request
/// metrics and the OpenAPI document.
pub fn router(state: AppState) -> Router {
    let table = routes();
    let doc = Arc::new(openapi::document(&table));
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for r in table {
        match by_path.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(r.handler),
            None => by_path.push((r.path, r.handler)),
        }
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr.fallback(method_not_allowed));
    }
    router
        .fallback(not_found)
        .layer(Extension(doc))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint {}: see /api/v1/openapi.json", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}: see /api/v1/openapi.json",
            uri.path()
        ),
    )
}
