//! [`DockerDriver`]: the Docker Engine API through bollard. Works with
//! engines as old as 20.10 (API 1.41): the API version is negotiated at
//! connect time.

mod convert;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerConfig, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use jdos_types::{InstanceId, Network, Resources, Validate, ValidationErrors};
use tracing::{debug, info, instrument, warn};

pub use convert::{create_body, limits, status_from_inspect, update_body, Limits, LogLimits};

use crate::driver::{split_image_reference, Driver};
use crate::labels::{self, LabelFilter};
use crate::network::{NetworkInfo, NetworkRealization};
use crate::spec::{validate_limits, ContainerSpec, CpuPolicy, Isolation};
use crate::status::{ContainerHandle, ContainerStats, ContainerStatus, DestroyOptions, ExecOutput};
use crate::storage::{self, TierRoots};
use crate::DriverError;

/// Tries of `ensure_network` against concurrent creators (50, 100, 200 ms
/// apart).
const ENSURE_NETWORK_ATTEMPTS: u32 = 4;

/// Most bytes of each of stdout and stderr an exec keeps.
pub const EXEC_OUTPUT_CAP: usize = 64 * 1024;

/// Configuration of a [`DockerDriver`].
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// Appended to container names as `<name>.<scope>` when several agents
    /// share one engine (dev, tests: several "hosts" on one machine), so the
    /// replacement of an identity on another agent does not clash with the
    /// dead original's name. `None` (production): exactly
    /// [`InstanceId::docker_name`].
    pub name_scope: Option<String>,
    /// L1/L2 roots for host-path volumes.
    pub storage: TierRoots,
    /// Log rotation.
    pub logs: LogLimits,
}

/// A [`Driver`] on a Docker engine.
#[derive(Debug)]
pub struct DockerDriver {
    docker: Docker,
    config: DockerConfig,
    api_version: String,
    ncpu: u32,
    // Serializes ensure_network within this process: engines of API < 1.44
    // create a second network of the same name unless told CheckDuplicate.
    network_lock: tokio::sync::Mutex<()>,
    // `list` inspects what the summary lacks (start time, exit code); a
    // container still running since the last look needs no new inspect.
    running: std::sync::Mutex<HashMap<String, Seen>>,
}

/// A running container as `list` last inspected it.
#[derive(Debug, Clone)]
struct Seen {
    status: ContainerStatus,
    at: std::time::Instant,
}

/// How long `list` trusts an inspect of a container that stays running
/// (bounds what a restart behind jdos's back, e.g. `docker restart`, hides).
const RUNNING_REUSE: Duration = Duration::from_secs(30);

impl DockerDriver {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket)
    /// and negotiates the API version.
    pub async fn connect(config: DockerConfig) -> Result<Self, DriverError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            DriverError::Unavailable(format!(
                "cannot connect to the Docker engine: {e}: is dockerd running, and is DOCKER_HOST right?"
            ))
        })?;
        Self::from_client(docker, config).await
    }

    /// Uses an existing client (negotiating its API version).
    pub async fn from_client(docker: Docker, config: DockerConfig) -> Result<Self, DriverError> {
        let docker = docker.negotiate_version().await.map_err(|e| {
            DriverError::Unavailable(format!(
                "the Docker engine does not answer: {e}: is dockerd running, and may this user read its socket?"
            ))
        })?;
        let info = docker.info().await.map_err(|e| map_err("info", e))?;
        let ncpu = info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
        let api_version = docker.client_version().to_string();
        info!(api_version, ncpu, "connected to the docker engine");
        Ok(DockerDriver {
            docker,
            config,
            api_version,
            ncpu,
            network_lock: tokio::sync::Mutex::new(()),
            running: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The negotiated API version (`1.41` on engine 20.10).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Cpus the engine's host has.
    pub fn ncpu(&self) -> u32 {
        self.ncpu
    }

    /// The bollard client (for tests and tools).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Forgets `list`'s inspect of container `name`: this driver is about
    /// to change its state.
    fn forget(&self, name: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.status.name != name);
    }

    /// The engine's container name of `id`.
    pub fn container_name(&self, id: &InstanceId) -> String {
        match &self.config.name_scope {
            Some(s) => format!("{}.{s}", id.docker_name()),
            None => id.docker_name(),
        }
    }

    async fn inspect_raw(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, DriverError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(map_err("inspect container", e)),
        }
    }

    /// Everything about `spec` that needs the engine to check: the image is
    /// present, the network is realized with the attachment's subnet, the
    /// pinned cpus exist, the name is free.
    async fn check_against_engine(
        &self,
        spec: &ContainerSpec,
        name: &str,
    ) -> Result<(), DriverError> {
        let mut e = ValidationErrors::new();
        if let CpuPolicy::Cpuset { cpus } = &spec.isolation.cpu {
            if let Some(bad) = cpus.iter().find(|c| **c >= self.ncpu) {
                e.add(
                    "isolation.cpu.cpus",
                    "no_such_cpu",
                    format!(
                        "cpu {bad} does not exist: this host has cpus 0-{}",
                        self.ncpu - 1
                    ),
                );
            }
        }
        e.into_result()?;
        // Three independent lookups: at once, so a create costs one engine
        // round trip of checks, not three (it matters when a failover
        // creates many containers on a loaded engine).
        let image = async {
            match self.docker.inspect_image(&spec.image).await {
                Ok(_) => Ok(()),
                Err(err) if status_of(&err) == Some(404) => Err(DriverError::NotFound {
                    kind: "image",
                    name: spec.image.clone(),
                    hint: "it is not on this engine and jdos does not pull: load or build it first (scripts/build-test-image.sh builds jdos-busybox:latest)".into(),
                }),
                Err(err) => Err(map_err("inspect image", err)),
            }
        };
        let network = async {
            let Some(n) = &spec.network else {
                return Ok(());
            };
            let net = match self.docker.inspect_network(&n.docker_network, None).await {
                Ok(net) => net,
                Err(err) if status_of(&err) == Some(404) => {
                    return Err(DriverError::network_not_found(&n.docker_network))
                }
                Err(err) => return Err(map_err("inspect network", err)),
            };
            let observed = convert::observed_network(&net);
            if !observed.subnets.contains(&n.subnet.trunc()) {
                return Err(DriverError::Conflict(format!(
                    "docker network {} has subnets {:?}, but the spec attaches {} of {}: re-realize the network",
                    n.docker_network, observed.subnets, n.ipv4, n.subnet
                )));
            }
            Ok(())
        };
        let name_free = async {
            if let Some(existing) = self.inspect_raw(name).await? {
                let st = status_from_inspect(&existing);
                return Err(DriverError::Conflict(format!(
                    "a container named {name} already exists ({:?}, host {}, epoch {}): adopt it or destroy it first",
                    st.state,
                    st.host().unwrap_or("?"),
                    st.epoch().map_or("?".to_string(), |e| e.to_string())
                )));
            }
            Ok(())
        };
        // The image's error first, then the network's, then the name's (as
        // when they ran one after the other).
        let (image, network, name_free) = tokio::join!(image, network, name_free);
        image.and(network).and(name_free)
    }

    async fn find_network(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::NetworkInspect>, DriverError> {
        match self.docker.inspect_network(name, None).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(map_err("inspect network", e)),
        }
    }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a bollard error of `operation` to a [`DriverError`].
fn map_err(operation: &'static str, e: BollardError) -> DriverError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => DriverError::Conflict(format!("{operation}: {message}")),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DriverError::Engine {
            operation,
            status: Some(status_code),
            message,
        },
        BollardError::RequestTimeoutError => DriverError::Timeout {
            operation,
            after_ms: 120_000,
        },
        e @ (BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_)) => {
            DriverError::Unavailable(format!("{operation}: {e}: is dockerd running?"))
        }
        e => DriverError::Engine {
            operation,
            status: None,
            message: e.to_string(),
        },
    }
}

fn not_found_or(operation: &'static str, name: &str, e: BollardError) -> DriverError {
    if status_of(&e) == Some(404) {
        DriverError::container_not_found(name)
    } else {
        map_err(operation, e)
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    #[instrument(skip_all, fields(network = %network.name))]
    async fn ensure_network(
        &self,
        network: &Network,
        realization: &NetworkRealization,
    ) -> Result<NetworkInfo, DriverError> {
        network.validate()?;
        let want = realization.desired(network);
        let _guard = self.network_lock.lock().await;
        for attempt in 0..ENSURE_NETWORK_ATTEMPTS {
            if let Some(existing) = self.find_network(&want.name).await? {
                let observed = convert::observed_network(&existing);
                let diff = want.differences(&observed);
                if diff.is_empty() {
                    debug!(docker_network = %want.name, "reusing matching docker network");
                    return Ok(NetworkInfo {
                        name: want.name,
                        id: observed.id,
                        created: false,
                    });
                }
                return Err(DriverError::Conflict(format!(
                    "docker network {} exists with {}, which jdos network {} does not match; it was left as it is: remove it (docker network rm {}) if nothing uses it, or rename the jdos network",
                    want.name,
                    diff.join(", "),
                    network.name,
                    want.name
                )));
            }
            let request = NetworkCreateRequest {
                name: want.name.clone(),
                driver: Some(want.driver.clone()),
                attachable: Some(true),
                ipam: Some(Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(want.subnet.to_string()),
                        gateway: Some(want.gateway.to_string()),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                options: Some(want.options.clone().into_iter().collect()),
                labels: Some(
                    [
                        (labels::MANAGED.to_string(), "true".to_string()),
                        (labels::NETWORK.to_string(), network.name.clone()),
                        (labels::VLAN.to_string(), network.vlan.to_string()),
                    ]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(created) => {
                    if !created.warning.is_empty() && attempt + 1 < ENSURE_NETWORK_ATTEMPTS {
                        // Another process created the same name meanwhile
                        // (old engines allow duplicates): undo ours, re-check.
                        warn!(warning = %created.warning, "duplicate docker network created; removing ours");
                        if let Err(e) = self.docker.remove_network(&created.id).await {
                            // Left alone, the duplicate makes the name
                            // ambiguous for every later lookup.
                            warn!(id = %created.id, error = %e, "could not remove our duplicate docker network: remove it by id (docker network rm ID)");
                        }
                        continue;
                    }
                    info!(docker_network = %want.name, subnet = %want.subnet, driver = %want.driver, "created docker network");
                    return Ok(NetworkInfo {
                        name: want.name,
                        id: created.id,
                        created: true,
                    });
                }
                Err(e) => {
                    if attempt + 1 < ENSURE_NETWORK_ATTEMPTS {
                        // Another agent on this engine may be creating the
                        // same network right now (its subnet then "overlaps"
                        // ours before its name is visible): look again
                        // shortly before judging.
                        debug!(error = %e, "create network failed; re-checking");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        continue;
                    }
                    let msg = e.to_string();
                    if msg.contains("overlaps") {
                        return Err(DriverError::Conflict(format!(
                            "subnet {} of jdos network {} overlaps another docker network on this host ({msg}): remove that network or change the subnet",
                            want.subnet, network.name
                        )));
                    }
                    return Err(map_err("create network", e));
                }
            }
        }
        Err(DriverError::Conflict(format!(
            "docker network {} keeps changing while being realized: retry",
            want.name
        )))
    }

    #[instrument(skip_all, fields(network = %name))]
    async fn remove_network(
        &self,
        name: &str,
        realization: &NetworkRealization,
    ) -> Result<(), DriverError> {
        let docker_name = realization.docker_name(name);
        match self.docker.remove_network(&docker_name).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) if status_of(&e) == Some(403) || e.to_string().contains("active endpoints") => {
                Err(DriverError::Conflict(format!(
                    "docker network {docker_name} is still in use: destroy its containers first ({e})"
                )))
            }
            Err(e) => Err(map_err("remove network", e)),
        }
    }

    #[instrument(skip_all, fields(container = %spec.instance))]
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerHandle, DriverError> {
        spec.validate()?;
        let name = self.container_name(&spec.instance);
        self.check_against_engine(spec, &name).await?;
        let storage = self.config.storage.clone();
        let (vols, container) = (spec.storage.host_volumes.clone(), name.clone());
        let prepared = tokio::task::spawn_blocking(move || storage.prepare(&container, &vols))
            .await
            .map_err(|e| DriverError::Storage(format!("volume preparation panicked: {e}")))??;
        let body = create_body(spec, &prepared.volumes, &self.config.logs);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => {
                for w in &r.warnings {
                    warn!(warning = %w, "engine warning on create");
                }
                debug!(id = %r.id, "created container");
                Ok(ContainerHandle {
                    instance: spec.instance.clone(),
                    name,
                    id: r.id,
                    warnings: r.warnings,
                })
            }
            Err(e) => {
                storage::rollback(&prepared);
                Err(match e {
                    BollardError::DockerResponseServerError {
                        status_code: 400,
                        message,
                    } => {
                        let mut v = ValidationErrors::new();
                        v.add("spec", "rejected_by_engine", message);
                        DriverError::InvalidSpec(v)
                    }
                    e => map_err("create container", e),
                })
            }
        }
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn start(&self, id: &InstanceId) -> Result<(), DriverError> {
        let name = self.container_name(id);
        self.forget(&name);
        match self.docker.start_container(&name, None).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("error setting rlimit") {
                    let mut v = ValidationErrors::new();
                    v.add(
                        "isolation.nofile",
                        "above_engine_limit",
                        format!("{name}: the engine cannot raise the container's limits this high: lower isolation.nofile or raise dockerd's LimitNOFILE ({msg})"),
                    );
                    return Err(DriverError::InvalidSpec(v));
                }
                if msg.contains("Address already in use") || msg.contains("address already in use")
                {
                    return Err(DriverError::Conflict(format!(
                        "{name}: its static address is held by another container on this network: fence or remove the old holder ({msg})"
                    )));
                }
                Err(not_found_or("start container", &name, e))
            }
        }
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn stop(&self, id: &InstanceId, grace: Duration) -> Result<(), DriverError> {
        let name = self.container_name(id);
        self.forget(&name);
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(t).build();
        // The engine answers only once the container is down, which may take
        // the whole grace: with bollard's default 2-minute request timeout a
        // longer grace (up to an hour is valid) would report a failed stop
        // while the engine is still stopping the container.
        let needed = stop_request_timeout(grace);
        let docker = if needed > self.docker.timeout() {
            self.docker.clone().with_timeout(needed)
        } else {
            self.docker.clone()
        };
        match docker.stop_container(&name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(BollardError::RequestTimeoutError) => Err(DriverError::Timeout {
                operation: "stop container",
                after_ms: u64::try_from(docker.timeout().as_millis()).unwrap_or(u64::MAX),
            }),
            Err(e) => Err(not_found_or("stop container", &name, e)),
        }
    }

    #[instrument(skip_all, fields(container = %id, remove_data = options.remove_data))]
    async fn destroy(&self, id: &InstanceId, options: DestroyOptions) -> Result<(), DriverError> {
        let name = self.container_name(id);
        self.forget(&name);
        // L3 volumes are named in the container's mounts; read them before
        // the container is gone.
        let volumes: Vec<String> = match self.inspect_raw(&name).await? {
            Some(i) => i
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.typ.as_deref() == Some("volume"))
                .filter_map(|m| m.name)
                .collect(),
            None => Vec::new(),
        };
        let rm = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(&name, Some(rm)).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_err("remove container", e)),
        }
        if options.remove_data {
            // Also the identity's labelled volumes, for a container that is
            // already gone.
            let mut volumes = volumes;
            let filters: HashMap<&str, Vec<String>> =
                [("label", vec![format!("{}={id}", labels::INSTANCE)])]
                    .into_iter()
                    .collect();
            let listed = self
                .docker
                .list_volumes(Some(
                    ListVolumesOptionsBuilder::new().filters(&filters).build(),
                ))
                .await
                .map_err(|e| map_err("list volumes", e))?;
            volumes.extend(
                listed
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v.name),
            );
            volumes.sort();
            volumes.dedup();
            for v in volumes {
                let opts = RemoveVolumeOptionsBuilder::new().force(false).build();
                match self.docker.remove_volume(&v, Some(opts)).await {
                    Ok(()) => {}
                    Err(e) if status_of(&e) == Some(404) => {}
                    // L3 data follows the identity: a replacement elsewhere
                    // on this engine may use it now. Keep it.
                    Err(e) if status_of(&e) == Some(409) => {
                        warn!(volume = %v, "volume still in use by another container; kept");
                    }
                    Err(e) => return Err(map_err("remove volume", e)),
                }
            }
            let storage = self.config.storage.clone();
            tokio::task::spawn_blocking(move || storage.purge(&name))
                .await
                .map_err(|e| DriverError::Storage(format!("volume removal panicked: {e}")))??;
        }
        Ok(())
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn inspect(&self, id: &InstanceId) -> Result<ContainerStatus, DriverError> {
        let name = self.container_name(id);
        match self.inspect_raw(&name).await? {
            Some(i) => Ok(status_from_inspect(&i)),
            None => Err(DriverError::container_not_found(name)),
        }
    }

    #[instrument(skip_all)]
    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerStatus>, DriverError> {
        let filters: HashMap<&str, Vec<String>> =
            [("label", filter.docker_filters())].into_iter().collect();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| map_err("list containers", e))?;
        // The summary lacks start times and exit codes: inspect each, a few
        // at a time, except those running since an inspect that saw them
        // running (a pass per finished action would otherwise inspect every
        // container of the host while the engine is busy starting new ones).
        // A container removed in between is simply skipped.
        let now = std::time::Instant::now();
        let mut reused = Vec::new();
        let mut ids = Vec::new();
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let listed: std::collections::HashSet<&str> =
                summaries.iter().filter_map(|s| s.id.as_deref()).collect();
            // Gone from a listing that would show it: gone.
            running
                .retain(|id, s| listed.contains(id.as_str()) || !filter.matches(&s.status.labels));
            for sm in &summaries {
                let Some(id) = sm.id.clone() else { continue };
                let still_running =
                    sm.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
                match running.get(&id) {
                    Some(seen) if still_running && now.duration_since(seen.at) < RUNNING_REUSE => {
                        reused.push(seen.status.clone())
                    }
                    _ => ids.push(id),
                }
            }
        }
        let results: Vec<Result<Option<ContainerStatus>, DriverError>> =
            futures_util::stream::iter(ids)
                .map(|id| async move {
                    Ok(self
                        .inspect_raw(&id)
                        .await?
                        .map(|i| status_from_inspect(&i)))
                })
                .buffered(8)
                .collect()
                .await;
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            for s in results.iter().flatten().flatten() {
                if s.state.is_running() {
                    let seen = Seen {
                        status: s.clone(),
                        at: now,
                    };
                    running.insert(s.id.clone(), seen);
                } else {
                    running.remove(&s.id);
                }
            }
        }
        let results = results
            .into_iter()
            .chain(reused.into_iter().map(|s| Ok(Some(s))));
        let mut out = Vec::new();
        for r in results {
            if let Some(s) = r? {
                // Re-check: the engine's label filter is exact-match too, but
                // this keeps fake and docker semantics identical.
                if filter.matches(&s.labels) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn wait(&self, id: &InstanceId) -> Result<i64, DriverError> {
        let name = self.container_name(id);
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut s = std::pin::pin!(self.docker.wait_container(&name, Some(options)));
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(not_found_or("wait", &name, e)),
            None => Err(DriverError::Engine {
                operation: "wait",
                status: None,
                message: "the engine closed the wait without a result".into(),
            }),
        }
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn stats(&self, id: &InstanceId) -> Result<ContainerStats, DriverError> {
        let name = self.container_name(id);
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut s = std::pin::pin!(self.docker.stats(&name, Some(options)));
        match s.next().await {
            Some(Ok(st)) => Ok(convert::stats_from_docker(&st)),
            Some(Err(e)) => Err(not_found_or("stats", &name, e)),
            None => Err(DriverError::Engine {
                operation: "stats",
                status: None,
                message: "the engine sent no sample".into(),
            }),
        }
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn exec(
        &self,
        id: &InstanceId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        if command.is_empty() {
            let mut e = ValidationErrors::new();
            e.add("command", "required", "exec needs a command");
            return Err(e.into());
        }
        let name = self.container_name(id);
        let run = async {
            let created = self
                .docker
                .create_exec(
                    &name,
                    CreateExecOptions::<String> {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(command.to_vec()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| not_found_or("exec", &name, e))?;
            let started = self
                .docker
                .start_exec(
                    &created.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| map_err("exec", e))?;
            let mut out = ExecOutput::default();
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| map_err("exec", e))? {
                        bollard::container::LogOutput::StdOut { message } => {
                            push_capped(&mut out.stdout, &message)
                        }
                        bollard::container::LogOutput::StdErr { message } => {
                            push_capped(&mut out.stderr, &message)
                        }
                        _ => {}
                    }
                }
            }
            // The stream ends when the process exits; its code may lag a
            // moment behind in the engine's record.
            for _ in 0..50 {
                let i = self
                    .docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| map_err("exec", e))?;
                if i.running != Some(true) {
                    out.exit_code = i.exit_code.unwrap_or(-1);
                    return Ok(out);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(DriverError::Engine {
                operation: "exec",
                status: None,
                message: "the command's output ended but it is still running".into(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| DriverError::Timeout {
                operation: "exec",
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })?
    }

    #[instrument(skip_all, fields(container = %id))]
    async fn update_resources(
        &self,
        id: &InstanceId,
        resources: &Resources,
        isolation: &Isolation,
    ) -> Result<(), DriverError> {
        let mut e = ValidationErrors::new();
        validate_limits(&mut e, resources, isolation);
        e.into_result()?;
        let name = self.container_name(id);
        let body = update_body(resources, isolation, self.ncpu);
        self.docker
            .update_container(&name, body)
            .await
            .map_err(|e| not_found_or("update container", &name, e))
    }

    #[instrument(skip_all, fields(container = %id, image = %reference))]
    async fn commit(&self, id: &InstanceId, reference: &str) -> Result<String, DriverError> {
        let (repo, tag) = split_image_reference(reference)?;
        let name = self.container_name(id);
        let options = CommitContainerOptionsBuilder::new()
            .container(&name)
            .repo(&repo)
            .tag(&tag)
            .comment(&format!("jdos snapshot of {id}"))
            .pause(true)
            .build();
        let r = self
            .docker
            .commit_container(options, ContainerConfig::default())
            .await
            .map_err(|e| not_found_or("commit", &name, e))?;
        Ok(r.id)
    }
}

/// How long a stop request with `grace` may take: the grace plus time for
/// the engine to kill and reap the container.
fn stop_request_timeout(grace: Duration) -> Duration {
    grace.saturating_add(Duration::from_secs(30))
}

fn push_capped(buf: &mut String, bytes: &[u8]) {
    let room = EXEC_OUTPUT_CAP.saturating_sub(buf.len());
    if room > 0 {
        buf.push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(room)]));
    }
}
