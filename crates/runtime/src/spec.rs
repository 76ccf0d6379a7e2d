//! What a driver is asked to run: [`ContainerSpec`], built from the domain
//! types, validated completely before any engine is called.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use jdos_types::name::{check_label, check_name};
use jdos_types::{Container, InstanceId, Network, Resources, StorageTier, ValidationErrors};
use serde::{Deserialize, Serialize};

use crate::labels;
use crate::network::NetworkRealization;
use crate::DriverError;

pub use jdos_types::workload::DEFAULT_STOP_GRACE_SECS;
/// Docker's smallest memory limit (engine 20.10: 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
pub use jdos_types::workload::DEFAULT_CFS_PERIOD_US;
/// The smallest CFS quota the kernel accepts (1 ms).
pub const MIN_CFS_QUOTA_US: u64 = 1_000;
pub use jdos_types::workload::{
    cpu_quota_us, cpu_shares, default_volume_driver, BlockVolume, CpuPolicy, HealthCheck, HostTier,
    HostVolume, Isolation, Nofile, Probe, StorageSpec, TmpfsMount, MAX_CPU_SHARES, SHARES_PER_CPU,
};

/// Everything a driver needs to create one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Identity; the container is named after it.
    pub instance: InstanceId,
    /// Image reference (must already be on the engine).
    pub image: String,
    /// Command and arguments (empty: the image's default).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// TCP ports the container listens on (reached on its own IP; nothing is
    /// published on the host).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Extra labels; keys may not start with `jdos.` (those are computed by
    /// [`ContainerSpec::labels`]).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host (agent) name, recorded in the `jdos.host` label.
    pub host: String,
    /// The host's fencing epoch, recorded in the `jdos.epoch` label.
    #[serde(default)]
    pub epoch: u64,
    /// The network and static address; `None` joins the engine's default
    /// network with a dynamic address (dev only).
    #[serde(default)]
    pub network: Option<NetworkAttachment>,
    /// Cpu and memory limits and storage budgets per tier.
    pub resources: Resources,
    /// How the limits are applied.
    #[serde(default)]
    pub isolation: Isolation,
    /// Mounts per storage tier.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Health check, run by the agent (not by the engine).
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default = "default_grace")]
    pub stop_grace_secs: u32,
}

fn default_grace() -> u32 {
    DEFAULT_STOP_GRACE_SECS
}

/// A container's place on a jdos network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The jdos network name.
    pub network: String,
    /// The Docker network that realizes it (see [`NetworkRealization`]).
    pub docker_network: String,
    /// Its subnet (copied so the address can be checked without a lookup).
    pub subnet: Ipv4Net,
    /// Its gateway.
    pub gateway: Ipv4Addr,
    /// The container's static address, from IPAM.
    pub ipv4: Ipv4Addr,
}

impl NetworkAttachment {
    /// Attachment to `network`, realized as `realization` says, at `ipv4`.
    pub fn new(network: &Network, realization: &NetworkRealization, ipv4: Ipv4Addr) -> Self {
        NetworkAttachment {
            network: network.name.clone(),
            docker_network: realization.docker_name(&network.name),
            subnet: network.subnet,
            gateway: network.gateway,
            ipv4,
        }
    }
}

impl ContainerSpec {
    /// A spec with defaults for everything but identity, image, host and
    /// resources.
    pub fn new(instance: InstanceId, image: &str, host: &str, resources: Resources) -> Self {
        ContainerSpec {
            instance,
            image: image.to_string(),
            command: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            labels: BTreeMap::new(),
            host: host.to_string(),
            epoch: 0,
            network: None,
            resources,
            isolation: Isolation::default(),
            storage: StorageSpec::default(),
            health: None,
            stop_grace_secs: DEFAULT_STOP_GRACE_SECS,
        }
    }

    /// The spec of a placed container record of a group: identity, image,
    /// resources, host, epoch and IP from the record; command, env, ports,
    /// isolation, storage, health check and stop grace from the group's
    /// template; the network from IPAM's `network`.
    /// Fails when the record is not placed or has an IP but no network.
    pub fn for_container(
        container: &Container,
        template: &jdos_types::group::ContainerTemplate,
        network: Option<(&Network, &NetworkRealization)>,
    ) -> Result<Self, DriverError> {
        let mut e = ValidationErrors::new();
        let host = container.host.clone().unwrap_or_default();
        if host.is_empty() {
            e.add(
                "host",
                "required",
                "the container is not placed on a host yet",
            );
        }
        let attachment = match (container.ip, network) {
            (Some(ip), Some((n, r))) => {
                if container.network.as_deref().is_some_and(|cn| cn != n.name) {
                    e.add(
                        "network",
                        "mismatch",
                        format!(
                            "the container's address belongs to network {:?}, not {:?}",
                            container.network.as_deref().unwrap_or_default(),
                            n.name
                        ),
                    );
                }
                Some(NetworkAttachment::new(n, r, ip))
            }
            (Some(ip), None) => {
                e.add(
                    "network",
                    "required",
                    format!("the container has address {ip} but no network was given"),
                );
                None
            }
            (None, _) => None,
        };
        e.into_result()?;
        let mut spec = ContainerSpec::new(
            container.id.clone(),
            &container.image,
            &host,
            container.resources,
        );
        spec.epoch = container.host_epoch;
        spec.command = template.command.clone();
        spec.env = template.env.clone();
        spec.ports = template.ports.clone();
        spec.isolation = template.isolation.clone();
        spec.storage = template.storage.clone();
        spec.health = template.health.clone();
        if let Some(g) = template.stop_grace_secs {
            spec.stop_grace_secs = g;
        }
        spec.network = attachment;
        Ok(spec)
    }

    /// The engine's name for this container.
    pub fn docker_name(&self) -> String {
        self.instance.docker_name()
    }

    /// Every label the container carries: jdos's own plus [`Self::labels`].
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        let id = &self.instance;
        for (k, v) in [
            (labels::MANAGED, "true".to_string()),
            (labels::INSTANCE, id.to_string()),
            (labels::APP, id.app.clone()),
            (labels::ENV, id.env.clone()),
            (labels::GROUP, id.group.clone()),
            (labels::INDEX, id.index.to_string()),
            (labels::HOST, self.host.clone()),
            (labels::EPOCH, self.epoch.to_string()),
            (labels::SPEC_HASH, self.spec_hash()),
            (labels::SHAPE_HASH, self.shape_hash()),
        ] {
            l.insert(k.to_string(), v);
        }
        if let Some(n) = &self.network {
            l.insert(labels::NETWORK.into(), n.network.clone());
            l.insert(labels::DOCKER_NETWORK.into(), n.docker_network.clone());
            l.insert(labels::IP.into(), n.ipv4.to_string());
        }
        l
    }

    /// A stable 64-bit FNV-1a hash (hex) of what the engine applies — not of
    /// the host, the epoch or the health check, which can change without
    /// recreating the container. Stored as a label so a reconciler sees
    /// whether a running container matches its spec.
    pub fn spec_hash(&self) -> String {
        let mut applied = self.clone();
        applied.host.clear();
        applied.epoch = 0;
        applied.health = None;
        fnv_json(&applied)
    }

    /// [`Self::spec_hash`] without the cpu and memory limits — what
    /// [`Driver::update_resources`](crate::Driver::update_resources) can
    /// change on a live container. Two specs with the same shape hash differ
    /// at most in those limits.
    pub fn shape_hash(&self) -> String {
        let mut shape = self.clone();
        shape.host.clear();
        shape.epoch = 0;
        shape.health = None;
        shape.resources.cpu_millis = 0;
        shape.resources.memory_bytes = 0;
        fnv_json(&shape)
    }

    /// Checks everything that can be checked without the engine and reports
    /// every problem at once.
    pub fn validate(&self) -> Result<(), DriverError> {
        let mut e = ValidationErrors::new();
        let id = &self.instance;
        check_name(&mut e, "instance.app", &id.app);
        check_name(&mut e, "instance.env", &id.env);
        check_name(&mut e, "instance.group", &id.group);
        check_name(&mut e, "host", &self.host);
        if self.image.trim().is_empty() {
            e.add("image", "required", "an image is required");
        } else if self
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            e.add(
                "image",
                "invalid_image",
                "image must not contain spaces or control characters",
            );
        }
        for (i, a) in self.command.iter().enumerate() {
            if a.contains('\0') {
                e.add(
                    format!("command[{i}]"),
                    "invalid_command",
                    "arguments must not contain NUL",
                );
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                e.add(
                    format!("env.{k}"),
                    "invalid_env",
                    "names must be non-empty without '=' or NUL, values without NUL",
                );
            }
        }
        let mut seen_ports = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if *p == 0 {
                e.add(
                    format!("ports[{i}]"),
                    "out_of_range",
                    "port must be 1-65535",
                );
            } else if !seen_ports.insert(*p) {
                e.add(
                    format!("ports[{i}]"),
                    "duplicate",
                    format!("port {p} is listed twice"),
                );
            }
        }
        for (k, v) in &self.labels {
            if k.starts_with(labels::RESERVED_PREFIX) {
                e.add(
                    format!("labels.{k}"),
                    "reserved_label",
                    "labels starting with 'jdos.' are set by jdos itself",
                );
            } else {
                check_label(&mut e, "labels", k, v);
            }
        }
        if let Some(n) = &self.network {
            check_name(&mut e, "network.network", &n.network);
            if n.docker_network.is_empty()
                || !n
                    .docker_network
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                e.add(
                    "network.docker_network",
                    "invalid_name",
                    "a docker network name is 1+ of [A-Za-z0-9-_.]",
                );
            }
            let net = n.subnet.trunc();
            if !net.contains(&n.ipv4) {
                e.add(
                    "network.ipv4",
                    "out_of_subnet",
                    format!("{} is not in {} ({})", n.ipv4, net, n.network),
                );
            } else if n.ipv4 == net.network() || n.ipv4 == net.broadcast() || n.ipv4 == n.gateway {
                e.add(
                    "network.ipv4",
                    "reserved_address",
                    format!(
                        "{} is the network, broadcast or gateway address of {}",
                        n.ipv4, net
                    ),
                );
            }
        }
        self.validate_resources(&mut e);
        self.validate_storage(&mut e);
        if let Some(h) = &self.health {
            validate_health(&mut e, h);
        }
        if self.stop_grace_secs > 3600 {
            e.add(
                "stop_grace_secs",
                "out_of_range",
                "stop grace must be at most 3600 seconds",
            );
        }
        e.into_result().map_err(DriverError::InvalidSpec)
    }

    fn validate_resources(&self, e: &mut ValidationErrors) {
        validate_limits(e, &self.resources, &self.isolation);
    }

    fn validate_storage(&self, e: &mut ValidationErrors) {
        let s = &self.storage;
        let mut targets = BTreeSet::new();
        let mut check_target = |e: &mut ValidationErrors, field: String, path: &str| {
            if !is_clean_abs_path(path) {
                e.add(
                    field,
                    "invalid_path",
                    format!(
                        "{path:?} must be an absolute path other than '/' without '..', ':' or ','"
                    ),
                );
            } else if !targets.insert(path.to_string()) {
                e.add(field, "duplicate", format!("{path} is mounted twice"));
            }
        };
        let mut by_tier: BTreeMap<StorageTier, u64> = BTreeMap::new();
        for (i, t) in s.tmpfs.iter().enumerate() {
            check_target(e, format!("storage.tmpfs[{i}].path"), &t.path);
            if t.size_bytes == 0 {
                e.add(
                    format!("storage.tmpfs[{i}].size_bytes"),
                    "out_of_range",
                    "a tmpfs needs a size",
                );
            }
            let sum = by_tier.entry(StorageTier::L0Tmpfs).or_default();
            // Saturating: sizes are user input, and a wrapped sum would
            // slip under the budget.
            *sum = sum.saturating_add(t.size_bytes);
        }
        let mut names = BTreeSet::new();
        for (i, v) in s.host_volumes.iter().enumerate() {
            check_target(e, format!("storage.host_volumes[{i}].path"), &v.path);
            check_name(e, &format!("storage.host_volumes[{i}].name"), &v.name);
            if !names.insert((v.tier, v.name.clone())) {
                e.add(
                    format!("storage.host_volumes[{i}].name"),
                    "duplicate",
                    format!("volume {} is listed twice", v.name),
                );
            }
            if v.size_bytes == 0 {
                e.add(
                    format!("storage.host_volumes[{i}].size_bytes"),
                    "out_of_range",
                    "a volume needs a size budget",
                );
            }
            let sum = by_tier.entry(v.tier.tier()).or_default();
            // Saturating: sizes are user input, and a wrapped sum would
            // slip under the budget.
            *sum = sum.saturating_add(v.size_bytes);
        }
        let mut block_names = BTreeSet::new();
        for (i, v) in s.block_volumes.iter().enumerate() {
            check_target(e, format!("storage.block_volumes[{i}].path"), &v.path);
            check_name(e, &format!("storage.block_volumes[{i}].name"), &v.name);
            if !block_names.insert(v.name.clone()) {
                e.add(
                    format!("storage.block_volumes[{i}].name"),
                    "duplicate",
                    format!("volume {} is listed twice", v.name),
                );
            }
            if v.size_bytes == 0 {
                e.add(
                    format!("storage.block_volumes[{i}].size_bytes"),
                    "out_of_range",
                    "a volume needs a size",
                );
            }
            if v.driver.is_empty()
                || !v.driver.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':')
                })
            {
                e.add(
                    format!("storage.block_volumes[{i}].driver"),
                    "invalid_name",
                    "a volume driver name is 1+ of [A-Za-z0-9-_./:]",
                );
            }
            let sum = by_tier.entry(StorageTier::L3Block).or_default();
            // Saturating: sizes are user input, and a wrapped sum would
            // slip under the budget.
            *sum = sum.saturating_add(v.size_bytes);
        }
        for (tier, want) in by_tier {
            let have = self.resources.disk.get(tier);
            if want > have {
                e.add(
                    format!("resources.disk.{}", tier.short()),
                    "over_budget",
                    format!(
                        "the {} mounts ask {want} bytes but the container reserves {have}: raise resources.disk.{} or shrink the mounts",
                        tier.short(),
                        tier.short()
                    ),
                );
            }
        }
    }
}

/// Checks cpu, memory and isolation settings (shared by create and live
/// resize).
pub fn validate_limits(e: &mut ValidationErrors, r: &Resources, iso: &Isolation) {
    if r.cpu_millis == 0 {
        e.add(
            "resources.cpu_millis",
            "out_of_range",
            "must be greater than 0",
        );
    }
    if r.memory_bytes < MIN_MEMORY_BYTES {
        e.add(
            "resources.memory_bytes",
            "out_of_range",
            format!("must be at least {MIN_MEMORY_BYTES} bytes (6 MiB, the engine's minimum)"),
        );
    }
    match &iso.cpu {
        CpuPolicy::Shares => {}
        CpuPolicy::Quota { period_us } => {
            if !(1_000..=1_000_000).contains(period_us) {
                e.add(
                    "isolation.cpu.period_us",
                    "out_of_range",
                    "the CFS period must be 1000-1000000 µs",
                );
            } else if cpu_quota_us(r.cpu_millis, *period_us) < MIN_CFS_QUOTA_US {
                e.add(
                    "isolation.cpu",
                    "out_of_range",
                    format!(
                        "{} millicores over a {period_us} µs period is a quota below the kernel's 1000 µs minimum: raise the cpu or the period",
                        r.cpu_millis
                    ),
                );
            }
        }
        CpuPolicy::Cpuset { cpus } => {
            let unique: BTreeSet<_> = cpus.iter().collect();
            if cpus.is_empty() {
                e.add(
                    "isolation.cpu.cpus",
                    "required",
                    "a cpuset needs at least one cpu",
                );
            } else if unique.len() != cpus.len() {
                e.add("isolation.cpu.cpus", "duplicate", "a cpu is listed twice");
            } else if (cpus.len() as u64) * 1000 < r.cpu_millis {
                e.add(
                    "isolation.cpu.cpus",
                    "too_few_cpus",
                    format!(
                        "{} pinned cpus cannot give the {} millicores requested: pin more cpus or request less",
                        cpus.len(),
                        r.cpu_millis
                    ),
                );
            }
        }
    }
    if let Some(ms) = iso.memory_swap_bytes {
        if ms < r.memory_bytes {
            e.add(
                "isolation.memory_swap_bytes",
                "out_of_range",
                "memory+swap must be at least the memory limit (equal means no swap)",
            );
        }
    }
    if iso.swappiness.is_some_and(|s| s > 100) {
        e.add(
            "isolation.swappiness",
            "out_of_range",
            "swappiness must be 0-100",
        );
    }
    if iso.pids_limit == Some(0) {
        e.add(
            "isolation.pids_limit",
            "out_of_range",
            "a pids limit must be at least 1",
        );
    }
    if let Some(n) = iso.nofile {
        if n.soft == 0 || n.soft > n.hard || n.hard > i64::MAX as u64 {
            e.add(
                "isolation.nofile",
                "out_of_range",
                "nofile needs 1 <= soft <= hard",
            );
        }
    }
    if let Some(w) = iso.blkio_weight {
        if !(10..=1000).contains(&w) {
            e.add(
                "isolation.blkio_weight",
                "out_of_range",
                "blkio weight must be 10-1000",
            );
        }
    }
}

fn validate_health(e: &mut ValidationErrors, h: &HealthCheck) {
    match &h.probe {
        Probe::Tcp { port } | Probe::Http { port, .. } if *port == 0 => {
            e.add("health.probe.port", "out_of_range", "port must be 1-65535");
        }
        _ => {}
    }
    if let Probe::Http { path, .. } = &h.probe {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            e.add(
                "health.probe.path",
                "invalid_path",
                "an http path starts with '/' and has no spaces",
            );
        }
    }
    if let Probe::Exec { command } = &h.probe {
        if command.is_empty() || command.iter().any(|a| a.contains('\0')) {
            e.add(
                "health.probe.command",
                "invalid_command",
                "an exec probe needs a command without NUL",
            );
        }
    }
    if h.interval_ms < 100 {
        e.add(
            "health.interval_ms",
            "out_of_range",
            "probe at most every 100 ms",
        );
    }
    if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms.max(100) {
        e.add(
            "health.timeout_ms",
            "out_of_range",
            "the timeout must be positive and at most the interval",
        );
    }
    if h.retries == 0 {
        e.add(
            "health.retries",
            "out_of_range",
            "retries must be at least 1",
        );
    }
}

fn is_clean_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && p != "/"
        && !p.ends_with('/')
        && !p.contains("//")
        && !p.contains(':')
        && !p.contains(',')
        && !p.chars().any(char::is_control)
        && !p.split('/').any(|c| c == ".." || c == ".")
}

/// A stable 64-bit FNV-1a hash (hex) of `v`'s JSON: serde_json keeps
/// struct field order and BTreeMap order.
fn fnv_json<T: Serialize>(v: &T) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::resources::MIB;

    pub(crate) fn spec() -> ContainerSpec {
        let id: InstanceId = "shop/prod/web/3".parse().unwrap();
        let mut r = Resources::new(500, 64 * MIB);
        r.disk.l0 = 16 * MIB;
        r.disk.l1 = 32 * MIB;
        let mut s = ContainerSpec::new(id, "jdos-busybox:latest", "h1", r);
        s.network = Some(NetworkAttachment {
            network: "n1".into(),
            docker_network: "jdos-n1".into(),
            subnet: "10.213.1.0/24".parse().unwrap(),
            gateway: "10.213.1.1".parse().unwrap(),
            ipv4: "10.213.1.10".parse().unwrap(),
        });
        s.storage.tmpfs.push(TmpfsMount {
            path: "/scratch".into(),
            size_bytes: 16 * MIB,
        });
        s.storage.host_volumes.push(HostVolume {
            tier: HostTier::L1,
            name: "data".into(),
            path: "/data".into(),
            size_bytes: 32 * MIB,
            read_only: false,
        });
        s
    }

    fn fields(err: DriverError) -> Vec<String> {
        match err {
            DriverError::InvalidSpec(v) => v.errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected InvalidSpec, got {other}"),
        }
    }

    #[test]
    fn a_good_spec_validates_and_labels_carry_the_identity() {
        let s = spec();
        s.validate().unwrap();
        let l = s.all_labels();
        assert_eq!(l[labels::INSTANCE], "shop/prod/web/3");
        assert_eq!(l[labels::IP], "10.213.1.10");
        assert_eq!(l[labels::HOST], "h1");
        assert_eq!(labels::instance_of(&l), Some(s.instance.clone()));
        assert_eq!(l[labels::SPEC_HASH].len(), 16);
    }

    #[test]
    fn spec_hash_changes_with_the_spec() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a.spec_hash(), b.spec_hash());
        b.epoch = 9;
        b.host = "h2".into();
        b.health = Some(HealthCheck::new(Probe::Tcp { port: 80 }));
        assert_eq!(
            a.spec_hash(),
            b.spec_hash(),
            "placement and probes are not applied"
        );
        b.env.insert("X".into(), "1".into());
        assert_ne!(a.spec_hash(), b.spec_hash());
        let mut c = spec();
        c.isolation.pids_limit = Some(1);
        assert_ne!(a.spec_hash(), c.spec_hash());
        assert_ne!(a.shape_hash(), c.shape_hash());
        let mut d = spec();
        d.resources.memory_bytes *= 2;
        d.resources.cpu_millis += 100;
        assert_ne!(a.spec_hash(), d.spec_hash());
        assert_eq!(a.shape_hash(), d.shape_hash(), "cpu and memory update live");
        d.resources.disk.l0 += 1;
        assert_ne!(a.shape_hash(), d.shape_hash(), "disk budgets do not");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = spec();
        s.image = "".into();
        s.ports = vec![80, 80, 0];
        s.labels.insert("jdos.instance".into(), "x".into());
        s.network.as_mut().unwrap().ipv4 = "10.213.1.1".parse().unwrap();
        s.resources.memory_bytes = MIB;
        s.isolation.memory_swap_bytes = Some(MIB / 2);
        s.isolation.swappiness = Some(101);
        s.isolation.blkio_weight = Some(5);
        s.storage.tmpfs.push(TmpfsMount {
            path: "/data".into(),
            size_bytes: MIB,
        });
        s.health = Some(HealthCheck::new(Probe::Http {
            port: 80,
            path: "no-slash".into(),
        }));
        let f = fields(s.validate().unwrap_err());
        for want in [
            "image",
            "ports[1]",
            "ports[2]",
            "labels.jdos.instance",
            "network.ipv4",
            "resources.memory_bytes",
            "isolation.memory_swap_bytes",
            "isolation.swappiness",
            "isolation.blkio_weight",
            "storage.host_volumes[0].path",
            "resources.disk.l0",
            "health.probe.path",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn cpu_policies_are_checked() {
        let mut s = spec();
        s.isolation.cpu = CpuPolicy::Quota { period_us: 100_000 };
        s.resources.cpu_millis = 5; // 500 µs quota
        assert_eq!(fields(s.validate().unwrap_err()), ["isolation.cpu"]);
        s.resources.cpu_millis = 2500;
        s.isolation.cpu = CpuPolicy::Cpuset { cpus: vec![0, 1] };
        assert_eq!(fields(s.validate().unwrap_err()), ["isolation.cpu.cpus"]);
        s.isolation.cpu = CpuPolicy::Cpuset {
            cpus: vec![0, 1, 2],
        };
        s.validate().unwrap();
        assert_eq!(cpu_shares(500), 512);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(256_000), MAX_CPU_SHARES);
        assert_eq!(
            cpu_shares(1_000_000),
            MAX_CPU_SHARES,
            "clamped, not 1024000"
        );
        assert_eq!(cpu_quota_us(1500, 100_000), 150_000);
    }

    #[test]
    fn storage_over_the_reserved_budget_is_rejected() {
        let mut s = spec();
        s.storage.host_volumes[0].size_bytes = 33 * MIB;
        assert_eq!(fields(s.validate().unwrap_err()), ["resources.disk.l1"]);
        let mut s = spec();
        s.storage.tmpfs[0].path = "/a/../etc".into();
        assert_eq!(fields(s.validate().unwrap_err()), ["storage.tmpfs[0].path"]);
        // Two huge mounts must not wrap around to a sum under the budget
        // (nor panic in a debug build).
        let mut s = spec();
        s.storage.tmpfs[0].size_bytes = u64::MAX;
        s.storage.tmpfs.push(TmpfsMount {
            path: "/b".into(),
            size_bytes: 2,
        });
        assert_eq!(fields(s.validate().unwrap_err()), ["resources.disk.l0"]);
    }

    #[test]
    fn spec_for_a_placed_container_record() {
        let net = Network {
            name: "n1".into(),
            vlan: 7,
            subnet: "10.213.1.0/24".parse().unwrap(),
            gateway: "10.213.1.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec![],
            quarantine_secs: 300,
        };
        let mut c = Container {
            id: "shop/prod/web/3".parse().unwrap(),
            datacenter: "dc1".into(),
            host: Some("h9".into()),
            host_epoch: 4,
            network: Some("n1".into()),
            ip: Some("10.213.1.20".parse().unwrap()),
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(500, 64 * MIB),
            desired: Default::default(),
            phase: Default::default(),
            restarts: 0,
            message: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let t = jdos_types::group::ContainerTemplate {
            image: "ignored:1".into(),
            command: vec!["httpd".into()],
            ports: vec![80],
            ..Default::default()
        };
        let r = NetworkRealization::bridge();
        let s = ContainerSpec::for_container(&c, &t, Some((&net, &r))).unwrap();
        s.validate().unwrap();
        assert_eq!(
            (s.host.as_str(), s.epoch, s.ports.as_slice()),
            ("h9", 4, &[80u16][..])
        );
        let a = s.network.unwrap();
        assert_eq!(
            (a.docker_network.as_str(), a.ipv4),
            ("jdos-n1", c.ip.unwrap())
        );
        assert!(
            ContainerSpec::for_container(&c, &t, None).is_err(),
            "ip without network"
        );
        c.host = None;
        assert!(ContainerSpec::for_container(&c, &t, Some((&net, &r))).is_err());
    }

    #[test]
    fn block_volume_names_belong_to_the_identity() {
        let v = BlockVolume {
            name: "db".into(),
            path: "/db".into(),
            size_bytes: 1,
            driver: "local".into(),
            options: BTreeMap::new(),
        };
        let id: InstanceId = "a/b/c/1".parse().unwrap();
        assert_eq!(v.volume_name(&id), "jdos-a-b-c-1-db");
        assert!(v.driver_options().is_empty(), "local takes no size option");
        let v = BlockVolume {
            driver: "rbd".into(),
            ..v
        };
        assert_eq!(v.driver_options()["size"], "1");
    }
}
