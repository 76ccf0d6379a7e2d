//! Metric collection on a host: the host itself from `/proc` and `/sys`, each container
//! from its cgroup (v1 or v2, detected) and its network namespace (`/proc/<pid>/net/dev`).
//!
//! The kernel exposes most figures as cumulative counters; a [`Collector`] keeps the
//! previous reading of each and reports the rate between two successive rounds (a counter
//! that went down, e.g. after a container restart, gives no rate that round). The first
//! round therefore carries gauges only. Everything is read from files whose roots are
//! configurable ([`Paths`]), so tests run against fixture trees.
//!
//! Cost: one round reads ~15 host files plus ~10 small files per container; the time a
//! round took is itself reported as [`names::AGENT_COLLECT_SECONDS`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use jdos_types::metrics::{names, MetricBatch};

pub mod cgroup;
pub mod host;

pub use cgroup::CgroupMode;

/// Where the kernel's files are (overridable for tests and for agents running in a
/// container with the host's `/proc` mounted elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// The cgroup mount (`/sys/fs/cgroup`).
    pub cgroup: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            proc: "/proc".into(),
            sys: "/sys".into(),
            cgroup: "/sys/fs/cgroup".into(),
        }
    }
}

impl Paths {
    /// `proc`, `sys` and `sys/fs/cgroup` under one root (a fixture tree).
    pub fn under(root: &Path) -> Self {
        Paths {
            proc: root.join("proc"),
            sys: root.join("sys"),
            cgroup: root.join("sys/fs/cgroup"),
        }
    }
}

/// A container to collect: its engine id (to find its cgroup) and the labels its series
/// carry (`app`, `env`, `group`, `instance`, `department`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTarget {
    /// The engine's container id (full 64-hex Docker id).
    pub engine_id: String,
    /// Labels of its series.
    pub labels: BTreeMap<String, String>,
}

/// Cumulative readings of one source at one time, by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) t_ms: i64,
    pub(crate) values: HashMap<String, f64>,
}

impl Counters {
    pub(crate) fn new(t_ms: i64) -> Self {
        Counters {
            t_ms,
            values: HashMap::new(),
        }
    }
}

/// Output of one round being built: samples at one timestamp.
pub(crate) struct Round<'a> {
    pub(crate) batch: &'a mut MetricBatch,
    pub(crate) t_ms: i64,
}

impl Round<'_> {
    pub(crate) fn gauge(&mut self, name: &str, labels: &BTreeMap<String, String>, v: f64) {
        if v.is_finite() {
            self.batch.push(name, labels, self.t_ms, v);
        }
    }
}

/// Per-second rate of counter `key` between `prev` and `cur` (`None` on the first round,
/// after a reset, or when the time did not advance).
pub(crate) fn rate(prev: Option<&Counters>, cur: &Counters, key: &str) -> Option<f64> {
    let prev = prev?;
    let dt = (cur.t_ms - prev.t_ms) as f64 / 1000.0;
    let (a, b) = (prev.values.get(key)?, cur.values.get(key)?);
    (dt > 0.0 && b >= a).then(|| (b - a) / dt)
}

/// Ratio of the increases of two counters between rounds (`None` when `den` did not grow).
pub(crate) fn delta_ratio(
    prev: Option<&Counters>,
    cur: &Counters,
    num: &str,
    den: &str,
) -> Option<f64> {
    let prev = prev?;
    let dn = cur.values.get(num)? - prev.values.get(num)?;
    let dd = cur.values.get(den)? - prev.values.get(den)?;
    (dd > 0.0 && dn >= 0.0).then(|| (dn / dd).min(1.0))
}

/// Collects host and container metrics round after round, remembering the previous
/// cumulative readings to compute rates.
#[derive(Debug)]
pub struct Collector {
    paths: Paths,
    host_labels: BTreeMap<String, String>,
    mode: CgroupMode,
    prev_host: Option<Counters>,
    prev_containers: HashMap<String, Counters>,
}

impl Collector {
    /// A collector reading `paths`; `host_labels` (`host`, `datacenter`) go on every series.
    pub fn new(paths: Paths, host_labels: BTreeMap<String, String>) -> Self {
        let mode = CgroupMode::detect(&paths.cgroup);
        tracing::debug!(?mode, cgroup = %paths.cgroup.display(), "cgroup mode detected");
        Collector {
            paths,
            host_labels,
            mode,
            prev_host: None,
            prev_containers: HashMap::new(),
        }
    }

    /// The cgroup layout found at start.
    pub fn cgroup_mode(&self) -> CgroupMode {
        self.mode
    }

    /// One round at `t_ms`: host metrics, then each container's. A container whose cgroup
    /// cannot be found (not started yet, just removed) is skipped; containers that
    /// disappeared are forgotten. Reading errors of single files skip those metrics only.
    pub fn collect(&mut self, t_ms: i64, containers: &[ContainerTarget]) -> MetricBatch {
        let started = Instant::now();
        let mut batch = MetricBatch {
            common: self.host_labels.clone(),
            series: Vec::new(),
        };
        let mut round = Round {
            batch: &mut batch,
            t_ms,
        };
        let cur = host::collect(&self.paths, self.prev_host.as_ref(), &mut round, t_ms);
        self.prev_host = Some(cur);
        let mut seen = 0u32;
        let mut next = HashMap::with_capacity(containers.len());
        for c in containers {
            let prev = self.prev_containers.get(&c.engine_id);
            if let Some(cur) = cgroup::collect(&self.paths, self.mode, c, prev, &mut round, t_ms) {
                seen += 1;
                next.insert(c.engine_id.clone(), cur);
            }
        }
        self.prev_containers = next;
        let empty = BTreeMap::new();
        round.gauge(names::AGENT_CONTAINERS, &empty, f64::from(seen));
        round.gauge(
            names::AGENT_COLLECT_SECONDS,
            &empty,
            started.elapsed().as_secs_f64(),
        );
        batch
    }
}

/// Reads a whole small file; `None` when it is missing or unreadable.
pub(crate) fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Reads a file holding one number.
pub(crate) fn read_num(p: &Path) -> Option<f64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (meminfo without the unit, memory.stat, cpu.stat, vmstat).
pub(crate) fn key_values(text: &str) -> HashMap<&str, f64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?.trim_end_matches(':');
            let v = it.next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

/// Per-interface counters of a `/proc/<pid>/net/dev` or `/proc/net/dev` file:
/// `(interface, [rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop])`.
pub(crate) fn net_dev(text: &str) -> Vec<(String, [f64; 8])> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<f64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 12).then(|| {
                (
                    name.trim().to_string(),
                    [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
                )
            })
        })
        .collect()
}

/// Metric names of the eight [`net_dev`] columns, for hosts and containers.
pub(crate) const NET_HOST: [&str; 8] = [
    names::HOST_NET_RX_BYTES,
    names::HOST_NET_RX_PACKETS,
    names::HOST_NET_RX_ERRORS,
    names::HOST_NET_RX_DROPS,
    names::HOST_NET_TX_BYTES,
    names::HOST_NET_TX_PACKETS,
    names::HOST_NET_TX_ERRORS,
    names::HOST_NET_TX_DROPS,
];

/// See [`NET_HOST`].
pub(crate) const NET_CONTAINER: [&str; 8] = [
    names::CONTAINER_NET_RX_BYTES,
    names::CONTAINER_NET_RX_PACKETS,
    names::CONTAINER_NET_RX_ERRORS,
    names::CONTAINER_NET_RX_DROPS,
    names::CONTAINER_NET_TX_BYTES,
    names::CONTAINER_NET_TX_PACKETS,
    names::CONTAINER_NET_TX_ERRORS,
    names::CONTAINER_NET_TX_DROPS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_two_readings_and_skip_resets() {
        let mut a = Counters::new(0);
        a.values.insert("x".into(), 100.0);
        let mut b = Counters::new(10_000);
        b.values.insert("x".into(), 150.0);
        assert_eq!(rate(None, &b, "x"), None);
        assert_eq!(rate(Some(&a), &b, "x"), Some(5.0));
        let mut c = Counters::new(20_000);
        c.values.insert("x".into(), 3.0);
        assert_eq!(rate(Some(&b), &c, "x"), None);
        assert_eq!(rate(Some(&a), &b, "missing"), None);
    }

    #[test]
    fn net_dev_reads_the_eight_columns() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes ...\n  eth0: 100 2 0 1 0 0 0 0 200 3 0 0 0 0 0 0\n";
        let v = net_dev(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, "eth0");
        assert_eq!(v[0].1, [100.0, 2.0, 0.0, 1.0, 200.0, 3.0, 0.0, 0.0]);
    }
}
