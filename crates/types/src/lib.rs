//! The jdos domain model: plain data plus validation, no IO.
//!
//! Every crate agrees on these shapes and on the key layout in [`keys`]. Like
//! `kube-core`, this crate has almost no dependencies and no async runtime, so
//! the client, the CLI and third parties stay light.

pub mod agent;
pub mod alert;
pub mod api;
pub mod app;
pub mod apply;
pub mod autoscaling;
pub mod container;
pub mod duration;
pub mod error;
pub mod event;
pub mod failover;
pub mod group;
pub mod keys;
pub mod metrics;
pub mod name;
pub mod network;
pub mod resources;
pub mod spec;
pub mod task;
pub mod topology;
pub mod user;
pub mod workload;

pub use app::{App, BusinessLevel};
pub use autoscaling::AutoscalingPolicy;
pub use container::{Container, ContainerPhase, InstanceId};
pub use error::{ApiError, FieldError, ValidationErrors};
pub use event::{Event, EventResult};
pub use group::{Group, GroupKey};
pub use network::{IpAssignment, IpRange, IpState, Network};
pub use resources::{DiskByTier, Resources, StorageTier};
pub use spec::AppSpec;
pub use task::{Task, TaskState};
pub use topology::{Host, HostState, Labels};
pub use user::{Role, Token};

/// Milliseconds since the Unix epoch. Timestamps are always passed in by the
/// caller (never read from a clock here) so that store writes are deterministic.
pub type UnixMillis = u64;

/// Something that can check itself and report every offending field at once.
pub trait Validate {
    /// Returns every problem found, not just the first.
    fn validate(&self) -> Result<(), ValidationErrors>;
}
