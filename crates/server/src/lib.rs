//! jdos-server: the API server.
//!
//! - [`start`] opens the store, creates the admin token on the first start
//!   and serves the HTTP API ([`api::routes`] is the one route table that
//!   builds both the router and `/api/v1/openapi.json`).
//! - Shared pieces for later issues (workflow, agents, IPAM): the [`auth`]
//!   extractor and role checks, [`error::HttpError`] (every error is a JSON
//!   `ApiError`), the [`events`] recorder (event written in the same store
//!   transaction as its mutation), typed store helpers in [`kv`], and
//!   [`state::AppState::mutate`], the optimistic write loop.
//! - [`platform`]: the platform layer (place, publish, retire, finalize,
//!   relocate …) every workflow step and controller builds on;
//!   `api::agents` serves the agents' register / heartbeat / assignments.
//! - [`dev`] seeds a simulated topology for `jdos dev`.

pub mod alerting;
pub mod api;
pub mod auth;
pub mod autoscale;
pub mod dev;
pub mod error;
pub mod events;
pub mod extract;
pub mod failover;
pub mod hooks;
pub mod kv;
pub mod leader;
pub mod liveness;
pub mod metrics;
pub mod monitoring;
pub mod openapi;
pub mod ops;
pub mod platform;
pub mod remote_write;
pub mod server;
pub mod state;

pub use api::router;
pub use error::{HttpError, ServerError};
pub use liveness::{Liveness, Timings};
pub use platform::{Platform, PlatformError};
pub use server::{start, start_with_store, ServerConfig, ServerHandle, ShutdownTrigger};
pub use state::AppState;
