//! `jdos autoscale-sim`: replays a CSV load trace on a simulated group under
//! the reactive (Kubernetes HPA) and/or predictive policy and prints how well
//! each provisioned it. The simulation lives in `jdos_autoscaler::sim`; this
//! file only parses and prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use jdos_autoscaler::forecast::ForecastConfig;
use jdos_autoscaler::policy::{Metric, Mode, Policy};
use jdos_autoscaler::sim::{self, SimConfig, SimReport};

/// Which policies to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The Kubernetes HPA algorithm.
    Reactive,
    /// The forecaster.
    Predictive,
    /// Both, side by side.
    Both,
}

/// Flags of `jdos autoscale-sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CSV file with a header row; one row per sample.
    #[arg(long)]
    pub trace: PathBuf,
    /// Column to use as demand.
    #[arg(long)]
    pub column: String,
    /// Seconds between two rows.
    #[arg(long)]
    pub interval: f64,
    /// Seconds before a new instance serves.
    #[arg(long, default_value_t = 60)]
    pub startup: u64,
    /// Instances that run the trace's peak at the target utilization
    /// (sets the per-instance capacity).
    #[arg(long, default_value_t = 20)]
    pub peak_replicas: u32,
    /// Demand one instance serves at 100 % utilization, in trace units
    /// (overrides the capacity derived from --peak-replicas; lets a sweep of
    /// --target keep the instance size fixed).
    #[arg(long)]
    pub capacity: Option<f64>,
    /// Policies to run.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    pub policy: Which,
    /// Target cpu utilization per instance.
    #[arg(long, default_value_t = 0.6)]
    pub target: f64,
    /// Fewest replicas.
    #[arg(long, default_value_t = 1)]
    pub min_replicas: u32,
    /// Most replicas (default: 3 × peak-replicas).
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Write a timeline CSV (one row per 5 simulated minutes) for plots.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Print one JSON object keyed by policy as the last line.
    #[arg(long)]
    pub json: bool,
}

/// Reads one numeric column of a CSV file with a header row.
fn read_column(path: &PathBuf, column: &str) -> anyhow::Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read trace {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().context("the trace file is empty")?;
    let names: Vec<&str> = header
        .split(',')
        .map(|h| h.trim().trim_matches('"'))
        .collect();
    let Some(col) = names.iter().position(|n| *n == column) else {
        bail!(
            "column {column:?} not found in {}; columns: {}",
            path.display(),
            names.join(", ")
        );
    };
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cell = line.split(',').nth(col).unwrap_or("").trim();
        let v: f64 = cell
            .parse()
            .with_context(|| format!("line {}: {column} value {cell:?} is not a number", i + 2))?;
        out.push(v);
    }
    if out.is_empty() {
        bail!("the trace has a header but no rows");
    }
    Ok(out)
}

/// Runs the sub-command.
pub fn run(a: Args) -> anyhow::Result<()> {
    if !(a.target > 0.0 && a.target <= 1.0) {
        bail!("--target must be in (0, 1]");
    }
    if a.peak_replicas == 0 {
        bail!("--peak-replicas must be at least 1");
    }
    let demand = read_column(&a.trace, &a.column)?;
    let peak = demand.iter().copied().fold(0.0, f64::max);
    // Replicas that run the peak at the target: --peak-replicas, or what
    // --capacity implies.
    let peak_replicas = match a.capacity {
        Some(c) if c > 0.0 && c.is_finite() => ((peak / (c * a.target)).ceil() as u32).max(1),
        _ => a.peak_replicas,
    };
    let max = a
        .max_replicas
        .unwrap_or(peak_replicas.saturating_mul(3).max(a.min_replicas));
    let base = Policy::from_json(&serde_json::json!({
        "min_replicas": a.min_replicas,
        "max_replicas": max,
        "metric": "cpu",
        "target_utilization": a.target,
        "startup_seconds": a.startup,
    }))
    .context("invalid flags")?;
    let capacity = match a.capacity {
        Some(c) if c > 0.0 && c.is_finite() => c,
        Some(_) => bail!("--capacity must be a positive number"),
        None => sim::capacity_for_peak(&demand, a.peak_replicas, &base.metric),
    };
    let cfg = SimConfig {
        interval_seconds: a.interval,
        startup_seconds: a.startup,
        capacity,
        start: 0,
        timeline_every_seconds: if a.timeline.is_some() { 300 } else { 0 },
    };
    let modes: &[Mode] = match a.policy {
        Which::Reactive => &[Mode::Reactive],
        Which::Predictive => &[Mode::Predictive],
        Which::Both => &[Mode::Reactive, Mode::Predictive],
    };
    let Metric::Cpu { target_utilization } = base.metric else {
        unreachable!("the simulator policy is built with the cpu metric above")
    };
    println!(
        "trace {} column {}: {} samples x {} s = {:.1} h; capacity {:.4} per instance (peak = {:.1} replicas at target {:.0}%), startup {} s, replicas {}..{}",
        a.trace.display(),
        a.column,
        demand.len(),
        a.interval,
        (demand.len().saturating_sub(1)) as f64 * a.interval / 3600.0,
        capacity,
        peak / (capacity * target_utilization),
        target_utilization * 100.0,
        a.startup,
        a.min_replicas,
        max
    );
    println!(
        "{:<11} {:>10} {:>10} {:>14} {:>12} {:>11}",
        "policy", "under_%", "slack_%", "instance_h", "scale_events", "forecast_%"
    );
    let mut results: BTreeMap<&str, SimReport> = BTreeMap::new();
    for &mode in modes {
        let policy = Policy {
            mode,
            ..base.clone()
        };
        let r = sim::simulate(&demand, &cfg, &policy, ForecastConfig::default())
            .with_context(|| format!("simulating {}", mode.as_str()))?;
        println!(
            "{:<11} {:>10.3} {:>10.2} {:>14.1} {:>12} {:>11.1}",
            mode.as_str(),
            r.underprovisioned_pct,
            r.overprovisioned_pct,
            r.instance_hours,
            r.scale_events,
            r.predictive_pct
        );
        results.insert(mode.as_str(), r);
    }
    if let Some(path) = &a.timeline {
        write_timeline(path, capacity, &results)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&results)?);
    }
    Ok(())
}

fn write_timeline(
    path: &PathBuf,
    capacity: f64,
    results: &BTreeMap<&str, SimReport>,
) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let names: Vec<&str> = results.keys().copied().collect();
    write!(f, "t_s,demand,capacity_per_instance")?;
    for n in &names {
        write!(f, ",{n}_ready,{n}_running")?;
    }
    writeln!(f)?;
    let len = results
        .values()
        .map(|r| r.timeline.len())
        .min()
        .unwrap_or(0);
    for i in 0..len {
        let first = &results[names[0]].timeline[i];
        write!(f, "{},{},{}", first.t, first.demand, capacity)?;
        for n in &names {
            let p = &results[n].timeline[i];
            write!(f, ",{},{}", p.ready, p.running)?;
        }
        writeln!(f)?;
    }
    f.flush()?;
    Ok(())
}
