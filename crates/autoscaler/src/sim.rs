//! Replays a load trace as demand on a simulated group and scores a policy.
//!
//! The group's instances each serve `capacity` units of demand at 100 %
//! utilization. The autoscaler runs every `sync_seconds` and sees each ready
//! instance's utilization (`demand / (ready × capacity)`, uncapped as for an
//! offered-load metric). A new instance serves only after `startup_seconds`;
//! scale-in removes the newest instances first (starting ones before ready
//! ones, as Kubernetes does). The trace is linearly interpolated between its
//! samples and accounted second by second.

use jdos_types::UnixMillis;
use serde::Serialize;

use crate::engine::{replicas_for, Autoscaler, ModeUsed, Observation};
use crate::forecast::ForecastConfig;
use crate::hpa::PodMetric;
use crate::policy::{Metric, Policy};

/// How the trace is replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seconds between two trace samples.
    pub interval_seconds: f64,
    /// Seconds before a new instance serves.
    pub startup_seconds: u64,
    /// Demand one instance serves at 100 % utilization.
    pub capacity: f64,
    /// Wall-clock time of the first sample (for scheduled floors).
    pub start: UnixMillis,
    /// Seconds between two timeline points (0 = no timeline).
    pub timeline_every_seconds: u64,
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The trace has no samples.
    #[error("the trace is empty")]
    EmptyTrace,
    /// A sample is negative, NaN or infinite.
    #[error("trace sample {index} is not a finite non-negative number")]
    BadSample {
        /// Zero-based sample index.
        index: usize,
    },
    /// The interval is not positive.
    #[error("the sample interval must be a positive number of seconds")]
    BadInterval,
    /// The capacity is not positive.
    #[error("per-instance capacity must be positive (is the trace all zeros?)")]
    BadCapacity,
}

/// One timeline point (for plots).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start.
    pub t: u64,
    /// Demand.
    pub demand: f64,
    /// Ready instances.
    pub ready: u32,
    /// Running instances (ready + starting).
    pub running: u32,
}

/// The score of one policy on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// Share of time demand exceeded ready capacity, percent.
    pub underprovisioned_pct: f64,
    /// Mean slack, percent: unused share of ready capacity, averaged over time.
    pub overprovisioned_pct: f64,
    /// Instance-hours run (starting instances included).
    pub instance_hours: f64,
    /// Changes of the replica count.
    pub scale_events: u64,
    /// Share of syncs decided by the forecast, percent.
    pub predictive_pct: f64,
    /// Simulated hours.
    pub hours: f64,
    /// Timeline, when asked for.
    #[serde(skip)]
    pub timeline: Vec<TimelinePoint>,
}

/// Per-instance capacity such that `peak_replicas` instances run the trace's
/// peak at the metric's target (cpu: `peak / (peak_replicas × target)`).
pub fn capacity_for_peak(demand: &[f64], peak_replicas: u32, metric: &Metric) -> f64 {
    let peak = demand.iter().copied().fold(0.0, f64::max);
    let per_instance = peak / f64::from(peak_replicas.max(1));
    match metric {
        Metric::Cpu { target_utilization } => per_instance / target_utilization,
        // A custom metric's target is in demand units already.
        Metric::Custom { .. } => per_instance,
    }
}

fn interpolate(demand: &[f64], interval: f64, t: f64) -> f64 {
    let x = t / interval;
    let i = x.floor() as usize;
    if i + 1 >= demand.len() {
        return demand[demand.len() - 1];
    }
    let f = x - i as f64;
    demand[i] * (1.0 - f) + demand[i + 1] * f
}

/// Replays `demand` on a group run by `policy`.
pub fn simulate(
    demand: &[f64],
    cfg: &SimConfig,
    policy: &Policy,
    forecast: ForecastConfig,
) -> Result<SimReport, SimError> {
    if demand.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    if let Some(index) = demand.iter().position(|d| !(d.is_finite() && *d >= 0.0)) {
        return Err(SimError::BadSample { index });
    }
    if !(cfg.interval_seconds > 0.0 && cfg.interval_seconds.is_finite()) {
        return Err(SimError::BadInterval);
    }
    if !(cfg.capacity > 0.0 && cfg.capacity.is_finite()) {
        return Err(SimError::BadCapacity);
    }
    let cap = cfg.capacity;
    let utilization = policy.metric.is_utilization();
    let total = ((demand.len() - 1) as f64 * cfg.interval_seconds).max(cfg.interval_seconds) as u64;
    let sync = policy.sync_seconds.max(1);
    let mut scaler = Autoscaler::with_forecast_config(policy.clone(), forecast);

    // Start right-sized for the first sample, all instances ready.
    let per_instance_target = match policy.metric {
        Metric::Cpu { target_utilization } => cap * target_utilization,
        Metric::Custom { target_value, .. } => target_value,
    };
    let first = replicas_for(demand[0], per_instance_target)
        .max(policy.floor_at(cfg.start))
        .min(policy.max_replicas);
    // Ready-at times (seconds), ascending: the newest are last.
    let mut pods: Vec<u64> = vec![0; first as usize];
    let (mut under, mut slack, mut inst_seconds) = (0u64, 0.0f64, 0u64);
    let (mut events, mut syncs, mut predictive) = (0u64, 0u64, 0u64);
    let mut timeline = Vec::new();
    let mut metrics: Vec<PodMetric> = Vec::new();
    for t in 0..total {
        let d = interpolate(demand, cfg.interval_seconds, t as f64);
        let ready = pods.iter().take_while(|&&r| r <= t).count() as u32;
        if t % sync == 0 {
            metrics.clear();
            for &r in &pods {
                let value = (r <= t).then(|| {
                    let per = d / f64::from(ready);
                    if utilization {
                        per / cap
                    } else {
                        per
                    }
                });
                metrics.push(PodMetric {
                    ready: r <= t,
                    value,
                });
            }
            let now = cfg.start + t * 1000;
            let current = pods.len() as u32;
            let dec = scaler.decide(
                now,
                &Observation {
                    current_replicas: current,
                    pods: &metrics,
                },
            );
            syncs += 1;
            if dec.mode_used == ModeUsed::Predictive {
                predictive += 1;
            }
            if dec.desired != current {
                events += 1;
                if dec.desired > current {
                    pods.extend(std::iter::repeat_n(
                        t + cfg.startup_seconds,
                        (dec.desired - current) as usize,
                    ));
                } else {
                    pods.truncate(dec.desired as usize);
                }
            }
        }
        let ready = pods.iter().take_while(|&&r| r <= t).count() as u32;
        let ready_cap = f64::from(ready) * cap;
        if d > ready_cap * (1.0 + 1e-9) {
            under += 1;
        } else if ready_cap > 0.0 {
            slack += 1.0 - d / ready_cap;
        }
        inst_seconds += pods.len() as u64;
        if cfg.timeline_every_seconds > 0 && t % cfg.timeline_every_seconds == 0 {
            timeline.push(TimelinePoint {
                t,
                demand: d,
                ready,
                running: pods.len() as u32,
            });
        }
    }
    let n = total as f64;
    Ok(SimReport {
        underprovisioned_pct: under as f64 / n * 100.0,
        overprovisioned_pct: slack / n * 100.0,
        instance_hours: inst_seconds as f64 / 3600.0,
        scale_events: events,
        predictive_pct: if syncs == 0 {
            0.0
        } else {
            predictive as f64 / syncs as f64 * 100.0
        },
        hours: n / 3600.0,
        timeline,
    })
}
