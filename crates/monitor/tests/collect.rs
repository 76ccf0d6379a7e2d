//! Collection against fixture `/proc`, `/sys` and cgroup trees (v1 and v2): two rounds
//! ten seconds apart with known counter increases, and one run on this machine's real
//! `/proc`.

use std::collections::BTreeMap;
use std::path::Path;

use jdos_monitor::collect::{CgroupMode, Collector, ContainerTarget, Paths};
use jdos_types::metrics::{names, MetricBatch};

const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100";

fn fixture(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dst = tempfile::tempdir().unwrap();
    copy_tree(&src, dst.path());
    dst
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Replaces `from` by `to` in a fixture file (the counter moved between rounds).
fn bump(root: &Path, file: &str, from: &str, to: &str) {
    let p = root.join(file);
    let s = std::fs::read_to_string(&p).unwrap();
    assert!(s.contains(from), "{file} has no {from:?}");
    std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
}

fn host_labels() -> BTreeMap<String, String> {
    [("host", "h1"), ("datacenter", "dc1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of the one series `name` whose labels include `with`.
fn value(b: &MetricBatch, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = b
        .series
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.v[0])
        .collect();
    assert!(
        hits.len() <= 1,
        "{name} {with:?} matched {} series",
        hits.len()
    );
    hits.first().copied()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
}

#[test]
fn host_round_trip_over_fixture_proc_and_sys() {
    let dir = fixture("host");
    let root = dir.path();
    let mut c = Collector::new(Paths::under(root), host_labels());
    let first = c.collect(1_000_000, &[]);
    assert_eq!(first.common["host"], "h1");
    // Gauges come at once; rates need a second round.
    assert_eq!(value(&first, names::HOST_CPU_CORES, &[]), Some(2.0));
    assert_eq!(value(&first, names::HOST_LOAD1, &[]), Some(0.5));
    assert_eq!(value(&first, names::HOST_LOAD15, &[]), Some(0.3));
    assert_eq!(value(&first, names::HOST_THREADS, &[]), Some(275.0));
    assert_eq!(value(&first, names::HOST_PROCESSES, &[]), Some(2.0));
    assert_eq!(value(&first, names::HOST_PROCS_RUNNING, &[]), Some(3.0));
    assert_eq!(value(&first, names::HOST_FDS, &[]), Some(1979.0));
    assert_eq!(
        value(&first, names::HOST_MEMORY_TOTAL_BYTES, &[]),
        Some(8_000_000.0 * 1024.0)
    );
    assert_eq!(
        value(&first, names::HOST_MEMORY_USED_BYTES, &[]),
        Some(2_000_000.0 * 1024.0)
    );
    assert_eq!(
        value(&first, names::HOST_MEMORY_CACHED_BYTES, &[]),
        Some(2_100_000.0 * 1024.0)
    );
    assert_eq!(
        value(&first, names::HOST_SWAP_USED_BYTES, &[]),
        Some(250_000.0 * 1024.0)
    );
    assert_eq!(
        value(&first, names::HOST_MEMORY_UTILIZATION, &[]),
        Some(0.25)
    );
    assert_eq!(value(&first, names::HOST_TCP_ESTABLISHED, &[]), Some(7.0));
    assert_eq!(
        value(
            &first,
            names::HOST_TEMPERATURE,
            &[("sensor", "coretemp/Package id 0")]
        ),
        Some(45.0)
    );
    assert_eq!(
        value(
            &first,
            names::HOST_TEMPERATURE,
            &[("sensor", "coretemp/temp2")]
        ),
        Some(47.5)
    );
    assert_eq!(
        value(&first, names::HOST_FAN_RPM, &[("sensor", "nct6775/fan1")]),
        Some(1200.0)
    );
    assert_eq!(
        value(
            &first,
            names::HOST_POWER_WATTS,
            &[("sensor", "nct6775/power1")]
        ),
        Some(95.0)
    );
    assert_eq!(value(&first, names::HOST_CPU_UTILIZATION, &[]), None);
    assert_eq!(
        value(&first, names::HOST_NET_RX_BYTES, &[("interface", "eth0")]),
        None
    );
    assert!(value(&first, names::AGENT_COLLECT_SECONDS, &[]).is_some());

    bump(
        root,
        "proc/stat",
        "cpu  1000 0 500 8000 100",
        "cpu  1600 0 700 9000 300",
    );
    bump(root, "proc/net/dev", "eth0: 1000000", "eth0: 1100000");
    bump(root, "proc/net/snmp", "-1 100 50", "-1 200 50");
    bump(root, "proc/net/snmp", "2735 20", "2735 70");
    bump(root, "proc/net/netstat", "0 3 4 45", "0 3 14 45");
    bump(
        root,
        "proc/diskstats",
        "vda 1000 10 20000 500 2000 20 40000 900 0 3000",
        "vda 1100 10 40480 500 2000 20 40000 900 0 8000",
    );
    bump(
        root,
        "proc/vmstat",
        "allocstall_normal 10",
        "allocstall_normal 20",
    );
    bump(
        root,
        "sys/class/net/eth0/statistics/rx_crc_errors",
        "10",
        "30",
    );
    let second = c.collect(1_010_000, &[]);
    assert!(close(value(&second, names::HOST_CPU_UTILIZATION, &[]), 0.4));
    assert!(close(value(&second, names::HOST_CPU_IOWAIT, &[]), 0.1));
    assert!(close(
        value(&second, names::HOST_NET_RX_BYTES, &[("interface", "eth0")]),
        10_000.0
    ));
    assert!(close(
        value(&second, names::HOST_NET_TX_BYTES, &[("interface", "eth0")]),
        0.0
    ));
    // Loopback and container veth ends are not host traffic.
    assert_eq!(
        value(&second, names::HOST_NET_RX_BYTES, &[("interface", "lo")]),
        None
    );
    assert_eq!(
        value(
            &second,
            names::HOST_NET_RX_BYTES,
            &[("interface", "vethab12")]
        ),
        None
    );
    assert!(close(
        value(&second, names::HOST_TCP_ACTIVE_OPENS, &[]),
        10.0
    ));
    assert!(close(value(&second, names::HOST_TCP_RETRANSMITS, &[]), 5.0));
    assert!(close(
        value(&second, names::HOST_TCP_LISTEN_DROPS, &[]),
        1.0
    ));
    assert!(close(
        value(&second, names::HOST_TCP_LISTEN_OVERFLOWS, &[]),
        0.0
    ));
    assert!(close(
        value(&second, names::HOST_DISK_READ_IOPS, &[("device", "vda")]),
        10.0
    ));
    assert!(close(
        value(&second, names::HOST_DISK_READ_BYTES, &[("device", "vda")]),
        1_048_576.0
    ));
    assert!(close(
        value(&second, names::HOST_DISK_BUSY, &[("device", "vda")]),
        0.5
    ));
    // Partitions and loop devices are not reported.
    assert_eq!(
        value(&second, names::HOST_DISK_READ_IOPS, &[("device", "vda1")]),
        None
    );
    assert_eq!(
        value(&second, names::HOST_DISK_READ_IOPS, &[("device", "loop0")]),
        None
    );
    assert!(close(
        value(&second, names::HOST_MEMORY_ALLOCSTALLS_PER_SECOND, &[]),
        1.0
    ));
    assert!(close(
        value(&second, names::HOST_OOM_KILLS_PER_SECOND, &[]),
        0.0
    ));
    assert!(close(
        value(
            &second,
            names::HOST_NIC_ERRORS,
            &[("interface", "eth0"), ("kind", "crc")]
        ),
        2.0
    ));
}

fn target() -> ContainerTarget {
    ContainerTarget {
        engine_id: ID.to_string(),
        labels: [
            ("app", "shop"),
            ("env", "production"),
            ("group", "web"),
            ("instance", "shop.production.web.0"),
            ("department", "retail"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

fn container_rounds(
    name: &str,
    mode: CgroupMode,
    bumps: &[(&str, &str, &str)],
) -> (MetricBatch, MetricBatch) {
    let dir = fixture(name);
    let root = dir.path();
    let mut c = Collector::new(Paths::under(root), host_labels());
    assert_eq!(c.cgroup_mode(), mode);
    let missing = ContainerTarget {
        engine_id: "0".repeat(64),
        ..target()
    };
    let first = c.collect(0, &[target(), missing.clone()]);
    assert_eq!(value(&first, names::AGENT_CONTAINERS, &[]), Some(1.0));
    for (file, from, to) in bumps {
        bump(root, file, from, to);
    }
    let second = c.collect(10_000, &[target(), missing]);
    (first, second)
}

fn common_container_asserts(first: &MetricBatch, second: &MetricBatch) {
    let me = [
        ("instance", "shop.production.web.0"),
        ("department", "retail"),
    ];
    assert_eq!(
        value(first, names::CONTAINER_MEMORY_USAGE, &me),
        Some(104_857_600.0)
    );
    assert_eq!(
        value(first, names::CONTAINER_MEMORY_RSS, &me),
        Some(73_400_320.0)
    );
    assert_eq!(
        value(first, names::CONTAINER_MEMORY_CACHE, &me),
        Some(20_971_520.0)
    );
    assert_eq!(value(first, names::CONTAINER_PIDS, &me), Some(7.0));
    assert_eq!(value(first, names::CONTAINER_CPU_USAGE, &me), None);
    assert!(close(value(second, names::CONTAINER_CPU_USAGE, &me), 0.5));
    assert!(close(
        value(second, names::CONTAINER_CPU_THROTTLED, &me),
        0.5
    ));
    assert!(close(
        value(second, names::CONTAINER_CPU_THROTTLED_SECONDS, &me),
        0.5
    ));
    assert!(close(
        value(second, names::CONTAINER_MEMORY_FAILURES, &me),
        1.0
    ));
    assert!(close(value(second, names::CONTAINER_OOM_KILLS, &me), 0.0));
    assert!(close(
        value(second, names::CONTAINER_IO_READ_BYTES, &me),
        1_048_576.0
    ));
    assert!(close(
        value(second, names::CONTAINER_IO_WRITE_BYTES, &me),
        0.0
    ));
    assert!(close(
        value(second, names::CONTAINER_IO_READ_IOPS, &me),
        10.0
    ));
    // Network from the container's namespace, loopback excluded.
    assert!(close(
        value(second, names::CONTAINER_NET_RX_BYTES, &me),
        10_000.0
    ));
    assert!(close(
        value(second, names::CONTAINER_NET_TX_BYTES, &me),
        0.0
    ));
    assert!(close(
        value(second, names::CONTAINER_NET_RX_PACKETS, &me),
        10.0
    ));
    // Host labels come once per batch.
    assert_eq!(second.common["datacenter"], "dc1");
}

#[test]
fn cgroup_v1_container() {
    let cg = "sys/fs/cgroup";
    let files: Vec<(String, &str, &str)> = vec![
        (
            format!("{cg}/cpuacct/docker/{ID}/cpuacct.usage"),
            "5000000000",
            "10000000000",
        ),
        (
            format!("{cg}/cpu/docker/{ID}/cpu.stat"),
            "nr_periods 100",
            "nr_periods 200",
        ),
        (
            format!("{cg}/cpu/docker/{ID}/cpu.stat"),
            "nr_throttled 10",
            "nr_throttled 60",
        ),
        (
            format!("{cg}/cpu/docker/{ID}/cpu.stat"),
            "throttled_time 2000000000",
            "throttled_time 7000000000",
        ),
        (format!("{cg}/memory/docker/{ID}/memory.failcnt"), "3", "13"),
        (
            format!("{cg}/blkio/docker/{ID}/blkio.throttle.io_service_bytes"),
            "Read 1048576",
            "Read 11534336",
        ),
        (
            format!("{cg}/blkio/docker/{ID}/blkio.throttle.io_serviced"),
            "Read 100",
            "Read 200",
        ),
        (
            "proc/42/net/dev".into(),
            "eth0:   10000     100",
            "eth0:  110000     200",
        ),
    ];
    let bumps: Vec<(&str, &str, &str)> =
        files.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    let (first, second) = container_rounds("v1", CgroupMode::V1, &bumps);
    common_container_asserts(&first, &second);
    let me = [("instance", "shop.production.web.0")];
    assert_eq!(
        value(&first, names::CONTAINER_MEMORY_LIMIT, &me),
        Some(268_435_456.0)
    );
    assert_eq!(
        value(&first, names::CONTAINER_MEMORY_UTILIZATION, &me),
        Some(0.390625)
    );
    assert_eq!(
        value(&first, names::CONTAINER_MEMORY_SWAP, &me),
        Some(1_048_576.0)
    );
    // 0.5 cores used of a 0.5-core quota.
    assert!(close(
        value(&second, names::CONTAINER_CPU_UTILIZATION, &me),
        1.0
    ));
}

#[test]
fn cgroup_v2_container() {
    let d = format!("sys/fs/cgroup/system.slice/docker-{ID}.scope");
    let files: Vec<(String, &str, &str)> = vec![
        (
            format!("{d}/cpu.stat"),
            "usage_usec 5000000",
            "usage_usec 10000000",
        ),
        (format!("{d}/cpu.stat"), "nr_periods 100", "nr_periods 200"),
        (
            format!("{d}/cpu.stat"),
            "nr_throttled 10",
            "nr_throttled 60",
        ),
        (
            format!("{d}/cpu.stat"),
            "throttled_usec 2000000",
            "throttled_usec 7000000",
        ),
        (format!("{d}/memory.events"), "max 3", "max 13"),
        (format!("{d}/io.stat"), "rbytes=1048576", "rbytes=11534336"),
        (format!("{d}/io.stat"), "rios=100", "rios=200"),
        (
            "proc/42/net/dev".into(),
            "eth0:   10000     100",
            "eth0:  110000     200",
        ),
    ];
    let bumps: Vec<(&str, &str, &str)> =
        files.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    let (first, second) = container_rounds("v2", CgroupMode::V2, &bumps);
    common_container_asserts(&first, &second);
    let me = [("instance", "shop.production.web.0")];
    // memory.max is "max": no limit, no utilization.
    assert_eq!(value(&first, names::CONTAINER_MEMORY_LIMIT, &me), None);
    assert_eq!(
        value(&first, names::CONTAINER_MEMORY_UTILIZATION, &me),
        None
    );
    assert_eq!(value(&first, names::CONTAINER_MEMORY_SWAP, &me), Some(0.0));
    // 0.5 cores of a 2-core cpu.max.
    assert!(close(
        value(&second, names::CONTAINER_CPU_UTILIZATION, &me),
        0.25
    ));
}

#[test]
fn this_machines_proc_gives_sane_values() {
    let mut c = Collector::new(Paths::default(), host_labels());
    let _ = c.collect(0, &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = c.collect(300, &[]);
    let cores = value(&b, names::HOST_CPU_CORES, &[]).expect("cores");
    assert!((1.0..=4096.0).contains(&cores), "cores {cores}");
    let util = value(&b, names::HOST_CPU_UTILIZATION, &[]).expect("cpu utilization");
    assert!((0.0..=1.0).contains(&util), "utilization {util}");
    let total = value(&b, names::HOST_MEMORY_TOTAL_BYTES, &[]).expect("memory total");
    let used = value(&b, names::HOST_MEMORY_USED_BYTES, &[]).expect("memory used");
    assert!(total > 64.0 * 1024.0 * 1024.0, "total {total}");
    assert!(used > 0.0 && used < total, "used {used} of {total}");
    let load1 = value(&b, names::HOST_LOAD1, &[]).expect("load1");
    assert!((0.0..10_000.0).contains(&load1), "load1 {load1}");
    let procs = value(&b, names::HOST_PROCESSES, &[]).expect("processes");
    let threads = value(&b, names::HOST_THREADS, &[]).expect("threads");
    assert!(
        procs >= 1.0 && threads >= procs,
        "procs {procs} threads {threads}"
    );
    assert!(value(&b, names::HOST_FDS, &[]).expect("fds") > 0.0);
    assert!(value(&b, names::HOST_TCP_ESTABLISHED, &[]).is_some());
    assert!(value(&b, names::HOST_TCP_RETRANSMITS, &[]).expect("retransmits") >= 0.0);
    let secs = value(&b, names::AGENT_COLLECT_SECONDS, &[]).expect("collect time");
    assert!(secs > 0.0 && secs < 1.0, "a round took {secs} s");
    assert!(
        b.series.iter().all(|s| s.v.iter().all(|v| v.is_finite())),
        "every value is finite"
    );
}
