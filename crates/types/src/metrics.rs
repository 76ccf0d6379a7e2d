//! Metrics on the wire: what an agent pushes (`POST /api/v1/metrics/ingest`) and what
//! the query API answers (`GET /api/v1/metrics/query`), plus the names of the metrics
//! the agent collects ([`names`]) so that alert policies and the autoscaler refer to
//! them by constant.
//!
//! A [`MetricBatch`] is compact: each series' labels appear once, followed by its
//! samples as two parallel arrays (timestamps, values). Labels common to every series of
//! the batch (`host`, `datacenter`) are sent once in [`MetricBatch::common`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Validate, ValidationErrors};

/// Most series one batch may carry.
pub const MAX_BATCH_SERIES: usize = 100_000;
/// Most samples one batch may carry.
pub const MAX_BATCH_SAMPLES: usize = 2_000_000;

/// Samples of many series, pushed by an agent (or any admin/ops client).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricBatch {
    /// Labels added to every series of the batch (a series' own label of the same name wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common: BTreeMap<String, String>,
    /// The series and their samples.
    pub series: Vec<SeriesSamples>,
}

/// One series and its samples, in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesSamples {
    /// Metric name (`container_cpu_usage_cores`, see [`names`]).
    pub name: String,
    /// Labels (`app`, `group`, `instance`, `interface` …); empty values are dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Timestamps, unix ms, ascending.
    pub t: Vec<i64>,
    /// Values, one per timestamp (finite; JSON cannot carry NaN).
    pub v: Vec<f64>,
}

impl MetricBatch {
    /// Number of samples in the batch.
    pub fn samples(&self) -> usize {
        self.series.iter().map(|s| s.t.len()).sum()
    }

    /// Adds one sample of a series given by name and labels (appending to the last series
    /// when it is the same one).
    pub fn push(&mut self, name: &str, labels: &BTreeMap<String, String>, t: i64, v: f64) {
        if let Some(last) = self.series.last_mut() {
            if last.name == name && &last.labels == labels {
                last.t.push(t);
                last.v.push(v);
                return;
            }
        }
        self.series.push(SeriesSamples {
            name: name.to_string(),
            labels: labels.clone(),
            t: vec![t],
            v: vec![v],
        });
    }
}

impl Validate for MetricBatch {
    /// Checks the shape only (sizes, names, matching array lengths); label syntax is
    /// checked by the store when the series is created.
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::new();
        if self.series.len() > MAX_BATCH_SERIES {
            errs.add(
                "series",
                "too_many",
                format!(
                    "{} series in one batch, at most {MAX_BATCH_SERIES}: split it",
                    self.series.len()
                ),
            );
        }
        let n = self.samples();
        if n > MAX_BATCH_SAMPLES {
            errs.add(
                "series",
                "too_many",
                format!("{n} samples in one batch, at most {MAX_BATCH_SAMPLES}: split it"),
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            if s.name.is_empty() {
                errs.add(
                    format!("series[{i}].name"),
                    "required",
                    "a series needs a metric name",
                );
            }
            if s.t.len() != s.v.len() {
                errs.add(
                    format!("series[{i}].v"),
                    "invalid",
                    format!(
                        "{} timestamps but {} values: t and v must have the same length",
                        s.t.len(),
                        s.v.len()
                    ),
                );
            }
            if errs.errors.len() >= 20 {
                break;
            }
        }
        errs.into_result()
    }
}

/// What an ingest did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSummary {
    /// Samples stored.
    pub accepted: u64,
    /// Samples refused because they were not newer than the series' last one.
    pub out_of_order: u64,
    /// Samples refused because their window is already closed (too far in the past).
    pub too_old: u64,
    /// Series skipped because their name or labels are invalid.
    pub invalid_series: u64,
    /// Series created by this batch.
    pub new_series: u64,
}

/// How a series' samples inside one step become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketFn {
    /// The latest sample.
    Last,
    /// The mean (the default for gauges).
    Mean,
    /// The largest sample.
    Max,
    /// The smallest sample.
    Min,
    /// Per-second increase of a counter (the default for names ending in `_total`).
    Rate,
}

/// How series combine per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Sum.
    Sum,
    /// Mean.
    Avg,
    /// Largest.
    Max,
    /// Smallest.
    Min,
    /// 95th percentile (nearest rank).
    P95,
}

impl Aggregation {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Max => "max",
            Aggregation::Min => "min",
            Aggregation::P95 => "p95",
        }
    }
}

/// Labels a query may filter and group by.
pub const QUERY_LABELS: [&str; 8] = [
    "app",
    "env",
    "group",
    "instance",
    "host",
    "department",
    "datacenter",
    "interface",
];

/// `GET /api/v1/metrics/query` parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricQuery {
    /// Metric name.
    pub metric: String,
    /// Only series with this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only this env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only this instance (container identity `app.env.group.N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Only this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only this department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Only this datacenter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Only this network interface / disk device label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Cross-series aggregation (default `sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregation>,
    /// Per-series reduction in a step (default `rate` for `_total` names, else `mean`).
    #[serde(default, rename = "fn", skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketFn>,
    /// Group the result by this label (one of [`QUERY_LABELS`]); one series otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Start, unix ms (default: end − 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// End (exclusive), unix ms (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Step, ms (default: range / 60, at least 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
}

impl MetricQuery {
    /// A query of `metric` with every filter unset.
    pub fn new(metric: &str) -> Self {
        MetricQuery {
            metric: metric.to_string(),
            ..Self::default()
        }
    }

    /// The label filters that are set, as `(label, value)`.
    pub fn filters(&self) -> Vec<(&'static str, &str)> {
        let f = [
            ("app", &self.app),
            ("env", &self.env),
            ("group", &self.group),
            ("instance", &self.instance),
            ("host", &self.host),
            ("department", &self.department),
            ("datacenter", &self.datacenter),
            ("interface", &self.interface),
        ];
        f.into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }

    /// Sets a label filter by name; false for a label that cannot be filtered on.
    pub fn set_filter(&mut self, label: &str, value: &str) -> bool {
        let slot = match label {
            "app" => &mut self.app,
            "env" => &mut self.env,
            "group" => &mut self.group,
            "instance" => &mut self.instance,
            "host" => &mut self.host,
            "department" => &mut self.department,
            "datacenter" => &mut self.datacenter,
            "interface" => &mut self.interface,
            _ => return false,
        };
        *slot = Some(value.to_string());
        true
    }
}

/// One point of a result series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Step start, unix ms.
    pub t: i64,
    /// Aggregated value.
    pub v: f64,
    /// Series that had a value in the step.
    pub n: u32,
}

/// One result series: the group's label value (when grouped) and its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultSeries {
    /// The value of the `by` label (absent when not grouped or the label is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Series aggregated into this one.
    pub series: u32,
    /// The points, by time; steps without data are absent.
    pub points: Vec<MetricPoint>,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Metric name.
    pub metric: String,
    /// Start, unix ms.
    pub start: i64,
    /// End (exclusive), unix ms.
    pub end: i64,
    /// Step, ms.
    pub step: i64,
    /// Aggregation used.
    pub agg: Aggregation,
    /// Per-series reduction used.
    #[serde(rename = "fn")]
    pub bucket: BucketFn,
    /// Grouping label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Result series, sorted by group.
    pub result: Vec<ResultSeries>,
}

/// `GET /api/v1/metrics/latest`: the newest sample of each series of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestSample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Timestamp, unix ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// Names of the metrics the agent collects. Rates are computed by the agent from two
/// successive cumulative readings; "per second" in a name means such a rate.
pub mod names {
    /// Seconds the agent spent in one collection round (label `host`).
    pub const AGENT_COLLECT_SECONDS: &str = "jdos_agent_collect_seconds";
    /// Containers the agent collected in a round.
    pub const AGENT_CONTAINERS: &str = "jdos_agent_containers";

    /// Host: busy fraction of all cores (0–1).
    pub const HOST_CPU_UTILIZATION: &str = "host_cpu_utilization";
    /// Host: fraction of time in iowait (0–1).
    pub const HOST_CPU_IOWAIT: &str = "host_cpu_iowait";
    /// Host: online cores.
    pub const HOST_CPU_CORES: &str = "host_cpu_cores";
    /// Host: 1-minute load average.
    pub const HOST_LOAD1: &str = "host_load1";
    /// Host: 5-minute load average.
    pub const HOST_LOAD5: &str = "host_load5";
    /// Host: 15-minute load average.
    pub const HOST_LOAD15: &str = "host_load15";
    /// Host: MemTotal.
    pub const HOST_MEMORY_TOTAL_BYTES: &str = "host_memory_total_bytes";
    /// Host: MemAvailable.
    pub const HOST_MEMORY_AVAILABLE_BYTES: &str = "host_memory_available_bytes";
    /// Host: MemTotal − MemAvailable.
    pub const HOST_MEMORY_USED_BYTES: &str = "host_memory_used_bytes";
    /// Host: page cache (Cached + Buffers).
    pub const HOST_MEMORY_CACHED_BYTES: &str = "host_memory_cached_bytes";
    /// Host: used / total (0–1).
    pub const HOST_MEMORY_UTILIZATION: &str = "host_memory_utilization";
    /// Host: SwapTotal.
    pub const HOST_SWAP_TOTAL_BYTES: &str = "host_swap_total_bytes";
    /// Host: SwapTotal − SwapFree.
    pub const HOST_SWAP_USED_BYTES: &str = "host_swap_used_bytes";
    /// Host: direct-reclaim stalls per second (allocations that had to wait; /proc/vmstat allocstall).
    pub const HOST_MEMORY_ALLOCSTALLS_PER_SECOND: &str = "host_memory_allocstalls_per_second";
    /// Host: OOM kills per second (/proc/vmstat oom_kill).
    pub const HOST_OOM_KILLS_PER_SECOND: &str = "host_oom_kills_per_second";
    /// Host: received bytes/s per interface (label `interface`).
    pub const HOST_NET_RX_BYTES: &str = "host_network_rx_bytes_per_second";
    /// Host: sent bytes/s per interface.
    pub const HOST_NET_TX_BYTES: &str = "host_network_tx_bytes_per_second";
    /// Host: received packets/s per interface.
    pub const HOST_NET_RX_PACKETS: &str = "host_network_rx_packets_per_second";
    /// Host: sent packets/s per interface.
    pub const HOST_NET_TX_PACKETS: &str = "host_network_tx_packets_per_second";
    /// Host: receive errors/s per interface.
    pub const HOST_NET_RX_ERRORS: &str = "host_network_rx_errors_per_second";
    /// Host: transmit errors/s per interface.
    pub const HOST_NET_TX_ERRORS: &str = "host_network_tx_errors_per_second";
    /// Host: receive drops/s per interface.
    pub const HOST_NET_RX_DROPS: &str = "host_network_rx_drops_per_second";
    /// Host: transmit drops/s per interface.
    pub const HOST_NET_TX_DROPS: &str = "host_network_tx_drops_per_second";
    /// Host: NIC hardware error counters per second (labels `interface`, `kind`:
    /// crc, frame, fifo, missed, carrier, collisions…), from /sys/class/net/*/statistics.
    pub const HOST_NIC_ERRORS: &str = "host_nic_errors_per_second";
    /// Host: bytes read/s per disk (label `device`).
    pub const HOST_DISK_READ_BYTES: &str = "host_disk_read_bytes_per_second";
    /// Host: bytes written/s per disk.
    pub const HOST_DISK_WRITE_BYTES: &str = "host_disk_write_bytes_per_second";
    /// Host: reads/s per disk.
    pub const HOST_DISK_READ_IOPS: &str = "host_disk_read_iops";
    /// Host: writes/s per disk.
    pub const HOST_DISK_WRITE_IOPS: &str = "host_disk_write_iops";
    /// Host: fraction of time the disk was busy (0–1).
    pub const HOST_DISK_BUSY: &str = "host_disk_busy_ratio";
    /// Host: TCP active opens/s.
    pub const HOST_TCP_ACTIVE_OPENS: &str = "host_tcp_active_opens_per_second";
    /// Host: TCP passive opens/s.
    pub const HOST_TCP_PASSIVE_OPENS: &str = "host_tcp_passive_opens_per_second";
    /// Host: TCP segments retransmitted/s.
    pub const HOST_TCP_RETRANSMITS: &str = "host_tcp_retransmits_per_second";
    /// Host: SYNs dropped on listen sockets/s (ListenDrops).
    pub const HOST_TCP_LISTEN_DROPS: &str = "host_tcp_listen_drops_per_second";
    /// Host: accept-queue overflows/s (ListenOverflows).
    pub const HOST_TCP_LISTEN_OVERFLOWS: &str = "host_tcp_listen_overflows_per_second";
    /// Host: connections in ESTABLISHED or CLOSE_WAIT (CurrEstab).
    pub const HOST_TCP_ESTABLISHED: &str = "host_tcp_established";
    /// Host: processes.
    pub const HOST_PROCESSES: &str = "host_processes";
    /// Host: threads.
    pub const HOST_THREADS: &str = "host_threads";
    /// Host: runnable tasks.
    pub const HOST_PROCS_RUNNING: &str = "host_procs_running";
    /// Host: allocated file handles (/proc/sys/fs/file-nr).
    pub const HOST_FDS: &str = "host_fds";
    /// Host: temperature per sensor (labels `sensor`), °C, from hwmon.
    pub const HOST_TEMPERATURE: &str = "host_temperature_celsius";
    /// Host: fan speed per sensor, RPM.
    pub const HOST_FAN_RPM: &str = "host_fan_rpm";
    /// Host: power per sensor, watts.
    pub const HOST_POWER_WATTS: &str = "host_power_watts";

    /// Container: cores used (rate of cpu usage).
    pub const CONTAINER_CPU_USAGE: &str = "container_cpu_usage_cores";
    /// Container: cores used / cpu limit (0–1; absent without a limit).
    pub const CONTAINER_CPU_UTILIZATION: &str = "container_cpu_utilization";
    /// Container: fraction of CFS periods throttled (0–1).
    pub const CONTAINER_CPU_THROTTLED: &str = "container_cpu_throttled_ratio";
    /// Container: seconds throttled per second.
    pub const CONTAINER_CPU_THROTTLED_SECONDS: &str = "container_cpu_throttled_seconds_per_second";
    /// Container: memory charged to the cgroup.
    pub const CONTAINER_MEMORY_USAGE: &str = "container_memory_usage_bytes";
    /// Container: anonymous memory (rss / anon).
    pub const CONTAINER_MEMORY_RSS: &str = "container_memory_rss_bytes";
    /// Container: page cache (cache / file).
    pub const CONTAINER_MEMORY_CACHE: &str = "container_memory_cache_bytes";
    /// Container: swap used.
    pub const CONTAINER_MEMORY_SWAP: &str = "container_memory_swap_bytes";
    /// Container: memory limit (absent when unlimited).
    pub const CONTAINER_MEMORY_LIMIT: &str = "container_memory_limit_bytes";
    /// Container: usage / limit (0–1; absent without a limit).
    pub const CONTAINER_MEMORY_UTILIZATION: &str = "container_memory_utilization";
    /// Container: times per second the limit was hit (v1 failcnt, v2 memory.events max).
    pub const CONTAINER_MEMORY_FAILURES: &str = "container_memory_failures_per_second";
    /// Container: OOM kills per second (v1 memory.oom_control oom_kill, v2 memory.events oom_kill).
    pub const CONTAINER_OOM_KILLS: &str = "container_oom_kills_per_second";
    /// Container: pids.
    pub const CONTAINER_PIDS: &str = "container_pids";
    /// Container: bytes read/s from block devices.
    pub const CONTAINER_IO_READ_BYTES: &str = "container_io_read_bytes_per_second";
    /// Container: bytes written/s.
    pub const CONTAINER_IO_WRITE_BYTES: &str = "container_io_write_bytes_per_second";
    /// Container: reads/s.
    pub const CONTAINER_IO_READ_IOPS: &str = "container_io_read_iops";
    /// Container: writes/s.
    pub const CONTAINER_IO_WRITE_IOPS: &str = "container_io_write_iops";
    /// Container: received bytes/s (all interfaces but lo, from its netns).
    pub const CONTAINER_NET_RX_BYTES: &str = "container_network_rx_bytes_per_second";
    /// Container: sent bytes/s.
    pub const CONTAINER_NET_TX_BYTES: &str = "container_network_tx_bytes_per_second";
    /// Container: received packets/s.
    pub const CONTAINER_NET_RX_PACKETS: &str = "container_network_rx_packets_per_second";
    /// Container: sent packets/s.
    pub const CONTAINER_NET_TX_PACKETS: &str = "container_network_tx_packets_per_second";
    /// Container: receive errors/s.
    pub const CONTAINER_NET_RX_ERRORS: &str = "container_network_rx_errors_per_second";
    /// Container: transmit errors/s.
    pub const CONTAINER_NET_TX_ERRORS: &str = "container_network_tx_errors_per_second";
    /// Container: receive drops/s.
    pub const CONTAINER_NET_RX_DROPS: &str = "container_network_rx_drops_per_second";
    /// Container: transmit drops/s.
    pub const CONTAINER_NET_TX_DROPS: &str = "container_network_tx_drops_per_second";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_groups_consecutive_samples_of_one_series() {
        let mut b = MetricBatch::default();
        let l: BTreeMap<String, String> = [("app".to_string(), "shop".to_string())].into();
        b.push("cpu", &l, 1, 0.5);
        b.push("cpu", &l, 2, 0.7);
        b.push("mem", &l, 2, 9.0);
        assert_eq!(b.series.len(), 2);
        assert_eq!(b.series[0].t, vec![1, 2]);
        assert_eq!(b.samples(), 3);
        assert!(b.validate().is_ok());
    }

    #[test]
    fn validation_names_the_bad_series() {
        let b = MetricBatch {
            common: BTreeMap::new(),
            series: vec![SeriesSamples {
                name: String::new(),
                labels: BTreeMap::new(),
                t: vec![1, 2],
                v: vec![1.0],
            }],
        };
        let e = b.validate().unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, vec!["series[0].name", "series[0].v"]);
    }

    #[test]
    fn query_filters_round_trip() {
        let mut q = MetricQuery::new(names::CONTAINER_CPU_USAGE);
        assert!(q.set_filter("app", "shop"));
        assert!(q.set_filter("group", "web"));
        assert!(!q.set_filter("nope", "x"));
        assert_eq!(q.filters(), vec![("app", "shop"), ("group", "web")]);
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["app"], "shop");
        let back: MetricQuery = serde_json::from_value(json).unwrap();
        assert_eq!(back, q);
    }
}
