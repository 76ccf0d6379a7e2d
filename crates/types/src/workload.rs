//! Workload data shared by the group template (what a user asks for) and
//! the runtime's container spec (what a driver runs): cpu policy, storage
//! mounts per tier, health checks. Plain data; the runtime validates and
//! applies it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{InstanceId, StorageTier};

/// Default CFS period (100 ms), the kernel's and Docker's default.
pub const DEFAULT_CFS_PERIOD_US: u64 = 100_000;
/// The weight cgroup v1 gives one whole cpu (`cpu.shares`).
pub const SHARES_PER_CPU: u64 = 1024;
/// Default seconds between SIGTERM and SIGKILL on stop.
pub const DEFAULT_STOP_GRACE_SECS: u32 = 10;

/// How cpu millicores become cgroup settings. The seeds' lesson: shares are
/// fair and elastic (a container may use idle cpu), quota caps hard (steady
/// latency for noisy neighbours), cpuset pins cores (no cache thrash for
/// latency-critical apps, at the price of utilization).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum CpuPolicy {
    /// `cpu.shares` proportional to millicores (1024 per cpu). The default.
    #[default]
    Shares,
    /// A CFS quota: `quota = millicores × period / 1000` (plus shares).
    Quota {
        /// CFS period in microseconds (1,000–1,000,000).
        #[serde(default = "default_period")]
        period_us: u64,
    },
    /// Pinned to these cpus (plus shares among whoever shares them).
    Cpuset {
        /// Cpu numbers, as the host counts them.
        cpus: Vec<u32>,
    },
}

fn default_period() -> u64 {
    DEFAULT_CFS_PERIOD_US
}

/// An `RLIMIT_NOFILE` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nofile {
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// How a container is isolated beyond its cpu and memory amounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// Cpu policy.
    #[serde(default)]
    pub cpu: CpuPolicy,
    /// Memory + swap limit in bytes; `None` = the memory limit, i.e. no
    /// swap (the default: swapping makes latency unpredictable).
    #[serde(default)]
    pub memory_swap_bytes: Option<u64>,
    /// `memory.swappiness`, 0–100 (`None`: the host's).
    #[serde(default)]
    pub swappiness: Option<u8>,
    /// Most processes/threads (a fork bomb stays inside).
    #[serde(default)]
    pub pids_limit: Option<u64>,
    /// Open-file limit.
    #[serde(default)]
    pub nofile: Option<Nofile>,
    /// Block-io weight 10–1000 (needs a kernel with the CFQ/BFQ weight).
    #[serde(default)]
    pub blkio_weight: Option<u16>,
}

impl Default for Isolation {
    /// Shares, no swap, 4096 pids, 16384 open files (below the engine's own
    /// hard limit on common hosts: runc cannot raise a container above it).
    fn default() -> Self {
        Isolation {
            cpu: CpuPolicy::Shares,
            memory_swap_bytes: None,
            swappiness: None,
            pids_limit: Some(4096),
            nofile: Some(Nofile {
                soft: 16_384,
                hard: 16_384,
            }),
            blkio_weight: None,
        }
    }
}

/// The largest `cpu.shares` the kernel takes (cgroup v1 clamps to it; on
/// cgroup v2 runc maps shares to `cpu.weight` 1–10000 and a larger value
/// makes the container fail to start).
pub const MAX_CPU_SHARES: u64 = 262_144;

/// `cpu.shares` for `millis` millicores (within the kernel's 2–262144).
pub fn cpu_shares(millis: u64) -> u64 {
    (millis.saturating_mul(SHARES_PER_CPU) / 1000).clamp(2, MAX_CPU_SHARES)
}

/// The CFS quota (µs per period) that gives `millis` millicores.
pub fn cpu_quota_us(millis: u64, period_us: u64) -> u64 {
    millis.saturating_mul(period_us) / 1000
}

/// An L0 tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Absolute path inside the container.
    pub path: String,
    /// Size limit in bytes (enforced by the kernel's tmpfs).
    pub size_bytes: u64,
}

/// Local host-path tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostTier {
    /// L1 local SSD.
    L1,
    /// L2 local SAS.
    L2,
}

impl HostTier {
    /// The matching [`StorageTier`].
    pub fn tier(self) -> StorageTier {
        match self {
            HostTier::L1 => StorageTier::L1Ssd,
            HostTier::L2 => StorageTier::L2Sas,
        }
    }
}

/// An L1/L2 volume: a directory under the tier's root on the host,
/// `<root>/<container name>/<name>`, bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVolume {
    /// Tier.
    pub tier: HostTier,
    /// Volume name (a DNS label), the directory's name.
    pub name: String,
    /// Absolute path inside the container.
    pub path: String,
    /// Size budget in bytes (admission-checked against the tier; see
    /// [`crate::storage`] for what enforces it).
    pub size_bytes: u64,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// An L3 network block volume through a Docker volume driver. Its name is
/// owned by the identity (`<container name>-<name>`), like the IP, so a
/// replacement on another host re-attaches the same volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockVolume {
    /// Volume name suffix (a DNS label).
    pub name: String,
    /// Absolute path inside the container.
    pub path: String,
    /// Size in bytes, passed to non-`local` drivers as the `size` option.
    pub size_bytes: u64,
    /// Volume driver (`local` by default).
    #[serde(default = "default_volume_driver")]
    pub driver: String,
    /// Driver options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The default volume driver.
pub fn default_volume_driver() -> String {
    "local".to_string()
}

impl BlockVolume {
    /// The engine-wide volume name for `instance`.
    pub fn volume_name(&self, instance: &InstanceId) -> String {
        format!("{}-{}", instance.docker_name(), self.name)
    }

    /// Driver options including the size for drivers that take one (the
    /// `local` driver rejects unknown options, so it gets none added).
    pub fn driver_options(&self) -> BTreeMap<String, String> {
        let mut o = self.options.clone();
        if self.driver != "local" {
            o.entry("size".into())
                .or_insert_with(|| self.size_bytes.to_string());
        }
        o
    }
}

/// Mounts of the storage tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// L0 tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// L1/L2 host-path volumes.
    #[serde(default)]
    pub host_volumes: Vec<HostVolume>,
    /// L3 named volumes.
    #[serde(default)]
    pub block_volumes: Vec<BlockVolume>,
}

/// How a health check probes the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Probe {
    /// A TCP connect to the container's IP.
    Tcp {
        /// Port.
        port: u16,
    },
    /// An HTTP GET to the container's IP; 2xx and 3xx are healthy.
    Http {
        /// Port.
        port: u16,
        /// Path, starting with `/`.
        path: String,
    },
    /// A command run inside the container; exit 0 is healthy.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
}

/// A health check: probe every `interval_ms`; `retries` consecutive
/// failures make the container unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The probe.
    pub probe: Probe,
    /// Milliseconds between probes.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Milliseconds one probe may take.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures before unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Milliseconds after start during which failures do not count.
    #[serde(default)]
    pub start_period_ms: u64,
}

fn default_interval() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    2_000
}
fn default_retries() -> u32 {
    3
}

impl HealthCheck {
    /// A check with the default timings (5 s interval, 2 s timeout, 3 retries).
    pub fn new(probe: Probe) -> Self {
        HealthCheck {
            probe,
            interval_ms: default_interval(),
            timeout_ms: default_timeout(),
            retries: default_retries(),
            start_period_ms: 0,
        }
    }
}
