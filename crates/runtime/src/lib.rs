//! jdos-runtime: how a host runs containers.
//!
//! - [`Driver`]: the trait every runtime implements (after Nomad's driver
//!   plugin; optional operations return [`DriverError::Unsupported`]).
//! - [`DockerDriver`]: Docker Engine through bollard, API version negotiated
//!   (engine 20.10 / API 1.41 and newer).
//! - [`FakeDriver`]: in memory and deterministic, for `jdos sim` and
//!   `jdos dev` without an engine.
//! - [`ContainerSpec`]: what to run, with the seeds' isolation settings
//!   ([`Isolation`]) and storage tiers ([`StorageSpec`]), validated before
//!   any engine call.
//! - [`NetworkRealization`]: one Docker network per jdos network (bridge in
//!   dev, macvlan on `<iface>.<vlan>` in production).
//! - [`health`] probes and [`backoff`] restart policy, used by the agent.

pub mod backoff;
pub mod docker;
pub mod driver;
pub mod error;
pub mod fake;
pub mod health;
pub mod labels;
pub mod network;
pub mod spec;
pub mod status;
pub mod storage;

pub use backoff::{BackoffPolicy, RestartDecision, RestartTracker};
pub use docker::{DockerConfig, DockerDriver};
pub use driver::Driver;
pub use error::DriverError;
pub use fake::{FakeDriver, FakeOp};
pub use health::{HealthStatus, HealthTracker, ProbeOutcome};
pub use labels::LabelFilter;
pub use network::{NetworkInfo, NetworkMode, NetworkRealization};
pub use spec::{
    BlockVolume, ContainerSpec, CpuPolicy, HealthCheck, HostTier, HostVolume, Isolation,
    NetworkAttachment, Nofile, Probe, StorageSpec, TmpfsMount,
};
pub use status::{
    ContainerHandle, ContainerStats, ContainerStatus, DestroyOptions, ExecOutput, RuntimeState,
};
pub use storage::{TierRoot, TierRoots};
