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
//!
//! ```no_run
//! # async fn demo() -> Result<(), jdos_runtime::DriverError> {
//! use jdos_runtime::{ContainerSpec, DockerConfig, DockerDriver, Driver, NetworkAttachment,
//!     NetworkRealization};
//! use jdos_types::{Network, Resources};
//!
//! let driver = DockerDriver::connect(DockerConfig::default()).await?;
//! let net: Network = serde_json::from_str(
//!     r#"{"name":"prod-a","vlan":120,"subnet":"10.1.0.0/24","gateway":"10.1.0.1"}"#,
//! ).unwrap();
//! let realization = NetworkRealization::bridge(); // macvlan("bond0") in production
//! driver.ensure_network(&net, &realization).await?;
//!
//! let id = "shop/production/web/0".parse().unwrap();
//! let mut spec = ContainerSpec::new(id, "jdos-busybox:latest", "host-1",
//!     Resources::new(500, 128 << 20));
//! spec.command = vec!["httpd".into(), "-f".into(), "-h".into(), "/www".into()];
//! spec.network = Some(NetworkAttachment::new(&net, &realization, "10.1.0.10".parse().unwrap()));
//! driver.create(&spec).await?;
//! driver.start(&spec.instance).await?;
//! # Ok(()) }
//! ```

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
pub use driver::{auto_detect, Driver};
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
