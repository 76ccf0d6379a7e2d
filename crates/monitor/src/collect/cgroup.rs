//! Container metrics from cgroups (v1 or v2) and the container's network namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jdos_types::metrics::names;

use super::{
    delta_ratio, key_values, net_dev, rate, read, read_num, ContainerTarget, Counters, Paths,
    Round, NET_CONTAINER,
};

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1: one hierarchy per controller (`cpu`, `cpuacct`, `memory`, `blkio`, `pids`).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

impl CgroupMode {
    /// v2 when the mount root has `cgroup.controllers` (the unified hierarchy), else v1
    /// (a hybrid host's `unified` subtree holds no controllers, so v1 it is).
    pub fn detect(root: &Path) -> Self {
        if root.join("cgroup.controllers").exists() {
            CgroupMode::V2
        } else {
            CgroupMode::V1
        }
    }
}

/// Where Docker puts a container's cgroup, relative to a hierarchy root: the cgroupfs
/// driver (`docker/<id>`) and the systemd driver (`system.slice/docker-<id>.scope`).
fn candidates(id: &str) -> [String; 2] {
    [
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
    ]
}

/// The container's directory in hierarchy `root`, if it exists.
fn find(root: &Path, id: &str) -> Option<PathBuf> {
    candidates(id)
        .into_iter()
        .map(|c| root.join(c))
        .find(|p| p.is_dir())
}

/// One process of the cgroup (for its network namespace).
fn first_pid(dir: &Path) -> Option<u32> {
    read(&dir.join("cgroup.procs"))?
        .lines()
        .find_map(|l| l.trim().parse().ok())
}

/// v1 blkio `<maj:min> <Op> <n>` lines summed per op over devices.
fn blkio_v1(text: &str) -> (f64, f64) {
    let (mut r, mut w) = (0.0, 0.0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let v: f64 = f[2].parse().unwrap_or(0.0);
        match f[1] {
            "Read" => r += v,
            "Write" => w += v,
            _ => {}
        }
    }
    (r, w)
}

/// v2 `io.stat`: `<maj:min> rbytes=.. wbytes=.. rios=.. wios=..` summed over devices.
fn io_stat_v2(text: &str) -> [f64; 4] {
    let mut s = [0.0; 4];
    for l in text.lines() {
        for kv in l.split_whitespace().skip(1) {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v: f64 = v.parse().unwrap_or(0.0);
            match k {
                "rbytes" => s[0] += v,
                "wbytes" => s[1] += v,
                "rios" => s[2] += v,
                "wios" => s[3] += v,
                _ => {}
            }
        }
    }
    s
}

/// A memory limit file's value; "max" and the v1 "unlimited" sentinel (close to 2^63,
/// rounded to the page size) mean no limit.
fn limit(text: Option<String>) -> Option<f64> {
    let t = text?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    (v < (1u64 << 60) as f64).then_some(v)
}

/// Cumulative and instant readings of one container, keyed like the output.
struct Reading {
    counters: Counters,
    gauges: Vec<(&'static str, f64)>,
    /// Cores allowed by the CFS quota, if limited.
    cpu_limit: Option<f64>,
    /// The cgroup directory holding `cgroup.procs` (for the netns pid).
    procs_dir: PathBuf,
}

fn read_v1(root: &Path, id: &str, t_ms: i64) -> Option<Reading> {
    let cpu = find(&root.join("cpu"), id).or_else(|| find(&root.join("cpu,cpuacct"), id));
    let cpuacct = find(&root.join("cpuacct"), id).or_else(|| cpu.clone());
    let memory = find(&root.join("memory"), id);
    // Without a cpu or memory cgroup the container is not (or no longer) running.
    let procs_dir = memory.clone().or_else(|| cpuacct.clone())?;
    let mut c = Counters::new(t_ms);
    let mut gauges = Vec::new();
    let mut cpu_limit = None;
    if let Some(d) = &cpuacct {
        if let Some(ns) = read_num(&d.join("cpuacct.usage")) {
            c.values.insert("cpu_seconds".into(), ns / 1e9);
        }
    }
    if let Some(d) = &cpu {
        if let Some(s) = read(&d.join("cpu.stat")) {
            let kv = key_values(&s);
            for (k, out) in [("nr_periods", "periods"), ("nr_throttled", "throttled")] {
                if let Some(v) = kv.get(k) {
                    c.values.insert(out.into(), *v);
                }
            }
            if let Some(ns) = kv.get("throttled_time") {
                c.values.insert("throttled_seconds".into(), ns / 1e9);
            }
        }
        let quota = read_num(&d.join("cpu.cfs_quota_us"));
        let period = read_num(&d.join("cpu.cfs_period_us"));
        if let (Some(q), Some(p)) = (quota, period) {
            if q > 0.0 && p > 0.0 {
                cpu_limit = Some(q / p);
            }
        }
    }
    if let Some(d) = &memory {
        let usage = read_num(&d.join("memory.usage_in_bytes"));
        if let Some(s) = read(&d.join("memory.stat")) {
            let kv = key_values(&s);
            // total_* include sub-cgroups; the plain ones are the cgroup's own.
            let get = |k: &str| {
                kv.get(&*format!("total_{k}"))
                    .or_else(|| kv.get(k))
                    .copied()
            };
            if let Some(v) = get("rss") {
                gauges.push((names::CONTAINER_MEMORY_RSS, v));
            }
            if let Some(v) = get("cache") {
                gauges.push((names::CONTAINER_MEMORY_CACHE, v));
            }
            if let Some(v) = get("swap") {
                gauges.push((names::CONTAINER_MEMORY_SWAP, v));
            }
        }
        if let Some(u) = usage {
            gauges.push((names::CONTAINER_MEMORY_USAGE, u));
            if let Some(l) = limit(read(&d.join("memory.limit_in_bytes"))) {
                gauges.push((names::CONTAINER_MEMORY_LIMIT, l));
                if l > 0.0 {
                    gauges.push((names::CONTAINER_MEMORY_UTILIZATION, u / l));
                }
            }
        }
        if let Some(f) = read_num(&d.join("memory.failcnt")) {
            c.values.insert("mem_fail".into(), f);
        }
        if let Some(s) = read(&d.join("memory.oom_control")) {
            if let Some(v) = key_values(&s).get("oom_kill") {
                c.values.insert("oom_kill".into(), *v);
            }
        }
    }
    if let Some(d) = find(&root.join("pids"), id) {
        if let Some(v) = read_num(&d.join("pids.current")) {
            gauges.push((names::CONTAINER_PIDS, v));
        }
    }
    if let Some(d) = find(&root.join("blkio"), id) {
        if let Some(s) = read(&d.join("blkio.throttle.io_service_bytes")) {
            let (r, w) = blkio_v1(&s);
            c.values.insert("io_rbytes".into(), r);
            c.values.insert("io_wbytes".into(), w);
        }
        if let Some(s) = read(&d.join("blkio.throttle.io_serviced")) {
            let (r, w) = blkio_v1(&s);
            c.values.insert("io_rios".into(), r);
            c.values.insert("io_wios".into(), w);
        }
    }
    Some(Reading {
        counters: c,
        gauges,
        cpu_limit,
        procs_dir,
    })
}

fn read_v2(root: &Path, id: &str, t_ms: i64) -> Option<Reading> {
    let d = find(root, id)?;
    let mut c = Counters::new(t_ms);
    let mut gauges = Vec::new();
    let mut cpu_limit = None;
    if let Some(s) = read(&d.join("cpu.stat")) {
        let kv = key_values(&s);
        if let Some(us) = kv.get("usage_usec") {
            c.values.insert("cpu_seconds".into(), us / 1e6);
        }
        for (k, out) in [("nr_periods", "periods"), ("nr_throttled", "throttled")] {
            if let Some(v) = kv.get(k) {
                c.values.insert(out.into(), *v);
            }
        }
        if let Some(us) = kv.get("throttled_usec") {
            c.values.insert("throttled_seconds".into(), us / 1e6);
        }
    }
    // cpu.max: "<quota|max> <period>".
    if let Some(s) = read(&d.join("cpu.max")) {
        let f: Vec<&str> = s.split_whitespace().collect();
        if let [q, p] = f.as_slice() {
            if let (Ok(q), Ok(p)) = (q.parse::<f64>(), p.parse::<f64>()) {
                if q > 0.0 && p > 0.0 {
                    cpu_limit = Some(q / p);
                }
            }
        }
    }
    if let Some(u) = read_num(&d.join("memory.current")) {
        gauges.push((names::CONTAINER_MEMORY_USAGE, u));
        if let Some(l) = limit(read(&d.join("memory.max"))) {
            gauges.push((names::CONTAINER_MEMORY_LIMIT, l));
            if l > 0.0 {
                gauges.push((names::CONTAINER_MEMORY_UTILIZATION, u / l));
            }
        }
    }
    if let Some(s) = read(&d.join("memory.stat")) {
        let kv = key_values(&s);
        if let Some(v) = kv.get("anon") {
            gauges.push((names::CONTAINER_MEMORY_RSS, *v));
        }
        if let Some(v) = kv.get("file") {
            gauges.push((names::CONTAINER_MEMORY_CACHE, *v));
        }
    }
    if let Some(v) = read_num(&d.join("memory.swap.current")) {
        gauges.push((names::CONTAINER_MEMORY_SWAP, v));
    }
    if let Some(s) = read(&d.join("memory.events")) {
        let kv = key_values(&s);
        // `max`: times usage hit the limit (v1's failcnt counterpart).
        if let Some(v) = kv.get("max") {
            c.values.insert("mem_fail".into(), *v);
        }
        if let Some(v) = kv.get("oom_kill") {
            c.values.insert("oom_kill".into(), *v);
        }
    }
    if let Some(v) = read_num(&d.join("pids.current")) {
        gauges.push((names::CONTAINER_PIDS, v));
    }
    if let Some(s) = read(&d.join("io.stat")) {
        let [rb, wb, ri, wi] = io_stat_v2(&s);
        for (k, v) in [
            ("io_rbytes", rb),
            ("io_wbytes", wb),
            ("io_rios", ri),
            ("io_wios", wi),
        ] {
            c.values.insert(k.into(), v);
        }
    }
    Some(Reading {
        counters: c,
        gauges,
        cpu_limit,
        procs_dir: d,
    })
}

/// Reads one container; emits its gauges and rates against `prev`; returns this reading,
/// or `None` when its cgroup does not exist.
pub(crate) fn collect(
    paths: &Paths,
    mode: CgroupMode,
    target: &ContainerTarget,
    prev: Option<&Counters>,
    out: &mut Round<'_>,
    t_ms: i64,
) -> Option<Counters> {
    let id = target.engine_id.as_str();
    if id.is_empty() || id.contains('/') || id.contains("..") {
        return None;
    }
    let r = match mode {
        CgroupMode::V1 => read_v1(&paths.cgroup, id, t_ms),
        CgroupMode::V2 => read_v2(&paths.cgroup, id, t_ms),
    }?;
    let mut cur = r.counters;
    // Network: the container's own namespace, through one of its processes.
    if let Some(pid) = first_pid(&r.procs_dir) {
        if let Some(text) = read(&paths.proc.join(pid.to_string()).join("net/dev")) {
            let mut sum = [0.0f64; 8];
            for (ifname, cols) in net_dev(&text) {
                if ifname == "lo" {
                    continue;
                }
                for (s, v) in sum.iter_mut().zip(cols) {
                    *s += v;
                }
            }
            for (i, v) in sum.iter().enumerate() {
                cur.values.insert(format!("net/{i}"), *v);
            }
        }
    }
    let l: &BTreeMap<String, String> = &target.labels;
    for (name, v) in &r.gauges {
        out.gauge(name, l, *v);
    }
    if let Some(cores) = rate(prev, &cur, "cpu_seconds") {
        out.gauge(names::CONTAINER_CPU_USAGE, l, cores);
        if let Some(lim) = r.cpu_limit {
            out.gauge(names::CONTAINER_CPU_UTILIZATION, l, cores / lim);
        }
    }
    if let Some(x) = delta_ratio(prev, &cur, "throttled", "periods") {
        out.gauge(names::CONTAINER_CPU_THROTTLED, l, x);
    }
    let rates = [
        ("throttled_seconds", names::CONTAINER_CPU_THROTTLED_SECONDS),
        ("mem_fail", names::CONTAINER_MEMORY_FAILURES),
        ("oom_kill", names::CONTAINER_OOM_KILLS),
        ("io_rbytes", names::CONTAINER_IO_READ_BYTES),
        ("io_wbytes", names::CONTAINER_IO_WRITE_BYTES),
        ("io_rios", names::CONTAINER_IO_READ_IOPS),
        ("io_wios", names::CONTAINER_IO_WRITE_IOPS),
    ];
    for (k, name) in rates {
        if let Some(x) = rate(prev, &cur, k) {
            out.gauge(name, l, x);
        }
    }
    for (i, name) in NET_CONTAINER.iter().enumerate() {
        if let Some(x) = rate(prev, &cur, &format!("net/{i}")) {
            out.gauge(name, l, x);
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_io_parsing() {
        assert_eq!(limit(Some("max\n".into())), None);
        assert_eq!(limit(Some("9223372036854771712\n".into())), None);
        assert_eq!(limit(Some("268435456\n".into())), Some(268_435_456.0));
        assert_eq!(
            blkio_v1(
                "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n8:16 Read 4096\nTotal 16384\n"
            ),
            (8192.0, 8192.0)
        );
        assert_eq!(
            io_stat_v2("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=0 rios=1 wios=0\n"),
            [101.0, 200.0, 2.0, 2.0]
        );
    }
}
