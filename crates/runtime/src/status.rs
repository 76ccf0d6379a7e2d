//! What drivers report back: handles, status, stats, exec output.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use jdos_types::{ContainerPhase, InstanceId, UnixMillis};
use serde::{Deserialize, Serialize};

/// A created container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerHandle {
    /// Its identity.
    pub instance: InstanceId,
    /// The engine's name for it.
    pub name: String,
    /// The engine's id for it.
    pub id: String,
    /// Settings the engine accepted but could not apply (e.g. a blkio weight
    /// on a kernel without the weight controller).
    pub warnings: Vec<String>,
}

/// A container's state as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine.
    Restarting,
    /// Exited (stopped or crashed; see the exit code).
    Exited,
    /// Dead (removal failed half-way).
    Dead,
    /// Being removed.
    Removing,
    /// Anything else.
    Unknown,
}

impl RuntimeState {
    /// Maps Docker's state strings.
    pub fn from_docker(s: &str) -> Self {
        match s {
            "created" => RuntimeState::Created,
            "running" => RuntimeState::Running,
            "paused" => RuntimeState::Paused,
            "restarting" => RuntimeState::Restarting,
            "exited" => RuntimeState::Exited,
            "dead" => RuntimeState::Dead,
            "removing" => RuntimeState::Removing,
            _ => RuntimeState::Unknown,
        }
    }

    /// True for running (and paused, whose processes still exist).
    pub fn is_running(self) -> bool {
        matches!(self, RuntimeState::Running | RuntimeState::Paused)
    }
}

/// What `inspect` and `list` report about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The identity from its labels (`None` for a container with a broken
    /// `jdos.instance` label).
    pub instance: Option<InstanceId>,
    /// The engine's name.
    pub name: String,
    /// The engine's id.
    pub id: String,
    /// Image it runs.
    pub image: String,
    /// State.
    pub state: RuntimeState,
    /// Exit code of the last run (when exited).
    pub exit_code: Option<i64>,
    /// The kernel's OOM killer ended the last run.
    pub oom_killed: bool,
    /// The engine's error text for a failed start (e.g. address in use).
    pub error: String,
    /// IPv4 address on its jdos network (when running).
    pub ip: Option<Ipv4Addr>,
    /// Started at (ms since the epoch).
    pub started_at_ms: Option<UnixMillis>,
    /// Finished at (ms since the epoch).
    pub finished_at_ms: Option<UnixMillis>,
    /// Restarts done by the engine itself (jdos counts its own in the agent).
    pub restart_count: u32,
    /// All labels (`jdos.*` say host, epoch, spec hash …). Shared: an agent
    /// lists its engine on every reconcile pass, and a copy of a dozen
    /// strings per container per pass was most of what a pass cost.
    pub labels: Arc<BTreeMap<String, String>>,
}

impl ContainerStatus {
    /// The `jdos.epoch` label.
    pub fn epoch(&self) -> Option<u64> {
        self.labels.get(crate::labels::EPOCH)?.parse().ok()
    }

    /// The `jdos.host` label.
    pub fn host(&self) -> Option<&str> {
        self.labels.get(crate::labels::HOST).map(String::as_str)
    }

    /// The phase an agent reports for this status, given the verdict of its
    /// health check (`None`: no check, or no verdict yet).
    pub fn phase(&self, health: Option<crate::health::HealthStatus>) -> ContainerPhase {
        use crate::health::HealthStatus;
        match self.state {
            RuntimeState::Running | RuntimeState::Paused => match health {
                Some(HealthStatus::Unhealthy) => ContainerPhase::Unhealthy,
                Some(HealthStatus::Starting) => ContainerPhase::Starting,
                _ => ContainerPhase::Running,
            },
            RuntimeState::Created | RuntimeState::Restarting => ContainerPhase::Starting,
            RuntimeState::Exited if self.exit_code == Some(0) && !self.oom_killed => {
                ContainerPhase::Stopped
            }
            RuntimeState::Exited | RuntimeState::Dead | RuntimeState::Removing => {
                ContainerPhase::Failed
            }
            RuntimeState::Unknown => ContainerPhase::Failed,
        }
    }

    /// The `jdos.spec-hash` label.
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels
            .get(crate::labels::SPEC_HASH)
            .map(String::as_str)
    }

    /// The `jdos.shape-hash` label (absent on containers made before it
    /// existed).
    pub fn shape_hash(&self) -> Option<&str> {
        self.labels
            .get(crate::labels::SHAPE_HASH)
            .map(String::as_str)
    }
}

/// One sample of a container's usage counters (cumulative where the kernel
/// keeps them cumulative; rates are the monitor's job).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Sampled at (ms since the epoch), when the engine says.
    pub read_at_ms: Option<UnixMillis>,
    /// Cpu time used, ns.
    pub cpu_usage_ns: u64,
    /// Host cpu time, ns (for a usage ratio between two samples).
    pub system_cpu_ns: u64,
    /// Cpus the container may see.
    pub online_cpus: u32,
    /// Periods throttled by a CFS quota.
    pub cpu_throttled_periods: u64,
    /// Memory in use, bytes.
    pub memory_usage_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// Resident anonymous memory, bytes.
    pub memory_rss_bytes: u64,
    /// Page cache, bytes.
    pub memory_cache_bytes: u64,
    /// Swap in use, bytes.
    pub memory_swap_bytes: u64,
    /// Processes/threads.
    pub pids: u64,
    /// Bytes received on all interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent.
    pub net_tx_bytes: u64,
    /// Packets received.
    pub net_rx_packets: u64,
    /// Packets sent.
    pub net_tx_packets: u64,
    /// Bytes read from block devices.
    pub blkio_read_bytes: u64,
    /// Bytes written to block devices.
    pub blkio_write_bytes: u64,
}

/// Output of a command run in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code.
    pub exit_code: i64,
    /// Standard output (capped).
    pub stdout: String,
    /// Standard error (capped).
    pub stderr: String,
}

/// What `destroy` removes besides the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestroyOptions {
    /// Also remove its L1/L2 host directories and its L3 volumes. Keep them
    /// for a recreate in place (new spec, same data).
    pub remove_data: bool,
}

impl DestroyOptions {
    /// Remove the container and all its data: nothing is left.
    pub fn purge() -> Self {
        DestroyOptions { remove_data: true }
    }

    /// Remove the container, keep its data for a successor on this host.
    pub fn keep_data() -> Self {
        DestroyOptions { remove_data: false }
    }
}

/// Parses Docker's RFC 3339 UTC timestamps (`2026-11-22T03:05:05.123456789Z`)
/// to ms since the epoch; `None` for Docker's zero time (`0001-01-01…`) and
/// anything unparsable.
pub fn parse_docker_time(s: &str) -> Option<UnixMillis> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if y < 1970 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let ms_digits = &frac[..digits.min(3)];
        millis = ms_digits.parse::<i64>().ok()? * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            // `get`, not indexing: a multi-byte character would make a
            // byte range panic.
            let hours = o.get(1..3)?.parse::<i64>().ok()?;
            let minutes = o.get(4..6)?.parse::<i64>().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_state_exit_code_and_health() {
        use crate::health::HealthStatus;
        let mut s = ContainerStatus {
            instance: None,
            name: "c".into(),
            id: "i".into(),
            image: "img".into(),
            state: RuntimeState::Running,
            exit_code: None,
            oom_killed: false,
            error: String::new(),
            ip: None,
            started_at_ms: None,
            finished_at_ms: None,
            restart_count: 0,
            labels: Default::default(),
        };
        assert_eq!(s.phase(None), ContainerPhase::Running);
        assert_eq!(
            s.phase(Some(HealthStatus::Unhealthy)),
            ContainerPhase::Unhealthy
        );
        assert_eq!(
            s.phase(Some(HealthStatus::Starting)),
            ContainerPhase::Starting
        );
        s.state = RuntimeState::Exited;
        s.exit_code = Some(0);
        assert_eq!(s.phase(None), ContainerPhase::Stopped);
        s.oom_killed = true;
        assert_eq!(s.phase(None), ContainerPhase::Failed);
        s.oom_killed = false;
        s.exit_code = Some(2);
        assert_eq!(s.phase(None), ContainerPhase::Failed);
    }

    #[test]
    fn docker_times_parse() {
        assert_eq!(parse_docker_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_docker_time("2026-11-22T03:05:05.123456789Z"),
            Some(1_795_316_705_123)
        );
        assert_eq!(
            parse_docker_time("2026-11-22T04:05:05.5+01:00"),
            Some(1_795_316_705_500)
        );
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time("garbage"), None);
        // Not an offset, and no panic on a multi-byte character in it.
        assert_eq!(parse_docker_time("2026-11-22T04:05:05+0\u{e9}00"), None);
    }
}
