//! The [`Driver`] trait, in the shape of Nomad's driver plugin: the agent
//! drives containers only through it, so the same reconciler runs on Docker,
//! on the in-memory fake (`jdos sim`, `jdos dev` without an engine) and on
//! any future runtime. Optional operations default to
//! [`DriverError::Unsupported`] (krustlet's provider defaults).

use std::time::Duration;

use async_trait::async_trait;
use jdos_types::{InstanceId, Network, Resources};

use crate::labels::LabelFilter;
use crate::network::{NetworkInfo, NetworkRealization};
use crate::spec::{ContainerSpec, Isolation};
use crate::status::{ContainerHandle, ContainerStats, ContainerStatus, DestroyOptions, ExecOutput};
use crate::DriverError;

/// A container runtime on one host. Containers are addressed by their
/// [`InstanceId`]; a driver maps it to its own name deterministically, so an
/// agent that restarts finds its containers again.
///
/// Semantics every driver keeps:
/// - `create` validates the whole spec first and creates nothing on error;
///   a container of the same identity that already exists is a `Conflict`.
/// - `start` / `stop` of a container already in that state succeed.
/// - `start`, `stop`, `inspect`, `stats`, `exec`, `update_resources` and
///   `commit` of an unknown container are `NotFound`.
/// - `destroy` is idempotent: destroying what is gone succeeds.
/// - `list` returns only containers jdos created (label `jdos.managed`).
#[async_trait]
pub trait Driver: Send + Sync {
    /// Short name (`docker`, `fake`).
    fn name(&self) -> &'static str;

    /// Whether a container's address is reachable from this host, so tcp
    /// and http health probes can connect to it. The fake driver's
    /// containers have no network stack: their probes are answered like an
    /// exec probe, and nothing is sent to their (made-up) addresses.
    fn addresses_reachable(&self) -> bool {
        true
    }

    /// A number that changes whenever this engine's containers change
    /// (created, started, stopped, exited, removed, updated), when the
    /// driver can tell; `None` when it cannot. An agent whose orders did
    /// not change either skips listing the engine while it holds still.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// Makes sure the host can attach containers to `network`: creates the
    /// engine network, or reuses a matching one; a conflicting one is a
    /// `Conflict` and is never changed.
    async fn ensure_network(
        &self,
        network: &Network,
        realization: &NetworkRealization,
    ) -> Result<NetworkInfo, DriverError>;

    /// Removes the engine network of jdos network `name`; absent is fine, in
    /// use is a `Conflict`.
    async fn remove_network(
        &self,
        name: &str,
        realization: &NetworkRealization,
    ) -> Result<(), DriverError>;

    /// Creates (does not start) a container.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerHandle, DriverError>;

    /// Starts a created or stopped container.
    async fn start(&self, id: &InstanceId) -> Result<(), DriverError>;

    /// Stops: SIGTERM, then SIGKILL after `grace`.
    async fn stop(&self, id: &InstanceId, grace: Duration) -> Result<(), DriverError>;

    /// Removes the container (killing it if running) and, with
    /// [`DestroyOptions::purge`], its data.
    async fn destroy(&self, id: &InstanceId, options: DestroyOptions) -> Result<(), DriverError>;

    /// The container's current status.
    async fn inspect(&self, id: &InstanceId) -> Result<ContainerStatus, DriverError>;

    /// Every jdos container matching `filter`, running or not: what an agent
    /// adopts after a restart (`LabelFilter::host(name)`).
    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerStatus>, DriverError>;

    /// Resolves when the container is not running (at once if it already
    /// is not) with its exit code: how an agent learns of a crash without
    /// polling (Nomad's `WaitTask`).
    async fn wait(&self, id: &InstanceId) -> Result<i64, DriverError> {
        let _ = id;
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "wait",
        })
    }

    /// One sample of usage counters.
    async fn stats(&self, id: &InstanceId) -> Result<ContainerStats, DriverError> {
        let _ = id;
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "stats",
        })
    }

    /// Runs `command` in the running container, waiting at most `timeout`.
    async fn exec(
        &self,
        id: &InstanceId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let _ = (id, command, timeout);
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "exec",
        })
    }

    /// Changes cpu, memory, pids and blkio limits of a live container
    /// (vertical resize) without restarting it.
    async fn update_resources(
        &self,
        id: &InstanceId,
        resources: &Resources,
        isolation: &Isolation,
    ) -> Result<(), DriverError> {
        let _ = (id, resources, isolation);
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "update_resources",
        })
    }

    /// Snapshots the container's filesystem to image `reference`
    /// (`repo:tag`), for snapshot scale-out; returns the image id.
    async fn commit(&self, id: &InstanceId, reference: &str) -> Result<String, DriverError> {
        let _ = (id, reference);
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "commit",
        })
    }
}

/// The Docker driver when an engine answers within `timeout`, else the
/// [`FakeDriver`](crate::FakeDriver) (what `jdos dev` wants). Returns why the
/// engine was not used, for the log.
pub async fn auto_detect(
    config: crate::DockerConfig,
    timeout: std::time::Duration,
) -> (std::sync::Arc<dyn Driver>, Option<DriverError>) {
    let outcome = tokio::time::timeout(timeout, crate::DockerDriver::connect(config)).await;
    match outcome {
        Ok(Ok(d)) => (std::sync::Arc::new(d), None),
        Ok(Err(e)) => (std::sync::Arc::new(crate::FakeDriver::new()), Some(e)),
        Err(_) => (
            std::sync::Arc::new(crate::FakeDriver::new()),
            Some(DriverError::Timeout {
                operation: "connect to the docker engine",
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        ),
    }
}

/// Splits `repo[:tag]` (the tag defaults to `latest`; a registry port's colon
/// is not a tag) and checks it is a plausible reference.
pub fn split_image_reference(reference: &str) -> Result<(String, String), DriverError> {
    let bad = || {
        let mut e = jdos_types::ValidationErrors::new();
        e.add(
            "reference",
            "invalid_image",
            format!("{reference:?} is not an image reference: use lowercase repo[:tag]"),
        );
        DriverError::InvalidSpec(e)
    };
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (repo, tag) = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    };
    let repo_ok = !repo.is_empty()
        && repo.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'-' | b'/' | b':')
        });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if repo_ok && tag_ok {
        Ok((repo.to_string(), tag.to_string()))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split() {
        assert_eq!(
            split_image_reference("snap/web:v2").unwrap(),
            ("snap/web".into(), "v2".into())
        );
        assert_eq!(
            split_image_reference("reg:5000/web").unwrap(),
            ("reg:5000/web".into(), "latest".into())
        );
        assert!(split_image_reference("Bad/Repo").is_err());
        assert!(split_image_reference("a b").is_err());
    }

    #[test]
    fn driver_is_dyn_compatible() {
        fn takes(_: Option<&dyn Driver>) {}
        takes(None);
    }
}
