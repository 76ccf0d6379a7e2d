//! [`FakeDriver`]: an in-memory, deterministic driver for `jdos sim`, for
//! `jdos dev` where no engine answers, and for tests of the agent. It keeps
//! the trait's semantics (conflicts, not-found, address clashes on start,
//! label lists) and can be told to fail or to crash containers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jdos_types::{InstanceId, Network, Resources, UnixMillis, Validate, ValidationErrors};

use crate::driver::{split_image_reference, Driver};
use crate::labels::LabelFilter;
use crate::network::{DockerNetworkShape, NetworkInfo, NetworkRealization, ObservedNetwork};
use crate::spec::{validate_limits, ContainerSpec, CpuPolicy, Isolation};
use crate::status::{
    ContainerHandle, ContainerStats, ContainerStatus, DestroyOptions, ExecOutput, RuntimeState,
};
use crate::DriverError;

/// A driver operation, for injecting failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FakeOp {
    /// `ensure_network`.
    EnsureNetwork,
    /// `remove_network`.
    RemoveNetwork,
    /// `create`.
    Create,
    /// `start`.
    Start,
    /// `stop`.
    Stop,
    /// `destroy`.
    Destroy,
    /// `inspect`.
    Inspect,
    /// `list`.
    List,
    /// `wait`.
    Wait,
    /// `stats`.
    Stats,
    /// `exec`.
    Exec,
    /// `update_resources`.
    UpdateResources,
    /// `commit`.
    Commit,
}

#[derive(Debug, Clone)]
struct FakeContainer {
    id: String,
    spec: ContainerSpec,
    state: RuntimeState,
    exit_code: Option<i64>,
    oom_killed: bool,
    started_at: Option<UnixMillis>,
    finished_at: Option<UnixMillis>,
    labels: Arc<BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
struct FakeState {
    clock_ms: UnixMillis,
    next_id: u64,
    networks: BTreeMap<String, (DockerNetworkShape, String)>,
    containers: BTreeMap<String, FakeContainer>,
    images: BTreeMap<String, String>,
    failures: Vec<(FakeOp, DriverError, u32)>,
    exec_results: BTreeMap<String, ExecOutput>,
    calls: BTreeMap<FakeOp, u64>,
}

/// An in-memory [`Driver`]. Time is a logical clock set by the caller
/// ([`FakeDriver::set_time`]), so runs are reproducible.
#[derive(Debug)]
pub struct FakeDriver {
    state: Mutex<FakeState>,
    // Bumped on every exit or removal, for `wait`.
    changes: tokio::sync::watch::Sender<u64>,
    // Bumped on every change of any container ([`Driver::generation`]);
    // not a watch, so creates and starts wake no waiter.
    generation: AtomicU64,
    name_scope: Option<String>,
    ncpu: u32,
}

impl Default for FakeDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeDriver {
    /// An empty fake host with 64 cpus.
    pub fn new() -> Self {
        FakeDriver {
            state: Mutex::new(FakeState::default()),
            changes: tokio::sync::watch::Sender::new(0),
            generation: AtomicU64::new(0),
            name_scope: None,
            ncpu: 64,
        }
    }

    /// Names containers `<docker name>.<scope>`, like
    /// [`DockerConfig::name_scope`](crate::DockerConfig).
    pub fn with_name_scope(mut self, scope: &str) -> Self {
        self.name_scope = Some(scope.to_string());
        self
    }

    /// Sets the number of cpus a cpuset may use.
    pub fn with_ncpu(mut self, ncpu: u32) -> Self {
        self.ncpu = ncpu;
        self
    }

    fn changed(&self) {
        self.touched();
        self.changes.send_modify(|g| *g += 1);
    }

    fn touched(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fake's name for `id`.
    pub fn container_name(&self, id: &InstanceId) -> String {
        match &self.name_scope {
            Some(s) => format!("{}.{s}", id.docker_name()),
            None => id.docker_name(),
        }
    }

    /// Sets the logical clock (ms since the epoch) used for start/finish times.
    pub fn set_time(&self, now_ms: UnixMillis) {
        self.lock().clock_ms = now_ms;
    }

    /// Advances the logical clock.
    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        s.clock_ms = s
            .clock_ms
            .saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
    }

    /// Makes the next `times` calls of `op` fail with `error`.
    pub fn fail_next(&self, op: FakeOp, error: DriverError, times: u32) {
        self.lock().failures.push((op, error, times));
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: FakeOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The container's process exits with `exit_code` (a crash when non-zero).
    pub fn crash(&self, id: &InstanceId, exit_code: i64) -> Result<(), DriverError> {
        self.exit(id, exit_code, false)
    }

    /// The kernel's OOM killer ends the container (exit 137).
    pub fn oom_kill(&self, id: &InstanceId) -> Result<(), DriverError> {
        self.exit(id, 137, true)
    }

    /// Ends the process and records why under one lock, so a waiter woken
    /// by the change never sees the exit without its OOM flag.
    fn exit(&self, id: &InstanceId, exit_code: i64, oom: bool) -> Result<(), DriverError> {
        let name = self.container_name(id);
        let mut s = self.lock();
        let now = s.clock_ms;
        let c = s
            .containers
            .get_mut(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        if c.state == RuntimeState::Running {
            c.state = RuntimeState::Exited;
            c.exit_code = Some(exit_code);
            c.oom_killed = oom;
            c.finished_at = Some(now);
        }
        drop(s);
        self.changed();
        Ok(())
    }

    /// Power loss: every running container exits with 137. The containers
    /// stay (as on a real host that reboots), so a returning agent finds
    /// them.
    pub fn power_loss(&self) {
        let mut s = self.lock();
        let now = s.clock_ms;
        for c in s.containers.values_mut() {
            if c.state == RuntimeState::Running {
                c.state = RuntimeState::Exited;
                c.exit_code = Some(137);
                c.finished_at = Some(now);
            }
        }
        drop(s);
        self.changed();
    }

    /// What `exec` in `id` returns from now on (default: exit 0, no output).
    pub fn set_exec_result(&self, id: &InstanceId, output: ExecOutput) {
        let name = self.container_name(id);
        self.lock().exec_results.insert(name, output);
    }

    /// Number of containers, in any state.
    pub fn container_count(&self) -> usize {
        self.lock().containers.len()
    }

    /// Images committed so far, reference → id.
    pub fn images(&self) -> BTreeMap<String, String> {
        self.lock().images.clone()
    }

    /// The spec a container was created with (after live updates).
    pub fn spec_of(&self, id: &InstanceId) -> Option<ContainerSpec> {
        let name = self.container_name(id);
        self.lock().containers.get(&name).map(|c| c.spec.clone())
    }

    fn enter(&self, op: FakeOp) -> Result<std::sync::MutexGuard<'_, FakeState>, DriverError> {
        let mut s = self.lock();
        *s.calls.entry(op).or_default() += 1;
        if let Some(i) = s.failures.iter().position(|(o, _, n)| *o == op && *n > 0) {
            let err = s.failures[i].1.clone();
            s.failures[i].2 -= 1;
            if s.failures[i].2 == 0 {
                s.failures.remove(i);
            }
            return Err(err);
        }
        Ok(s)
    }
}

fn status(c: &FakeContainer, name: &str) -> ContainerStatus {
    ContainerStatus {
        instance: Some(c.spec.instance.clone()),
        name: name.to_string(),
        id: c.id.clone(),
        image: c.spec.image.clone(),
        state: c.state,
        exit_code: if c.state == RuntimeState::Exited {
            c.exit_code
        } else {
            None
        },
        oom_killed: c.oom_killed,
        error: String::new(),
        ip: if c.state == RuntimeState::Running {
            c.spec.network.as_ref().map(|n| n.ipv4)
        } else {
            None
        },
        started_at_ms: c.started_at,
        finished_at_ms: c.finished_at,
        restart_count: 0,
        labels: c.labels.clone(),
    }
}

#[async_trait]
impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn addresses_reachable(&self) -> bool {
        false
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    async fn ensure_network(
        &self,
        network: &Network,
        realization: &NetworkRealization,
    ) -> Result<NetworkInfo, DriverError> {
        let mut s = self.enter(FakeOp::EnsureNetwork)?;
        network.validate()?;
        let want = realization.desired(network);
        if let Some((have, id)) = s.networks.get(&want.name) {
            let observed = ObservedNetwork {
                id: id.clone(),
                driver: have.driver.clone(),
                subnets: vec![have.subnet],
                gateways: vec![have.gateway],
                options: have.options.clone(),
            };
            let diff = want.differences(&observed);
            if diff.is_empty() {
                return Ok(NetworkInfo {
                    name: want.name,
                    id: id.clone(),
                    created: false,
                });
            }
            return Err(DriverError::Conflict(format!(
                "network {} exists with {}, which jdos network {} does not match; it was left as it is",
                want.name,
                diff.join(", "),
                network.name
            )));
        }
        if let Some((other, _)) = s.networks.iter().find(|(_, (n, _))| {
            n.subnet.contains(&want.subnet.network()) || want.subnet.contains(&n.subnet.network())
        }) {
            return Err(DriverError::Conflict(format!(
                "subnet {} of jdos network {} overlaps network {other}",
                want.subnet, network.name
            )));
        }
        s.next_id += 1;
        let id = format!("fake-net-{}", s.next_id);
        s.networks
            .insert(want.name.clone(), (want.clone(), id.clone()));
        Ok(NetworkInfo {
            name: want.name,
            id,
            created: true,
        })
    }

    async fn remove_network(
        &self,
        name: &str,
        realization: &NetworkRealization,
    ) -> Result<(), DriverError> {
        let mut s = self.enter(FakeOp::RemoveNetwork)?;
        let docker_name = realization.docker_name(name);
        if s.containers.values().any(|c| {
            c.spec
                .network
                .as_ref()
                .is_some_and(|n| n.docker_network == docker_name)
        }) {
            return Err(DriverError::Conflict(format!(
                "network {docker_name} is still in use: destroy its containers first"
            )));
        }
        s.networks.remove(&docker_name);
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerHandle, DriverError> {
        let mut s = self.enter(FakeOp::Create)?;
        spec.validate()?;
        if let CpuPolicy::Cpuset { cpus } = &spec.isolation.cpu {
            if let Some(bad) = cpus.iter().find(|c| **c >= self.ncpu) {
                let mut e = ValidationErrors::new();
                e.add(
                    "isolation.cpu.cpus",
                    "no_such_cpu",
                    format!("cpu {bad} does not exist"),
                );
                return Err(e.into());
            }
        }
        let name = self.container_name(&spec.instance);
        if s.containers.contains_key(&name) {
            return Err(DriverError::Conflict(format!(
                "a container named {name} already exists: adopt it or destroy it first"
            )));
        }
        if let Some(n) = &spec.network {
            match s.networks.get(&n.docker_network) {
                None => return Err(DriverError::network_not_found(&n.docker_network)),
                Some((shape, _)) if shape.subnet != n.subnet.trunc() => {
                    return Err(DriverError::Conflict(format!(
                        "network {} has subnet {}, not {}",
                        n.docker_network, shape.subnet, n.subnet
                    )))
                }
                Some(_) => {}
            }
        }
        s.next_id += 1;
        let id = format!("fake-{:012}", s.next_id);
        s.containers.insert(
            name.clone(),
            FakeContainer {
                id: id.clone(),
                spec: spec.clone(),
                state: RuntimeState::Created,
                exit_code: None,
                oom_killed: false,
                started_at: None,
                finished_at: None,
                labels: Arc::new(spec.all_labels()),
            },
        );
        drop(s);
        self.touched();
        Ok(ContainerHandle {
            instance: spec.instance.clone(),
            name,
            id,
            warnings: Vec::new(),
        })
    }

    async fn start(&self, id: &InstanceId) -> Result<(), DriverError> {
        let mut s = self.enter(FakeOp::Start)?;
        let name = self.container_name(id);
        let c = s
            .containers
            .get(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        if c.state == RuntimeState::Running {
            return Ok(());
        }
        if let Some(n) = &c.spec.network {
            let holder = s.containers.iter().find(|(other, o)| {
                *other != &name
                    && o.state == RuntimeState::Running
                    && o.spec.network.as_ref().is_some_and(|on| {
                        on.docker_network == n.docker_network && on.ipv4 == n.ipv4
                    })
            });
            if let Some((other, _)) = holder {
                return Err(DriverError::Conflict(format!(
                    "{name}: address {} is held by running container {other}",
                    n.ipv4
                )));
            }
        }
        let now = s.clock_ms;
        let c = s.containers.get_mut(&name).expect("checked above");
        c.state = RuntimeState::Running;
        c.exit_code = None;
        c.oom_killed = false;
        c.started_at = Some(now);
        c.finished_at = None;
        drop(s);
        self.touched();
        Ok(())
    }

    async fn stop(&self, id: &InstanceId, _grace: Duration) -> Result<(), DriverError> {
        let mut s = self.enter(FakeOp::Stop)?;
        let name = self.container_name(id);
        let now = s.clock_ms;
        let c = s
            .containers
            .get_mut(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        if c.state == RuntimeState::Running {
            c.state = RuntimeState::Exited;
            c.exit_code = Some(0);
            c.finished_at = Some(now);
        }
        drop(s);
        self.changed();
        Ok(())
    }

    async fn destroy(&self, id: &InstanceId, _options: DestroyOptions) -> Result<(), DriverError> {
        let mut s = self.enter(FakeOp::Destroy)?;
        let name = self.container_name(id);
        s.containers.remove(&name);
        s.exec_results.remove(&name);
        drop(s);
        self.changed();
        Ok(())
    }

    async fn inspect(&self, id: &InstanceId) -> Result<ContainerStatus, DriverError> {
        let s = self.enter(FakeOp::Inspect)?;
        let name = self.container_name(id);
        s.containers
            .get(&name)
            .map(|c| status(c, &name))
            .ok_or_else(|| DriverError::container_not_found(name))
    }

    async fn list(&self, filter: &LabelFilter) -> Result<Vec<ContainerStatus>, DriverError> {
        let s = self.enter(FakeOp::List)?;
        Ok(s.containers
            .iter()
            .filter(|(_, c)| filter.matches(&c.labels))
            .map(|(n, c)| status(c, n))
            .collect())
    }

    async fn wait(&self, id: &InstanceId) -> Result<i64, DriverError> {
        drop(self.enter(FakeOp::Wait)?);
        let name = self.container_name(id);
        // Subscribe before looking, so a change in between is not missed.
        let mut rx = self.changes.subscribe();
        loop {
            {
                let s = self.lock();
                let c = s
                    .containers
                    .get(&name)
                    .ok_or_else(|| DriverError::container_not_found(&name))?;
                if c.state != RuntimeState::Running {
                    return Ok(c.exit_code.unwrap_or(0));
                }
            }
            if rx.changed().await.is_err() {
                return Err(DriverError::Unavailable(
                    "the fake driver was dropped".into(),
                ));
            }
        }
    }

    async fn stats(&self, id: &InstanceId) -> Result<ContainerStats, DriverError> {
        let s = self.enter(FakeOp::Stats)?;
        let name = self.container_name(id);
        let c = s
            .containers
            .get(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        let running = c.state == RuntimeState::Running;
        // Deterministic: a running container has used its full cpu share
        // since it started, and no memory beyond nothing.
        let ran_ms = if running {
            s.clock_ms
                .saturating_sub(c.started_at.unwrap_or(s.clock_ms))
        } else {
            0
        };
        Ok(ContainerStats {
            read_at_ms: Some(s.clock_ms),
            cpu_usage_ns: ran_ms
                .saturating_mul(c.spec.resources.cpu_millis)
                .saturating_mul(1_000),
            online_cpus: self.ncpu,
            memory_limit_bytes: c.spec.resources.memory_bytes,
            pids: u64::from(running),
            ..ContainerStats::default()
        })
    }

    async fn exec(
        &self,
        id: &InstanceId,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, DriverError> {
        let s = self.enter(FakeOp::Exec)?;
        let name = self.container_name(id);
        let c = s
            .containers
            .get(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        if command.is_empty() {
            let mut e = ValidationErrors::new();
            e.add("command", "required", "exec needs a command");
            return Err(e.into());
        }
        if c.state != RuntimeState::Running {
            return Err(DriverError::Conflict(format!("{name} is not running")));
        }
        Ok(s.exec_results.get(&name).cloned().unwrap_or_default())
    }

    async fn update_resources(
        &self,
        id: &InstanceId,
        resources: &Resources,
        isolation: &Isolation,
    ) -> Result<(), DriverError> {
        let mut s = self.enter(FakeOp::UpdateResources)?;
        let mut e = ValidationErrors::new();
        validate_limits(&mut e, resources, isolation);
        e.into_result()?;
        let name = self.container_name(id);
        let c = s
            .containers
            .get_mut(&name)
            .ok_or_else(|| DriverError::container_not_found(&name))?;
        c.spec.resources.cpu_millis = resources.cpu_millis;
        c.spec.resources.memory_bytes = resources.memory_bytes;
        c.spec.isolation = isolation.clone();
        drop(s);
        self.touched();
        Ok(())
    }

    async fn commit(&self, id: &InstanceId, reference: &str) -> Result<String, DriverError> {
        let mut s = self.enter(FakeOp::Commit)?;
        let (repo, tag) = split_image_reference(reference)?;
        let name = self.container_name(id);
        if !s.containers.contains_key(&name) {
            return Err(DriverError::container_not_found(name));
        }
        s.next_id += 1;
        let image_id = format!("sha256:fake{:060}", s.next_id);
        s.images.insert(format!("{repo}:{tag}"), image_id.clone());
        Ok(image_id)
    }
}

/// The address a fake container holds on `network` while running, if any
/// (for assertions in simulations).
pub fn running_ip(status: &ContainerStatus) -> Option<Ipv4Addr> {
    if status.state == RuntimeState::Running {
        status.ip
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;
    use crate::spec::NetworkAttachment;
    use jdos_types::resources::MIB;

    fn net(name: &str, subnet: &str, gw: &str) -> Network {
        Network {
            name: name.into(),
            vlan: 10,
            subnet: subnet.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec![],
            quarantine_secs: 300,
        }
    }

    fn spec(index: u32, host: &str, n: &Network, ip: &str) -> ContainerSpec {
        let id: InstanceId = format!("shop/prod/web/{index}").parse().unwrap();
        let mut s = ContainerSpec::new(
            id,
            "jdos-busybox:latest",
            host,
            Resources::new(500, 64 * MIB),
        );
        s.network = Some(NetworkAttachment::new(
            n,
            &NetworkRealization::bridge(),
            ip.parse().unwrap(),
        ));
        s
    }

    #[tokio::test]
    async fn network_probes_are_answered_by_the_fake_not_sent() {
        use crate::health::probe;
        use crate::spec::{HealthCheck, Probe};
        let d = FakeDriver::new();
        let n = net("n1", "10.9.0.0/24", "10.9.0.1");
        d.ensure_network(&n, &NetworkRealization::bridge())
            .await
            .unwrap();
        // A documentation address (TEST-NET-3): a probe that really
        // connected would hang until its timeout, not answer at once.
        let s = spec(0, "h1", &n, "10.9.0.5");
        d.create(&s).await.unwrap();
        d.start(&s.instance).await.unwrap();
        let ip = Some("203.0.113.9".parse().unwrap());
        let mut check = HealthCheck::new(Probe::Http {
            port: 80,
            path: "/".into(),
        });
        check.timeout_ms = 60_000;
        let t0 = std::time::Instant::now();
        assert!(probe(&check, ip, &d, &s.instance).await.is_healthy());
        d.set_exec_result(
            &s.instance,
            ExecOutput {
                exit_code: 1,
                stdout: String::new(),
                stderr: "refused".into(),
            },
        );
        check.probe = Probe::Tcp { port: 80 };
        assert!(!probe(&check, ip, &d, &s.instance).await.is_healthy());
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn lifecycle_conflicts_and_not_found() {
        let d = FakeDriver::new();
        let r = NetworkRealization::bridge();
        let n = net("n1", "10.9.0.0/24", "10.9.0.1");
        assert!(d.ensure_network(&n, &r).await.unwrap().created);
        assert!(
            !d.ensure_network(&n, &r).await.unwrap().created,
            "idempotent"
        );
        let other = net("n1", "10.9.1.0/24", "10.9.1.1");
        assert!(d
            .ensure_network(&other, &r)
            .await
            .unwrap_err()
            .is_conflict());
        let overlapping = net("n2", "10.9.0.0/25", "10.9.0.1");
        assert!(d
            .ensure_network(&overlapping, &r)
            .await
            .unwrap_err()
            .is_conflict());

        let s = spec(0, "h1", &n, "10.9.0.10");
        d.set_time(1_000);
        d.create(&s).await.unwrap();
        assert!(
            d.create(&s).await.unwrap_err().is_conflict(),
            "duplicate name"
        );
        d.start(&s.instance).await.unwrap();
        d.start(&s.instance).await.unwrap();
        let st = d.inspect(&s.instance).await.unwrap();
        assert_eq!(st.state, RuntimeState::Running);
        assert_eq!(st.ip, Some("10.9.0.10".parse().unwrap()));
        assert_eq!(st.started_at_ms, Some(1_000));
        assert_eq!(st.labels[labels::HOST], "h1");

        // A second identity asking for the same address cannot start.
        let clash = spec(1, "h1", &n, "10.9.0.10");
        d.create(&clash).await.unwrap();
        assert!(d.start(&clash.instance).await.unwrap_err().is_conflict());

        assert!(d.remove_network("n1", &r).await.unwrap_err().is_conflict());
        d.stop(&s.instance, Duration::from_secs(1)).await.unwrap();
        assert_eq!(d.inspect(&s.instance).await.unwrap().exit_code, Some(0));
        d.destroy(&s.instance, DestroyOptions::purge())
            .await
            .unwrap();
        d.destroy(&s.instance, DestroyOptions::purge())
            .await
            .unwrap();
        assert!(d.inspect(&s.instance).await.unwrap_err().is_not_found());
        assert!(d.start(&s.instance).await.unwrap_err().is_not_found());
        d.destroy(&clash.instance, DestroyOptions::purge())
            .await
            .unwrap();
        d.remove_network("n1", &r).await.unwrap();
        assert_eq!(d.container_count(), 0);
    }

    #[tokio::test]
    async fn list_by_labels_adopts_only_this_hosts_containers() {
        let d = FakeDriver::new();
        let r = NetworkRealization::bridge();
        let n = net("n1", "10.9.0.0/24", "10.9.0.1");
        d.ensure_network(&n, &r).await.unwrap();
        for (i, host) in [(0, "h1"), (1, "h2"), (2, "h1")] {
            d.create(&spec(i, host, &n, &format!("10.9.0.{}", 10 + i)))
                .await
                .unwrap();
        }
        let mine = d.list(&LabelFilter::host("h1")).await.unwrap();
        let idx: Vec<u32> = mine
            .iter()
            .map(|s| s.instance.as_ref().unwrap().index)
            .collect();
        assert_eq!(idx, [0, 2]);
        assert_eq!(d.list(&LabelFilter::all()).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn injected_failures_crashes_and_power_loss() {
        let d = FakeDriver::new();
        let s = {
            let mut s = spec(0, "h1", &net("n1", "10.9.0.0/24", "10.9.0.1"), "10.9.0.10");
            s.network = None;
            s
        };
        d.create(&s).await.unwrap();
        d.fail_next(
            FakeOp::Start,
            DriverError::Unavailable("injected".into()),
            2,
        );
        assert!(d.start(&s.instance).await.unwrap_err().is_transient());
        assert!(d.start(&s.instance).await.is_err());
        d.start(&s.instance).await.unwrap();
        assert_eq!(d.calls(FakeOp::Start), 3);

        let waiter = d.wait(&s.instance);
        let crash = async {
            tokio::task::yield_now().await;
            d.crash(&s.instance, 3).unwrap();
        };
        let (code, ()) = tokio::join!(waiter, crash);
        assert_eq!(code.unwrap(), 3);
        assert_eq!(d.wait(&s.instance).await.unwrap(), 3, "already exited");
        let st = d.inspect(&s.instance).await.unwrap();
        assert_eq!((st.state, st.exit_code), (RuntimeState::Exited, Some(3)));
        d.start(&s.instance).await.unwrap();
        d.power_loss();
        assert_eq!(d.inspect(&s.instance).await.unwrap().exit_code, Some(137));

        d.start(&s.instance).await.unwrap();
        let out = d
            .exec(&s.instance, &["true".into()], Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(out.exit_code, 0);
        d.set_exec_result(
            &s.instance,
            ExecOutput {
                exit_code: 1,
                ..Default::default()
            },
        );
        let out = d
            .exec(&s.instance, &["false".into()], Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(out.exit_code, 1);

        let iso = Isolation {
            cpu: CpuPolicy::Cpuset { cpus: vec![0] },
            ..Isolation::default()
        };
        d.update_resources(&s.instance, &Resources::new(1000, 128 * MIB), &iso)
            .await
            .unwrap();
        assert_eq!(
            d.spec_of(&s.instance).unwrap().resources.memory_bytes,
            128 * MIB
        );
        let img = d.commit(&s.instance, "snap/web:v1").await.unwrap();
        assert_eq!(d.images()["snap/web:v1"], img);
    }

    #[tokio::test]
    async fn auto_detect_falls_back_to_the_fake_without_an_engine() {
        // No engine at this socket: the fake is chosen and the reason given.
        let key = "DOCKER_HOST";
        let before = std::env::var(key).ok();
        // No other test in this binary reads DOCKER_HOST, so changing it here
        // cannot disturb them.
        std::env::set_var(key, "unix:///nonexistent/docker.sock");
        let (d, why) =
            crate::auto_detect(crate::DockerConfig::default(), Duration::from_secs(2)).await;
        match before {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
        assert_eq!(d.name(), "fake");
        assert!(why.is_some());
    }

    #[tokio::test]
    async fn invalid_specs_create_nothing() {
        let d = FakeDriver::new();
        let mut s = spec(0, "h1", &net("n1", "10.9.0.0/24", "10.9.0.1"), "10.9.0.10");
        assert!(
            d.create(&s).await.unwrap_err().is_not_found(),
            "network not realized"
        );
        s.image.clear();
        assert!(matches!(
            d.create(&s).await,
            Err(DriverError::InvalidSpec(_))
        ));
        assert_eq!(d.container_count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_woken_by_an_oom_kill_sees_the_flag() {
        let d = std::sync::Arc::new(FakeDriver::new());
        let r = NetworkRealization::bridge();
        let n = net("n1", "10.9.0.0/24", "10.9.0.1");
        d.ensure_network(&n, &r).await.unwrap();
        for i in 0..200 {
            let s = spec(i, "h1", &n, &format!("10.9.0.{}", 2 + i % 200));
            d.create(&s).await.unwrap();
            d.start(&s.instance).await.unwrap();
            let waiter = {
                let (d, id) = (d.clone(), s.instance.clone());
                tokio::spawn(async move {
                    let code = d.wait(&id).await.unwrap();
                    (code, d.inspect(&id).await.unwrap().oom_killed)
                })
            };
            tokio::task::yield_now().await;
            d.oom_kill(&s.instance).unwrap();
            assert_eq!(waiter.await.unwrap(), (137, true), "round {i}");
            d.destroy(&s.instance, DestroyOptions::purge())
                .await
                .unwrap();
        }
    }
}
