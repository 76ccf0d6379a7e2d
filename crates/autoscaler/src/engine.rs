//! The per-group autoscaler a controller drives: feed it one [`Observation`]
//! per sync period, apply the [`Decision`]'s `desired`, and record its
//! `reason` as the event explaining the decision.

use std::collections::VecDeque;

use jdos_types::UnixMillis;
use serde::Serialize;

use crate::forecast::{ForecastConfig, Forecaster, NoForecast};
use crate::hpa::{Hpa, HpaConfig, HpaInput, PodMetric, ScalingRules};
use crate::policy::{Mode, Policy};

/// What one sync observes about a group.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Replicas the group has now (desired count of the group).
    pub current_replicas: u32,
    /// Its live pods (not the ones being deleted), with their metric.
    pub pods: &'a [PodMetric],
}

/// Which logic produced a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeUsed {
    /// The HPA algorithm (the policy is reactive).
    Reactive,
    /// The forecast.
    Predictive,
    /// The HPA algorithm because no trustworthy forecast was available.
    ReactiveFallback,
}

/// The outcome of one sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Replicas the group should have.
    pub desired: u32,
    /// What the numbers were and why (for the event log).
    pub reason: String,
    /// Which logic decided.
    pub mode_used: ModeUsed,
    /// The floor in force (min replicas raised by scheduled windows).
    pub floor: u32,
}

/// The autoscaler state of one group: the HPA's windows and the forecaster.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: Policy,
    hpa: Hpa,
    forecaster: Forecaster,
    /// Recent predictive wants (time, replicas), for scale-in smoothing.
    recent: VecDeque<(UnixMillis, u32)>,
}

impl Autoscaler {
    /// An autoscaler for `policy` with the default forecaster.
    pub fn new(policy: Policy) -> Self {
        Self::with_forecast_config(policy, ForecastConfig::default())
    }

    /// An autoscaler with explicit forecaster settings.
    pub fn with_forecast_config(policy: Policy, cfg: ForecastConfig) -> Self {
        let defaults = HpaConfig::default();
        let hpa = Hpa::new(HpaConfig {
            tolerance: policy.tolerance,
            scale_down: ScalingRules {
                stabilization_seconds: policy.scale_down_stabilization_seconds,
                ..defaults.scale_down
            },
            ..defaults
        });
        let forecaster = Forecaster::new(cfg, policy.horizon_seconds());
        Autoscaler {
            policy,
            hpa,
            forecaster,
            recent: VecDeque::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The forecaster (for inspection).
    pub fn forecaster(&self) -> &Forecaster {
        &self.forecaster
    }

    /// Feeds past load samples `(time, total group load in metric units)`,
    /// oldest first, e.g. from the monitoring store after a controller
    /// restart, so that the predictive mode need not wait for new history.
    pub fn warm_up(&mut self, history: impl IntoIterator<Item = (UnixMillis, f64)>) {
        for (at, load) in history {
            self.forecaster.observe(at, load);
        }
    }

    /// Replicas the cold-start headroom asks for: the highest load seen so
    /// far times the headroom, at full capacity, within the policy's bounds.
    /// Only while history is short; an inaccurate forecast falls back to
    /// the HPA alone (the history's highest load may be days old).
    fn cold_start_need(&self, why: &NoForecast) -> u32 {
        let headroom = self.forecaster.config().cold_start_headroom;
        if !matches!(why, NoForecast::ShortHistory { .. }) || headroom.is_nan() || headroom <= 1.0 {
            return 0;
        }
        let p = &self.policy;
        self.forecaster.highest_seen().map_or(0, |h| {
            replicas_for(h * headroom, p.metric.ceiling()).min(p.max_replicas)
        })
    }

    /// One sync at `now`: returns the replicas to run and why. The caller is
    /// assumed to apply `desired` (the rate windows count it as done).
    pub fn decide(&mut self, now: UnixMillis, obs: &Observation<'_>) -> Decision {
        let p = &self.policy;
        let floor = p.floor_at(now);
        let target = p.metric.target();
        let utilization = p.metric.is_utilization();
        let current = obs.current_replicas;
        let load = group_load(obs.pods, utilization);
        if let Some(l) = load {
            self.forecaster.observe(now, l);
        }
        let hpa = self.hpa.evaluate(
            now,
            &HpaInput {
                current,
                pods: obs.pods,
                target,
                utilization,
                min: floor,
                max: p.max_replicas,
            },
        );
        let floor_note = if floor > p.min_replicas {
            format!("; scheduled floor {floor} in force")
        } else {
            String::new()
        };
        let (desired, mode_used, reason) = match (p.mode, load, self.forecaster.forecast()) {
            (Mode::Reactive, _, _) => (
                hpa.desired,
                ModeUsed::Reactive,
                format!("hpa: {}{floor_note}", hpa.reason),
            ),
            (Mode::Predictive, None, _) => (
                hpa.desired,
                ModeUsed::ReactiveFallback,
                format!("no load measured, hpa: {}{floor_note}", hpa.reason),
            ),
            (Mode::Predictive, _, Err(why)) => {
                let cold = self.cold_start_need(&why);
                if cold > hpa.desired {
                    (
                        cold,
                        ModeUsed::ReactiveFallback,
                        format!(
                            "forecast unusable ({why}), cold-start headroom: {:.1}x the highest load seen {:.2} needs {cold} at {:.0}% (hpa: {}){floor_note}",
                            self.forecaster.config().cold_start_headroom,
                            self.forecaster.highest_seen().unwrap_or(0.0),
                            p.metric.ceiling() * 100.0,
                            hpa.reason
                        ),
                    )
                } else {
                    (
                        hpa.desired,
                        ModeUsed::ReactiveFallback,
                        format!("forecast unusable ({why}), hpa: {}{floor_note}", hpa.reason),
                    )
                }
            }
            (Mode::Predictive, Some(load), Ok(f))
                if current >= floor && current <= p.max_replicas =>
            {
                // The forecast peak at the target, and its upper quantile at
                // full capacity: scaling ahead replaces the HPA's reaction lag,
                // the quantile covers the forecast's own error.
                let ceiling = p.metric.ceiling();
                let need_forecast =
                    replicas_for(f.peak, target).max(replicas_for(f.upper, ceiling));
                // The reactive signal: what the HPA's calculator asks for from
                // the observed load (before its scale-down stabilization).
                let reactive = hpa.recommendation.map_or(current, |r| r.replicas);
                let now_wanted = need_forecast.max(reactive).max(floor).min(p.max_replicas);
                // Scale in to the highest want of the last horizon or of the
                // HPA's scale-down window, whichever is longer, and never
                // below the HPA's own stabilized recommendation: a dip
                // shorter than a start-up does not cost a replica, and the
                // forecast removes capacity no sooner than the HPA would
                // (the forecast is trusted to add capacity early, not to
                // take it away early; on the Alibaba trace this also halves
                // the replica churn at a 60 s start-up).
                let window_ms = p.horizon_seconds().max(p.scale_down_stabilization_seconds) * 1000;
                self.recent.retain(|&(at, _)| at + window_ms > now);
                self.recent.push_back((now, now_wanted));
                let wanted = self
                    .recent
                    .iter()
                    .map(|&(_, w)| w)
                    .max()
                    .unwrap_or(now_wanted)
                    .max(hpa.stabilized);
                // The HPA's tolerance band, applied to the forecast: within
                // it, keep the current count (no flapping, same utilization
                // band as the baseline).
                let cap_now = f64::from(current.max(1));
                let forecast_ratio = f.peak / (cap_now * target);
                let upper_fits = f.upper <= cap_now * ceiling;
                let mut note = String::new();
                let rise_note = if f.rise > 1.0 {
                    format!(", rise at this time of day {:.2}x", f.rise)
                } else {
                    String::new()
                };
                let desired = if now_wanted > current
                    && (forecast_ratio > 1.0 + p.tolerance
                        || !upper_fits
                        || reactive > current
                        || floor > current)
                {
                    now_wanted
                } else if wanted < current
                    && forecast_ratio < 1.0 - p.tolerance
                    && reactive < current
                {
                    // Both the forecast and the observed load allow a scale-in;
                    // no faster than the HPA's scale-down rate policy.
                    let limit = self.hpa.scale_down_floor(now, current);
                    if wanted < limit {
                        note = format!("; scale-in limited to {limit} by the rate policy");
                    }
                    wanted.max(limit)
                } else {
                    if now_wanted > current {
                        note = format!(
                            "; forecast ratio {forecast_ratio:.2} within tolerance {:.2}, keep {current}",
                            p.tolerance
                        );
                    } else if now_wanted < current {
                        note = format!(
                            "; scale-in held (forecast ratio {forecast_ratio:.2}, hpa recommends {reactive}), keep {current}"
                        );
                    }
                    current
                };
                (
                    desired,
                    ModeUsed::Predictive,
                    format!(
                        "forecast peak {:.2} (p{:.0} {:.2}{rise_note}) over the next {} s by {} (error {:.0}%) needs {} at target {} (p{:.0} at {:.0}%); observed load {:.2} needs {} (hpa recommends {}){floor_note}{note}; desired {}",
                        f.peak,
                        self.forecaster.config().quantile * 100.0,
                        f.upper,
                        f.horizon_seconds,
                        f.model,
                        f.relative_error * 100.0,
                        need_forecast,
                        p.metric.describe(),
                        self.forecaster.config().quantile * 100.0,
                        ceiling * 100.0,
                        load,
                        replicas_for(load, target),
                        reactive,
                        desired
                    ),
                )
            }
            // Outside [floor, max]: the HPA's clamping decides.
            (Mode::Predictive, Some(_), Ok(_)) => (
                hpa.desired,
                ModeUsed::Predictive,
                format!("hpa: {}{floor_note}", hpa.reason),
            ),
        };
        self.hpa.record_scale(now, current, desired);
        Decision {
            desired,
            reason,
            mode_used,
            floor,
        }
    }
}

/// Replicas that carry `load` at `target` per instance.
pub fn replicas_for(load: f64, target: f64) -> u32 {
    if load.is_nan() || target.is_nan() || load <= 0.0 || target <= 0.0 {
        return 0;
    }
    let r = (load / target - 1e-9).ceil();
    if r >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        r as u32
    }
}

/// The group's total load in metric units (cpu: request-equivalents), from
/// the pods the HPA counts as ready; ready pods without a metric are assumed
/// to carry the mean.
fn group_load(pods: &[PodMetric], utilization: bool) -> Option<f64> {
    let mut sum = 0.0;
    let mut with = 0u32;
    let mut without = 0u32;
    for p in pods {
        match (p.ready, p.value) {
            (true, Some(v)) => {
                sum += v;
                with += 1;
            }
            (false, Some(v)) if !utilization => {
                sum += v;
                with += 1;
            }
            (true, None) => without += 1,
            _ => {}
        }
    }
    (with > 0).then(|| sum + sum / f64::from(with) * f64::from(without))
}
