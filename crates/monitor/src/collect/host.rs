//! Host metrics from `/proc` and `/sys`.

use std::collections::BTreeMap;
use std::path::Path;

use jdos_types::metrics::names;

use super::{
    delta_ratio, key_values, net_dev, rate, read, read_num, Counters, Paths, Round, NET_HOST,
};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// NIC hardware error counters read from `/sys/class/net/<if>/statistics`, with the
/// `kind` label each becomes.
const NIC_ERRORS: [(&str, &str); 11] = [
    ("rx_crc_errors", "crc"),
    ("rx_frame_errors", "frame"),
    ("rx_fifo_errors", "rx_fifo"),
    ("rx_missed_errors", "missed"),
    ("rx_over_errors", "overrun"),
    ("rx_length_errors", "length"),
    ("tx_carrier_errors", "carrier"),
    ("tx_aborted_errors", "aborted"),
    ("tx_fifo_errors", "tx_fifo"),
    ("tx_heartbeat_errors", "heartbeat"),
    ("collisions", "collisions"),
];

/// Interfaces whose traffic is the host's own: not loopback, not a container's veth end
/// (that traffic is in the container's metrics).
fn host_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("veth")
}

/// Whole disks worth reporting: listed in `/sys/block` when that exists, and not a
/// loop, ram or zram device.
fn disk_devices(paths: &Path) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(paths.join("block")).ok()?;
    Some(
        rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
    )
}

fn virtual_disk(name: &str) -> bool {
    name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram")
}

/// Reads the host; emits gauges and the rates against `prev`; returns this reading.
pub(crate) fn collect(
    paths: &Paths,
    prev: Option<&Counters>,
    out: &mut Round<'_>,
    t_ms: i64,
) -> Counters {
    let mut cur = Counters::new(t_ms);
    let none = BTreeMap::new();
    let proc = &paths.proc;

    // CPU: jiffies per state on the aggregate line; cores = cpuN lines.
    if let Some(stat) = read(&proc.join("stat")) {
        let mut cores = 0u32;
        for l in stat.lines() {
            let mut it = l.split_whitespace();
            match it.next() {
                Some("cpu") => {
                    let f: Vec<f64> = it.filter_map(|x| x.parse().ok()).collect();
                    if f.len() >= 4 {
                        // Guest time is already counted in user/nice.
                        let total: f64 = f.iter().take(8).sum();
                        let idle = f[3];
                        let iowait = f.get(4).copied().unwrap_or(0.0);
                        cur.values.insert("cpu_total".into(), total);
                        cur.values.insert("cpu_busy".into(), total - idle - iowait);
                        cur.values.insert("cpu_iowait".into(), iowait);
                    }
                }
                Some(c) if c.starts_with("cpu") => cores += 1,
                Some("procs_running") => {
                    if let Some(v) = it.next().and_then(|x| x.parse().ok()) {
                        out.gauge(names::HOST_PROCS_RUNNING, &none, v);
                    }
                }
                _ => {}
            }
        }
        out.gauge(names::HOST_CPU_CORES, &none, f64::from(cores));
        if let Some(u) = delta_ratio(prev, &cur, "cpu_busy", "cpu_total") {
            out.gauge(names::HOST_CPU_UTILIZATION, &none, u);
        }
        if let Some(u) = delta_ratio(prev, &cur, "cpu_iowait", "cpu_total") {
            out.gauge(names::HOST_CPU_IOWAIT, &none, u);
        }
    }

    // Load and threads: "0.52 0.58 0.59 3/642 12345" (runnable/total scheduling entities).
    if let Some(l) = read(&proc.join("loadavg")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        for (i, name) in [names::HOST_LOAD1, names::HOST_LOAD5, names::HOST_LOAD15]
            .iter()
            .enumerate()
        {
            if let Some(v) = f.get(i).and_then(|x| x.parse().ok()) {
                out.gauge(name, &none, v);
            }
        }
        if let Some(threads) = f
            .get(3)
            .and_then(|x| x.split_once('/'))
            .and_then(|(_, t)| t.parse().ok())
        {
            out.gauge(names::HOST_THREADS, &none, threads);
        }
    }

    // Processes: numeric entries of /proc.
    if let Ok(rd) = std::fs::read_dir(proc) {
        let n = rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            })
            .count();
        out.gauge(names::HOST_PROCESSES, &none, n as f64);
    }

    // Memory (kB in meminfo).
    if let Some(m) = read(&proc.join("meminfo")) {
        let kv = key_values(&m);
        let kb = |k: &str| kv.get(k).map(|v| v * 1024.0);
        if let (Some(total), Some(avail)) = (kb("MemTotal"), kb("MemAvailable")) {
            out.gauge(names::HOST_MEMORY_TOTAL_BYTES, &none, total);
            out.gauge(names::HOST_MEMORY_AVAILABLE_BYTES, &none, avail);
            out.gauge(names::HOST_MEMORY_USED_BYTES, &none, total - avail);
            if total > 0.0 {
                out.gauge(
                    names::HOST_MEMORY_UTILIZATION,
                    &none,
                    (total - avail) / total,
                );
            }
        }
        if let Some(c) = kb("Cached") {
            out.gauge(
                names::HOST_MEMORY_CACHED_BYTES,
                &none,
                c + kb("Buffers").unwrap_or(0.0),
            );
        }
        if let (Some(st), Some(sf)) = (kb("SwapTotal"), kb("SwapFree")) {
            out.gauge(names::HOST_SWAP_TOTAL_BYTES, &none, st);
            out.gauge(names::HOST_SWAP_USED_BYTES, &none, st - sf);
        }
    }

    // Allocation stalls (direct reclaim: allocations that could not be served at once)
    // and OOM kills.
    if let Some(v) = read(&proc.join("vmstat")) {
        let kv = key_values(&v);
        let stalls: f64 = kv
            .iter()
            .filter(|(k, _)| k.starts_with("allocstall"))
            .map(|(_, v)| v)
            .sum();
        cur.values.insert("allocstall".into(), stalls);
        if let Some(o) = kv.get("oom_kill") {
            cur.values.insert("oom_kill".into(), *o);
        }
        if let Some(r) = rate(prev, &cur, "allocstall") {
            out.gauge(names::HOST_MEMORY_ALLOCSTALLS_PER_SECOND, &none, r);
        }
        if let Some(r) = rate(prev, &cur, "oom_kill") {
            out.gauge(names::HOST_OOM_KILLS_PER_SECOND, &none, r);
        }
    }

    // File handles: "allocated  unused  max".
    if let Some(v) = read(&proc.join("sys/fs/file-nr"))
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
    {
        out.gauge(names::HOST_FDS, &none, v);
    }

    // Network per interface, and NIC error counters of physical interfaces.
    if let Some(text) = read(&proc.join("net/dev")) {
        for (ifname, cols) in net_dev(&text) {
            if !host_interface(&ifname) {
                continue;
            }
            let l = labels(&[("interface", &ifname)]);
            for (i, name) in NET_HOST.iter().enumerate() {
                let key = format!("net/{ifname}/{i}");
                cur.values.insert(key.clone(), cols[i]);
                if let Some(r) = rate(prev, &cur, &key) {
                    out.gauge(name, &l, r);
                }
            }
            let dev = paths.sys.join("class/net").join(&ifname);
            if !dev.join("device").exists() {
                continue;
            }
            for (file, kind) in NIC_ERRORS {
                if let Some(v) = read_num(&dev.join("statistics").join(file)) {
                    let key = format!("nic/{ifname}/{kind}");
                    cur.values.insert(key.clone(), v);
                    if let Some(r) = rate(prev, &cur, &key) {
                        out.gauge(
                            names::HOST_NIC_ERRORS,
                            &labels(&[("interface", &ifname), ("kind", kind)]),
                            r,
                        );
                    }
                }
            }
        }
    }

    // Disks: sectors are 512 bytes in diskstats whatever the device's sector size.
    if let Some(text) = read(&proc.join("diskstats")) {
        let whole = disk_devices(&paths.sys);
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                continue;
            }
            let dev = f[2];
            if virtual_disk(dev) || whole.as_ref().is_some_and(|w| !w.iter().any(|d| d == dev)) {
                continue;
            }
            let num = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
            let readings = [
                ("reads", num(3)),
                ("read_bytes", num(5) * 512.0),
                ("writes", num(7)),
                ("write_bytes", num(9) * 512.0),
                ("io_ms", num(12)),
            ];
            for (k, v) in readings {
                cur.values.insert(format!("disk/{dev}/{k}"), v);
            }
            let l = labels(&[("device", dev)]);
            for (k, name) in [
                ("reads", names::HOST_DISK_READ_IOPS),
                ("read_bytes", names::HOST_DISK_READ_BYTES),
                ("writes", names::HOST_DISK_WRITE_IOPS),
                ("write_bytes", names::HOST_DISK_WRITE_BYTES),
            ] {
                if let Some(r) = rate(prev, &cur, &format!("disk/{dev}/{k}")) {
                    out.gauge(name, &l, r);
                }
            }
            // ms busy per second → fraction of time busy.
            if let Some(r) = rate(prev, &cur, &format!("disk/{dev}/io_ms")) {
                out.gauge(names::HOST_DISK_BUSY, &l, (r / 1000.0).min(1.0));
            }
        }
    }

    // TCP: /proc/net/snmp (Tcp:) and /proc/net/netstat (TcpExt:), header line then values.
    let mut tcp = BTreeMap::new();
    for file in ["net/snmp", "net/netstat"] {
        if let Some(text) = read(&proc.join(file)) {
            let lines: Vec<&str> = text.lines().collect();
            for w in lines.windows(2) {
                let (h, v) = (w[0], w[1]);
                let (Some((hp, hk)), Some((vp, vv))) = (h.split_once(':'), v.split_once(':'))
                else {
                    continue;
                };
                if hp != vp || !(hp == "Tcp" || hp == "TcpExt") {
                    continue;
                }
                for (k, x) in hk.split_whitespace().zip(vv.split_whitespace()) {
                    if let Ok(x) = x.parse::<f64>() {
                        tcp.insert(k.to_string(), x);
                    }
                }
            }
        }
    }
    if let Some(e) = tcp.get("CurrEstab") {
        out.gauge(names::HOST_TCP_ESTABLISHED, &none, *e);
    }
    for (k, name) in [
        ("ActiveOpens", names::HOST_TCP_ACTIVE_OPENS),
        ("PassiveOpens", names::HOST_TCP_PASSIVE_OPENS),
        ("RetransSegs", names::HOST_TCP_RETRANSMITS),
        ("ListenDrops", names::HOST_TCP_LISTEN_DROPS),
        ("ListenOverflows", names::HOST_TCP_LISTEN_OVERFLOWS),
    ] {
        if let Some(v) = tcp.get(k) {
            let key = format!("tcp/{k}");
            cur.values.insert(key.clone(), *v);
            if let Some(r) = rate(prev, &cur, &key) {
                out.gauge(name, &none, r);
            }
        }
    }

    hwmon(&paths.sys, out);
    cur
}

/// Temperatures (m°C), fans (RPM) and power (µW) of every hwmon chip that has them.
fn hwmon(sys: &Path, out: &mut Round<'_>) {
    let Ok(rd) = std::fs::read_dir(sys.join("class/hwmon")) else {
        return;
    };
    let mut chips: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    chips.sort();
    for chip in chips {
        let chip_name = read(&chip.join("name")).map_or_else(
            || {
                chip.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            },
            |s| s.trim().to_string(),
        );
        let Ok(files) = std::fs::read_dir(&chip) else {
            continue;
        };
        let mut inputs: Vec<String> = files
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f.ends_with("_input") || f.ends_with("_average"))
            .collect();
        inputs.sort();
        for f in inputs {
            let (stem, _) = f.rsplit_once('_').expect("filtered on '_'");
            let (metric, scale) = if stem.starts_with("temp") {
                (names::HOST_TEMPERATURE, 1e-3)
            } else if stem.starts_with("fan") {
                (names::HOST_FAN_RPM, 1.0)
            } else if stem.starts_with("power") {
                (names::HOST_POWER_WATTS, 1e-6)
            } else {
                continue;
            };
            let Some(v) = read_num(&chip.join(&f)) else {
                continue;
            };
            let label = read(&chip.join(format!("{stem}_label")))
                .map_or_else(|| stem.to_string(), |s| s.trim().to_string());
            out.gauge(
                metric,
                &labels(&[("sensor", &format!("{chip_name}/{label}"))]),
                v * scale,
            );
        }
    }
}
