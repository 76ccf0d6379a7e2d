//! Connecting the agent to a Docker engine at a given address.

use jdos_runtime::{DockerConfig, DockerDriver, DriverError};

/// A [`DockerDriver`] on the engine at `host` (`unix:///var/run/docker.sock`,
/// `tcp://…`), or the local default (`DOCKER_HOST`, else the default socket)
/// when `host` is `None`.
pub async fn connect(
    host: Option<&str>,
    config: DockerConfig,
) -> Result<DockerDriver, DriverError> {
    match host {
        None => DockerDriver::connect(config).await,
        Some(h) => {
            let docker = bollard::Docker::connect_with_host(h).map_err(|e| {
                DriverError::Unavailable(format!(
                    "cannot use docker host {h:?}: {e}: use unix:///path/to/docker.sock or tcp://host:port"
                ))
            })?;
            DockerDriver::from_client(docker, config).await
        }
    }
}
