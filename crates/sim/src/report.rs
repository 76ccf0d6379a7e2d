//! The result of one simulation run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything a run measured. `jdos sim --json` prints it as its last line;
/// later issues extend it (e.g. end-to-end time from apply to all-running
/// once the workflow engine drives the fake hosts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Hosts in the estate.
    pub hosts: usize,
    /// Switches in the estate.
    pub switches: usize,
    /// Racks in the estate.
    pub racks: usize,
    /// Groups placed.
    pub groups: usize,
    /// Containers asked for.
    pub containers_requested: u64,
    /// Containers committed to the store.
    pub containers_placed: u64,
    /// Replicas that did not fit.
    pub unplaceable: u64,
    /// Hard constraints broken, per the independent checker.
    pub violations: u64,
    /// Violations by kind.
    pub violation_kinds: BTreeMap<String, u64>,
    /// Seconds spent scheduling and committing (estate setup and the check
    /// excluded).
    pub seconds: f64,
    /// CPU seconds the process used while scheduling and committing (all
    /// threads): the cost on a machine shared with other work.
    pub cpu_seconds: f64,
    /// Containers placed and committed per second.
    pub placements_per_sec: f64,
    /// Median per-placement time: a group's plan + commit time divided by
    /// its replicas, in microseconds.
    pub p50_placement_us: f64,
    /// 99th percentile of the same.
    pub p99_placement_us: f64,
    /// 99th percentile of one whole request (plan + commit of a group).
    pub p99_request_us: f64,
    /// Longest request.
    pub max_request_us: f64,
    /// Conflicts met and re-planned.
    pub conflicts_retried: u64,
    /// Concurrent schedulers.
    pub schedulers: usize,
    /// Store used.
    pub store: String,
    /// Seed.
    pub seed: u64,
    /// Allocated / capacity cpu over schedulable hosts at the end.
    pub cpu_utilization: f64,
    /// Allocated / capacity memory over schedulable hosts at the end.
    pub memory_utilization: f64,
    /// Peak resident set size of the process (VmHWM).
    pub peak_rss_bytes: u64,
    /// `scheduler` (placement only) or `e2e` (`jdos sim --e2e`: submitted
    /// deploys to containers reported running); in e2e mode `seconds` is
    /// the end-to-end time and `placements_per_sec` containers per second.
    #[serde(default)]
    pub mode: String,
    /// E2e: seconds from the first submitted app to every container record
    /// `running` in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_seconds: Option<f64>,
    /// E2e: the run gave up before all containers ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_timed_out: Option<bool>,
    /// E2e: seconds spent committing apps and submitting their deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_seconds: Option<f64>,
    /// E2e: apps applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<usize>,
    /// E2e: container records `running` at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers_running: Option<u64>,
    /// E2e: running containers per end-to-end second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers_per_sec: Option<f64>,
    /// E2e: workflow tasks (one deploy per group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    /// E2e: tasks that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_succeeded: Option<u64>,
    /// E2e: tasks that failed or were cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_failed: Option<u64>,
    /// E2e: median task duration (created → finished), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_task_seconds: Option<f64>,
    /// E2e: 99th percentile task duration, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_task_seconds: Option<f64>,
    /// E2e: mean writes of a task record over its life (submit, claim,
    /// step transitions, scratch data, progress, end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_writes_mean: Option<f64>,
    /// E2e: the slowest tasks, slowest first (what bounds the run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest_tasks: Vec<TaskTiming>,
}

/// Where one task's time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskTiming {
    /// What it acted on (`app/env/group`).
    pub object: String,
    /// Containers it waited for (its progress total).
    pub containers: u64,
    /// From submit to its end.
    pub seconds: f64,
    /// From submit to its first step (queued behind the engine's
    /// concurrency or the app's mutex).
    pub queued_seconds: f64,
    /// Each step's name and seconds.
    pub steps: Vec<(String, f64)>,
}

impl TaskTiming {
    /// The timing of `t` (a finished task).
    pub fn of(t: &jdos_types::task::Task) -> TaskTiming {
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
        let first = t.steps.iter().map(|s| s.started_at_ms).find(|ms| *ms > 0);
        TaskTiming {
            object: t.object.clone(),
            containers: t.progress.as_ref().map_or(0, |p| p.total),
            seconds: secs(t.created_at_ms, t.updated_at_ms),
            queued_seconds: first.map_or(0.0, |f| secs(t.created_at_ms, f)),
            steps: t
                .steps
                .iter()
                .map(|s| (s.name.clone(), secs(s.started_at_ms, s.finished_at_ms)))
                .collect(),
        }
    }
}

/// Peak RSS of this process from `/proc/self/status` (0 where unavailable).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) this process has used, in seconds, from
/// `/proc/self/stat` (0 where unavailable). On a shared machine this, not
/// wall time, says what the work cost.
pub fn process_cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (USER_HZ = 100 on Linux).
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The `q` quantile (0..=1) of `v`, sorting it.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}
