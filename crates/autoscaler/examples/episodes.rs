//! Lists the under-provisioned episodes of one replay (per second), with
//! the ready and running instances and the demand in instances, and how
//! many of those seconds fall in the first 10 minutes and the first day.
//! The instance size is the one of `frontier` and the script's frontier
//! (the trace's peak = 36 instances at 100 %).
//!
//! ```sh
//! cargo run -p jdos-autoscaler --example episodes \
//!     --config 'profile.dev.package.jdos-autoscaler.opt-level=3' -- \
//!     traces/alibaba2018_10s.csv cpu_util_percent 10 300 0.7 predictive
//! ```

use jdos_autoscaler::forecast::ForecastConfig;
use jdos_autoscaler::policy::Mode;
use jdos_autoscaler::sim::{simulate, SimConfig};

#[path = "frontier.rs"]
#[allow(dead_code)]
mod frontier;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 7 {
        eprintln!("usage: episodes <csv> <column> <interval s> <start-up s> <target> <reactive|predictive>");
        std::process::exit(2);
    }
    let demand = frontier::read_column(&a[1], &a[2]);
    let interval: f64 = a[3].parse().expect("interval");
    let startup: u64 = a[4].parse().expect("start-up");
    let target: f64 = a[5].parse().expect("target");
    let mode = if a[6] == "reactive" {
        Mode::Reactive
    } else {
        Mode::Predictive
    };
    let peak = demand.iter().copied().fold(0.0, f64::max);
    let cap = peak / 36.0;
    let policy = frontier::sim_policy(peak, cap, target, startup, mode);
    let cfg = SimConfig {
        interval_seconds: interval,
        startup_seconds: startup,
        capacity: cap,
        start: 0,
        timeline_every_seconds: 1,
    };
    let r = simulate(&demand, &cfg, &policy, ForecastConfig::default()).expect("a valid trace");
    let tl = &r.timeline;
    let short = |i: usize| tl[i].demand > f64::from(tl[i].ready) * cap * (1.0 + 1e-9);
    let (mut i, mut total, mut first10, mut day0) = (0, 0, 0, 0);
    while i < tl.len() {
        if !short(i) {
            i += 1;
            continue;
        }
        let s = i;
        while i < tl.len() && short(i) {
            i += 1;
        }
        let len = i - s;
        let peak_in = tl[s..i].iter().map(|p| p.demand / cap).fold(0.0, f64::max);
        let before = tl[s.saturating_sub(300)..s]
            .iter()
            .map(|p| p.demand / cap)
            .fold(0.0, f64::max);
        println!(
            "t {:7} s (day {} {:5.2} h): {len:4} s short; ready {:3} running {:3}; demand up to {peak_in:5.1} (max of the 5 min before {before:5.1})",
            tl[s].t,
            tl[s].t / 86_400,
            (tl[s].t % 86_400) as f64 / 3600.0,
            tl[s].ready,
            tl[s].running,
        );
        total += len;
        if tl[s].t < 600 {
            first10 += len;
        }
        if tl[s].t < 86_400 {
            day0 += len;
        }
    }
    println!(
        "{total} s under-provisioned ({:.3} %), {first10} s in the first 10 min, {day0} s in the first day; {:.0} instance-hours",
        r.underprovisioned_pct, r.instance_hours
    );
}
