//! The matched-budget comparison of `scripts/autoscaler_bench.py`, in process
//! and in seconds instead of minutes: for each start-up, the HPA at every
//! target of a grid and the predictive mode at a few targets on the same
//! fixed instance size (the trace's peak = 36 instances at 100 %); each
//! predictive run is paired with the HPA run spending the fewest
//! instance-hours still >= its own. For trying forecaster settings on one
//! half of a trace and checking them on the other.
//!
//! ```sh
//! cargo run -p jdos-autoscaler --example frontier \
//!     --config 'profile.dev.package.jdos-autoscaler.opt-level=3' -- \
//!     traces/alibaba2018_10s.csv cpu_util_percent 10 60,180,300 1
//! ```
//!
//! Arguments: trace, column, sample interval (s), start-ups, which part of
//! the trace (0 whole, 1 first half, 2 second half; the instance size is the
//! whole trace's either way, as in the script), and optionally the
//! predictive targets. Forecaster settings from the environment: `Q`
//! (quantile), `MIN_SCORED`, `STEP` (bucket seconds), `RISE_DAYS`,
//! `RISE_WINDOW`, `RISE_MIN_DAYS`, `REACT` (true/false), `COLD` (cold-start
//! headroom, 1 = none). `PAR` threads
//! (default 2). HPA results are cached under /tmp (they do not depend on
//! the forecaster).

use std::collections::BTreeMap;
use std::sync::Mutex;

use jdos_autoscaler::forecast::ForecastConfig;
use jdos_autoscaler::policy::{Mode, Policy};
use jdos_autoscaler::sim::{simulate, SimConfig, SimReport};

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn forecast_config() -> ForecastConfig {
    let d = ForecastConfig::default();
    ForecastConfig {
        quantile: env("Q", d.quantile),
        min_scored: env("MIN_SCORED", d.min_scored),
        step_seconds: env("STEP", d.step_seconds),
        rise_days: env("RISE_DAYS", d.rise_days),
        rise_window: env("RISE_WINDOW", d.rise_window),
        rise_min_days: env("RISE_MIN_DAYS", d.rise_min_days),
        react_within_bucket: env("REACT", d.react_within_bucket),
        cold_start_headroom: env("COLD", d.cold_start_headroom),
        ..d
    }
}

/// One numeric column of a CSV file with a header row.
pub fn read_column(path: &str, column: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).expect("read the trace");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("a header row").split(',').collect();
    let i = head
        .iter()
        .position(|h| h.trim() == column)
        .expect("the column");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .nth(i)
                .unwrap_or("")
                .trim()
                .parse()
                .expect("a number")
        })
        .collect()
}

/// The policy `jdos autoscale-sim --capacity` builds for `target`.
pub fn sim_policy(peak: f64, capacity: f64, target: f64, startup: u64, mode: Mode) -> Policy {
    let peak_replicas = ((peak / (capacity * target)).ceil() as u32).max(1);
    let base = Policy::from_json(&serde_json::json!({
        "min_replicas": 1, "max_replicas": peak_replicas * 3, "metric": "cpu",
        "target_utilization": target, "startup_seconds": startup,
    }))
    .expect("a valid policy");
    Policy { mode, ..base }
}

#[allow(clippy::too_many_arguments)]
fn run(
    demand: &[f64],
    interval: f64,
    startup: u64,
    capacity: f64,
    peak: f64,
    target: f64,
    mode: Mode,
) -> SimReport {
    let cfg = SimConfig {
        interval_seconds: interval,
        startup_seconds: startup,
        capacity,
        start: 0,
        timeline_every_seconds: 0,
    };
    let policy = sim_policy(peak, capacity, target, startup, mode);
    simulate(demand, &cfg, &policy, forecast_config()).expect("a valid trace")
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!(
            "usage: frontier <csv> <column> <interval s> <start-ups,..> <0|1|2> [targets,..]"
        );
        std::process::exit(2);
    }
    let full = read_column(&a[1], &a[2]);
    let interval: f64 = a[3].parse().expect("interval");
    let startups: Vec<u64> = a[4]
        .split(',')
        .map(|s| s.parse().expect("start-up"))
        .collect();
    let half: usize = a[5].parse().expect("0, 1 or 2");
    let capacity = full.iter().copied().fold(0.0, f64::max) / 36.0;
    let demand: Vec<f64> = match half {
        0 => full.clone(),
        1 => full[..full.len() / 2].to_vec(),
        _ => full[full.len() / 2..].to_vec(),
    };
    let peak = demand.iter().copied().fold(0.0, f64::max);
    let targets: Vec<f64> = match a.get(6) {
        Some(s) => s.split(',').map(|x| x.parse().expect("target")).collect(),
        // The script's predictive targets.
        None if half == 0 => vec![0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95, 1.0],
        None => vec![0.6, 0.7, 0.8, 0.9, 0.95, 1.0],
    };
    // The script's grids: 50-100 % by 1 % (whole), by 2 % (halves).
    let grid: Vec<f64> = (50..=100)
        .step_by(if half == 0 { 1 } else { 2 })
        .map(|i| f64::from(i) / 100.0)
        .collect();
    let stem = std::path::Path::new(&a[1])
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cache_path = format!("/tmp/jdos-hpa-frontier-{stem}-{}-{half}.json", a[2]);
    let mut cache: BTreeMap<String, (f64, f64)> = std::fs::read_to_string(&cache_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let key = |s: u64, t: f64| format!("{s}-{:.0}", t * 100.0);
    let mut jobs = Vec::new();
    for &s in &startups {
        for &t in &grid {
            if !cache.contains_key(&key(s, t)) {
                jobs.push((s, t, Mode::Reactive));
            }
        }
        for &t in &targets {
            jobs.push((s, t, Mode::Predictive));
        }
    }
    let jobs = Mutex::new(jobs);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..env("PAR", 2usize).max(1) {
            sc.spawn(|| loop {
                let Some((s, t, m)) = jobs.lock().expect("lock").pop() else {
                    break;
                };
                let r = run(&demand, interval, s, capacity, peak, t, m);
                done.lock().expect("lock").push((s, t, m, r));
            });
        }
    });
    let mut pred = BTreeMap::new();
    for (s, t, m, r) in done.into_inner().expect("lock") {
        if m == Mode::Reactive {
            cache.insert(key(s, t), (r.instance_hours, r.underprovisioned_pct));
        } else {
            pred.insert(key(s, t), r);
        }
    }
    if let Ok(s) = serde_json::to_string(&cache) {
        // A cache only: a failed write costs a re-run.
        let _ = std::fs::write(&cache_path, s);
    }
    for &s in &startups {
        let mut best = f64::INFINITY;
        for &t in &targets {
            let p = &pred[&key(s, t)];
            let richer = grid
                .iter()
                .filter_map(|&g| cache.get(&key(s, g)).map(|v| (g, *v)))
                .filter(|(_, (ih, _))| *ih >= p.instance_hours)
                .min_by(|x, y| x.1 .0.total_cmp(&y.1 .0));
            let Some((g, (ih, hu))) = richer else {
                println!(
                    "{s}s {t:.2}: pred inst-h {:.0} under {:.3}% (no HPA setting spends as much)",
                    p.instance_hours, p.underprovisioned_pct
                );
                continue;
            };
            let ratio = if hu > 0.0 {
                p.underprovisioned_pct / hu
            } else {
                f64::NAN
            };
            if hu > 0.0 {
                best = best.min(ratio);
            }
            println!(
                "{s}s {t:.2}: pred inst-h {:.0} under {:.3}% events {} | HPA {g:.2} inst-h {ih:.0} under {hu:.3}% | ratio {ratio:.2}",
                p.instance_hours, p.underprovisioned_pct, p.scale_events
            );
        }
        println!("== start-up {s} s, part {half}: best ratio {best:.2}");
    }
}
