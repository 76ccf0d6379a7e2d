//! jdos-agent: the node agent (`jdos agent`).
//!
//! It registers its host with the server, heartbeats, long-polls the host's
//! work orders ([`Assignment`](jdos_types::agent::Assignment)s) and makes
//! the container engine hold exactly them, through a
//! [`Driver`](jdos_runtime::Driver):
//!
//! - [`plan`]: the reconcile planner, a pure function (wanted, observed,
//!   trackers, now) → actions;
//! - [`exec`]: carries actions out, concurrently and bounded;
//! - [`agent`]: the loops (session/heartbeat, assignment long-poll,
//!   reconcile with exit waiters and health probers), self-fencing and
//!   epochs;
//! - [`control`]: the [`ControlPlane`] seam and its HTTP implementation;
//! - [`capacity`]: cpus and memory from /proc, disk from the tier roots;
//! - [`report`]: what the agent tells the server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use jdos_agent::{capacity, Agent, AgentConfig, HttpControlPlane};
//!
//! let config = AgentConfig::new("host-1", "dc1", "sw1", "rack1",
//!     capacity::capacity(None, None, None, None));
//! let control = Arc::new(HttpControlPlane::new("127.0.0.1:7070", "join-token")?);
//! let driver = Arc::new(jdos_runtime::FakeDriver::new());
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! Agent::new(config).run(driver, control, shutdown).await?;
//! # Ok(()) }
//! ```

pub mod agent;
pub mod capacity;
pub mod collect;
pub mod config;
pub mod control;
pub mod docker;
pub mod error;
pub mod exec;
pub mod plan;
pub mod report;

pub use agent::{Agent, AgentContext, AgentStatus};
pub use config::{AgentConfig, Timings};
pub use control::{CallTimeouts, ControlPlane, HttpControlPlane};
pub use error::{AgentError, ControlPlaneError};
pub use exec::{Executor, Outcome};
pub use plan::{plan, Action, PlanContext, PlanMode, Tracker, Trackers, Wanted};
