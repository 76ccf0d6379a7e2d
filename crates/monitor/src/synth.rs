//! Synthetic container metrics shaped like an agent's cgroup / procfs readouts, for
//! benchmarks, the simulator and demos (not used by the store itself).
//!
//! One [`ContainerSim`] yields, per 10-second tick, the 24 series listed in [`METRICS`]:
//! - counters as the kernel exposes them (integers that only grow): cpu `usage_usec`
//!   advancing by a noisy rate (per-container base load × diurnal curve × ±25% noise),
//!   network bytes/packets proportional to that load with their own noise, disk I/O in
//!   bursts of 4 KiB pages (idle most ticks), throttling only when the rate nears the limit,
//!   errors/drops/retransmits incrementing rarely;
//! - gauges: cpu millicores derived from the usage delta (what utilization reports and
//!   hourly max read), memory rss/cache in 4 KiB pages that hold plateaus and move in
//!   small steps, a constant limit, zero swap, disk usage growing by pages, small-integer
//!   process/thread/fd/connection counts that change now and then, `up` = 1.
//!
//! Timestamps are the agent's tick times (multiples of the interval, as Prometheus aligns
//! scrape timestamps) with ~0.2% missed ticks.

/// Names of the series produced per container, in [`ContainerSim::tick`] order.
pub const METRICS: [&str; 24] = [
    "container_cpu_usage_usec_total",
    "container_cpu_millicores",
    "container_cpu_throttled_usec_total",
    "container_memory_rss_bytes",
    "container_memory_cache_bytes",
    "container_memory_swap_bytes",
    "container_memory_limit_bytes",
    "container_network_rx_bytes_total",
    "container_network_tx_bytes_total",
    "container_network_rx_packets_total",
    "container_network_tx_packets_total",
    "container_network_rx_errors_total",
    "container_network_tx_dropped_total",
    "container_disk_read_bytes_total",
    "container_disk_write_bytes_total",
    "container_disk_read_ios_total",
    "container_disk_write_ios_total",
    "container_disk_usage_bytes",
    "container_processes",
    "container_threads",
    "container_fds",
    "container_tcp_connections",
    "container_tcp_retransmits_total",
    "container_up",
];

/// Sampling interval of the simulated agent, ms.
pub const INTERVAL_MS: i64 = 10_000;

const DAY_MS: f64 = 86_400_000.0;
const PAGE: f64 = 4096.0;

/// Deterministic splitmix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// State of one simulated container.
#[derive(Debug, Clone)]
pub struct ContainerSim {
    rng: Rng,
    base_millicores: f64,
    limit_millicores: f64,
    bytes_per_mcore: f64,
    c: [f64; METRICS.len()],
}

impl ContainerSim {
    /// A container with its own seed-derived profile; counters start as after days of uptime.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let idle = rng.chance(0.2);
        let base = if idle {
            rng.range(2.0, 30.0)
        } else {
            rng.range(100.0, 1500.0)
        };
        let limit = [1000.0, 2000.0, 4000.0][(rng.next_u64() % 3) as usize];
        let mut c = [0.0; METRICS.len()];
        c[0] = (rng.range(1e11, 1e12)).round();
        c[2] = (rng.range(0.0, 1e9)).round();
        c[3] = (rng.range(50_000.0, 500_000.0)).round() * PAGE;
        c[4] = (rng.range(10_000.0, 200_000.0)).round() * PAGE;
        c[6] = [2.0, 4.0, 8.0][(rng.next_u64() % 3) as usize] * 1024.0 * 1024.0 * 1024.0;
        c[7] = (rng.range(1e10, 1e12)).round();
        c[8] = (rng.range(1e10, 1e12)).round();
        c[9] = (c[7] / 900.0).round();
        c[10] = (c[8] / 1100.0).round();
        c[11] = (rng.range(0.0, 20.0)).round();
        c[12] = (rng.range(0.0, 200.0)).round();
        c[13] = (rng.range(1e8, 1e10) / PAGE).round() * PAGE;
        c[14] = (rng.range(1e9, 1e11) / PAGE).round() * PAGE;
        c[15] = (c[13] / PAGE / 8.0).round();
        c[16] = (c[14] / PAGE / 4.0).round();
        c[17] = (rng.range(2e8, 5e9) / PAGE).round() * PAGE;
        c[18] = (rng.range(1.0, 6.0)).round();
        c[19] = (rng.range(20.0, 300.0)).round();
        c[20] = (rng.range(30.0, 400.0)).round();
        c[21] = (rng.range(5.0, 80.0)).round();
        c[22] = (rng.range(0.0, 5000.0)).round();
        c[23] = 1.0;
        Self {
            rng,
            base_millicores: base,
            limit_millicores: limit,
            bytes_per_mcore: rng_range_once(seed, 2_000.0, 40_000.0),
            c,
        }
    }

    /// Advances one interval ending at `t_ms` and returns the 24 readouts, in [`METRICS`] order.
    pub fn tick(&mut self, t_ms: i64) -> [f64; METRICS.len()] {
        let r = &mut self.rng;
        let c = &mut self.c;
        let day = (t_ms as f64 / DAY_MS) * std::f64::consts::TAU;
        let diurnal = 0.65 + 0.35 * day.sin();
        let want = self.base_millicores * diurnal * r.range(0.75, 1.25);
        let mcores = want.min(self.limit_millicores);
        let secs = INTERVAL_MS as f64 / 1000.0;
        let usec = (mcores * 1000.0 * secs).round();
        c[0] += usec;
        c[1] = (usec / 1000.0 / secs).round();
        if want > 0.9 * self.limit_millicores {
            c[2] += (r.range(0.0, 0.2) * 1e6 * secs).round();
        }
        // Memory holds plateaus and moves by a few pages; occasionally a GC drops it.
        if r.chance(0.3) {
            c[3] = (c[3] + (r.range(-8.0, 24.0)).round() * PAGE).max(PAGE);
        }
        if r.chance(0.005) {
            c[3] = (c[3] * 0.8 / PAGE).round() * PAGE;
        }
        if r.chance(0.1) {
            c[4] += (r.range(0.0, 64.0)).round() * PAGE;
        }
        let net = mcores * self.bytes_per_mcore * secs;
        let rx = (net * r.range(0.7, 1.3)).round();
        let tx = (net * 1.5 * r.range(0.7, 1.3)).round();
        c[7] += rx;
        c[8] += tx;
        c[9] += (rx / r.range(600.0, 1200.0)).round();
        c[10] += (tx / r.range(800.0, 1400.0)).round();
        if r.chance(0.001) {
            c[11] += 1.0;
        }
        if r.chance(0.002) {
            c[12] += (r.range(1.0, 10.0)).round();
        }
        if r.chance(0.05) {
            let pages = (r.range(1.0, 256.0)).round();
            c[13] += pages * PAGE;
            c[15] += (pages / 8.0).ceil();
        }
        if r.chance(0.4) {
            let pages = (r.range(1.0, 64.0)).round();
            c[14] += pages * PAGE;
            c[16] += (pages / 4.0).ceil();
            if r.chance(0.2) {
                c[17] += pages * PAGE;
            }
        }
        if r.chance(0.002) {
            c[18] = (c[18] + if r.chance(0.5) { 1.0 } else { -1.0 }).max(1.0);
        }
        if r.chance(0.02) {
            c[19] = (c[19] + (r.range(-3.0, 3.0)).round()).max(1.0);
        }
        if r.chance(0.1) {
            c[20] = (c[20] + (r.range(-5.0, 5.0)).round()).max(3.0);
        }
        if r.chance(0.3) {
            c[21] = (c[21] + (r.range(-3.0, 3.0)).round()).max(0.0);
        }
        if r.chance(0.01) {
            c[22] += (r.range(1.0, 5.0)).round();
        }
        *c
    }
}

fn rng_range_once(seed: u64, lo: f64, hi: f64) -> f64 {
    Rng::new(seed ^ 0xA5A5_A5A5).range(lo, hi)
}

/// Whether the agent missed the tick at `t_ms` for container `seed` (~0.2% of ticks).
pub fn missed_tick(seed: u64, t_ms: i64) -> bool {
    Rng::new(seed.wrapping_mul(31).wrapping_add(t_ms as u64)).chance(0.002)
}
