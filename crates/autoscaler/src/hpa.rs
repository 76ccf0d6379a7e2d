//! A re-implementation of the Kubernetes HorizontalPodAutoscaler (autoscaling/v2)
//! algorithm, our reactive baseline. It follows the documented behaviour and the
//! controller's `replica_calculator.go` / `horizontal.go`:
//!
//! * `desired = ceil(ready × currentMetric / target)`, skipped when the usage
//!   ratio is within `tolerance` (0.1) of 1.0;
//! * pods without metrics count as using 100 % of the target (cpu: of the
//!   request) on a scale-down and 0 % on a scale-up; not-ready pods count as 0 %
//!   on a scale-up (cpu only); neither may flip the direction of the scale;
//! * behaviour defaults: scale-up has no stabilization and allows
//!   `max(100 %, 4 pods)` per 15 s; scale-down keeps the highest recommendation
//!   of the last 300 s and allows 100 % per 15 s;
//! * the result is clamped to `[min, max]`.
//!
//! Time is an argument (Unix milliseconds); the caller runs [`Hpa::decide`]
//! once per sync period and applies the result.

use jdos_types::UnixMillis;

/// One pod as the metrics pipeline sees it. Pods being deleted or failed are
/// left out by the caller (the HPA ignores them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    /// Ready per its readiness probe (and past the cpu initialization period).
    pub ready: bool,
    /// The pod's metric (cpu: utilization as a fraction of its request), if
    /// the metrics pipeline returned one.
    pub value: Option<f64>,
}

impl PodMetric {
    /// A ready pod reporting `value`.
    pub fn ready(value: f64) -> Self {
        PodMetric {
            ready: true,
            value: Some(value),
        }
    }
}

/// How a scaling policy limits change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// At most `value` pods per period.
    Pods,
    /// At most `value` percent of the replicas at the start of the period.
    Percent,
}

/// One HPA `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// Pods or percent.
    pub kind: PolicyKind,
    /// Amount.
    pub value: u32,
    /// Period the amount applies to, seconds.
    pub period_seconds: u64,
}

/// Which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The one allowing the largest change (default).
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One direction of `HPAScalingRules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingRules {
    /// Stabilization window, seconds.
    pub stabilization_seconds: u64,
    /// Policy selection.
    pub select: SelectPolicy,
    /// Rate policies.
    pub policies: Vec<ScalingPolicy>,
}

/// The HPA's knobs. [`HpaConfig::default`] is the documented default
/// behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaConfig {
    /// Ratio band around 1.0 inside which nothing changes.
    pub tolerance: f64,
    /// Scale-up behaviour.
    pub scale_up: ScalingRules,
    /// Scale-down behaviour.
    pub scale_down: ScalingRules,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            tolerance: 0.1,
            scale_up: ScalingRules {
                stabilization_seconds: 0,
                select: SelectPolicy::Max,
                policies: vec![
                    ScalingPolicy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period_seconds: 15,
                    },
                    ScalingPolicy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period_seconds: 15,
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization_seconds: 300,
                select: SelectPolicy::Max,
                policies: vec![ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                }],
            },
        }
    }
}

/// Why the replica calculator could not produce a recommendation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpaError {
    /// No pod reported the metric.
    #[error("no metrics returned for any pod; not scaling")]
    NoMetrics,
    /// The target is zero, negative or not a number.
    #[error("the metric target must be a positive number")]
    BadTarget,
}

/// The replica calculator's answer for one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Recommended replicas before stabilization, rate limits and min/max.
    pub replicas: u32,
    /// Mean metric of ready pods over the target.
    pub usage_ratio: f64,
    /// Mean metric of ready pods.
    pub mean_value: f64,
    /// Pods that reported a metric and count as ready.
    pub ready: u32,
    /// Not-ready pods.
    pub unready: u32,
    /// Ready pods without a metric.
    pub missing: u32,
}

/// The replica calculator (`GetResourceReplicas` / `GetMetricReplicas`):
/// pure, no history. `utilization` selects the cpu rules (readiness counts,
/// missing pods assume 100 % of the request on a scale-down); otherwise the
/// custom-metric rules (readiness ignored, missing pods assume the target).
pub fn recommend(
    current_replicas: u32,
    pods: &[PodMetric],
    target: f64,
    tolerance: f64,
    utilization: bool,
) -> Result<Recommendation, HpaError> {
    if !(target > 0.0 && target.is_finite()) {
        return Err(HpaError::BadTarget);
    }
    let mut ready_values = Vec::with_capacity(pods.len());
    let (mut unready, mut missing) = (0u32, 0u32);
    for p in pods {
        match (p.ready, p.value) {
            // A pending / starting pod has no metric yet: the HPA lists it as unready.
            (false, None) => unready += 1,
            (true, None) => missing += 1,
            (false, Some(_)) if utilization => unready += 1,
            (_, Some(v)) => ready_values.push(v),
        }
    }
    if ready_values.is_empty() {
        return Err(HpaError::NoMetrics);
    }
    let ready = ready_values.len() as u32;
    let sum: f64 = ready_values.iter().sum();
    let mean_value = sum / f64::from(ready);
    let usage_ratio = mean_value / target;
    let out = |replicas: u32| Recommendation {
        replicas,
        usage_ratio,
        mean_value,
        ready,
        unready,
        missing,
    };
    let scale_up_with_unready = unready > 0 && usage_ratio > 1.0;
    if !scale_up_with_unready && missing == 0 {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Ok(out(current_replicas));
        }
        return Ok(out(ceil_u32(usage_ratio * f64::from(ready))));
    }
    // Second pass: fill in conservative values and recompute.
    let mut total = sum;
    let mut count = ready;
    if missing > 0 {
        let fill = if usage_ratio < 1.0 {
            if utilization {
                // 100 % of the request, or the target if it is above 100 %.
                target.max(1.0)
            } else {
                target
            }
        } else {
            0.0
        };
        total += fill * f64::from(missing);
        count += missing;
    }
    if scale_up_with_unready {
        count += unready;
    }
    let new_ratio = total / f64::from(count) / target;
    if (1.0 - new_ratio).abs() <= tolerance
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(out(current_replicas));
    }
    let new_replicas = ceil_u32(new_ratio * f64::from(count));
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return Ok(out(current_replicas));
    }
    Ok(Recommendation {
        usage_ratio: new_ratio,
        ..out(new_replicas)
    })
}

fn ceil_u32(x: f64) -> u32 {
    // Guard against 4.000000001 from float error turning into 5.
    let r = (x - 1e-9).ceil();
    if r <= 0.0 {
        0
    } else if r >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        r as u32
    }
}

/// What one sync observes about a group.
#[derive(Debug, Clone, Copy)]
pub struct HpaInput<'a> {
    /// Replicas the group has now (the scale sub-resource).
    pub current: u32,
    /// Its pods.
    pub pods: &'a [PodMetric],
    /// Per-pod metric target.
    pub target: f64,
    /// Cpu-utilization rules (true) or custom-metric rules (false).
    pub utilization: bool,
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
}

/// What the HPA decided at one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaOutcome {
    /// Replicas to run.
    pub desired: u32,
    /// The calculator's recommendation, when metrics allowed one.
    pub recommendation: Option<Recommendation>,
    /// The recommendation after the stabilization windows.
    pub stabilized: u32,
    /// Human explanation of the numbers.
    pub reason: String,
}

#[derive(Debug, Clone, Copy)]
struct Stamped {
    at: UnixMillis,
    value: u32,
}

/// The HPA controller's per-target state: recent recommendations (for the
/// stabilization windows) and scale events (for the rate policies).
#[derive(Debug, Clone)]
pub struct Hpa {
    config: HpaConfig,
    recommendations: Vec<Stamped>,
    scale_ups: Vec<Stamped>,
    scale_downs: Vec<Stamped>,
    initialized: bool,
}

impl Hpa {
    /// A fresh controller state.
    pub fn new(config: HpaConfig) -> Self {
        Hpa {
            config,
            recommendations: Vec::new(),
            scale_ups: Vec::new(),
            scale_downs: Vec::new(),
            initialized: false,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &HpaConfig {
        &self.config
    }

    /// One sync, recording the resulting scale as applied (as the HPA does
    /// after updating the scale sub-resource).
    pub fn decide(&mut self, now: UnixMillis, input: &HpaInput<'_>) -> HpaOutcome {
        let out = self.evaluate(now, input);
        self.record_scale(now, input.current, out.desired);
        out
    }

    /// One sync without recording a scale: call [`Hpa::record_scale`] with
    /// what was actually applied.
    pub fn evaluate(&mut self, now: UnixMillis, input: &HpaInput<'_>) -> HpaOutcome {
        let HpaInput {
            current,
            pods,
            target,
            utilization,
            min,
            max,
        } = *input;
        let max = max.max(min);
        if current == 0 {
            return HpaOutcome {
                desired: 0,
                recommendation: None,
                stabilized: 0,
                reason: "scaled to zero: autoscaling is disabled until replicas > 0".into(),
            };
        }
        if current > max {
            return HpaOutcome {
                desired: max,
                recommendation: None,
                stabilized: max,
                reason: format!("{current} replicas exceed the maximum {max}"),
            };
        }
        if current < min {
            return HpaOutcome {
                desired: min,
                recommendation: None,
                stabilized: min,
                reason: format!("{current} replicas are below the minimum {min}"),
            };
        }
        let rec = match recommend(current, pods, target, self.config.tolerance, utilization) {
            Ok(r) => r,
            Err(e) => {
                return HpaOutcome {
                    desired: current,
                    recommendation: None,
                    stabilized: current,
                    reason: e.to_string(),
                }
            }
        };
        // Before the first recommendation, seed the scale-down window with the
        // current scale so that a fresh HPA does not scale in at once.
        if !self.initialized {
            self.initialized = true;
            if self.config.scale_down.stabilization_seconds > 0 {
                self.recommendations.push(Stamped {
                    at: now,
                    value: current,
                });
            }
        }
        let stabilized = self.stabilize(now, current, rec.replicas);
        let (desired, limit_note) = self.rate_limit(now, current, stabilized, min, max);
        let mut reason = format!(
            "mean metric {:.3} vs target {:.3} (ratio {:.2}) over {} ready pods",
            rec.mean_value, target, rec.usage_ratio, rec.ready
        );
        if rec.unready > 0 || rec.missing > 0 {
            reason.push_str(&format!(
                " ({} not ready, {} without metrics)",
                rec.unready, rec.missing
            ));
        }
        if rec.replicas == current && (1.0 - rec.usage_ratio).abs() <= self.config.tolerance {
            reason.push_str(&format!(
                "; within tolerance {:.2}, keep {current}",
                self.config.tolerance
            ));
        } else {
            reason.push_str(&format!("; recommends {}", rec.replicas));
        }
        if stabilized != rec.replicas {
            reason.push_str(&format!(
                "; stabilized to {stabilized} (highest recommendation of the last {} s)",
                self.config.scale_down.stabilization_seconds
            ));
        }
        if let Some(n) = limit_note {
            reason.push_str("; ");
            reason.push_str(&n);
        }
        reason.push_str(&format!("; desired {desired}"));
        HpaOutcome {
            desired,
            recommendation: Some(rec),
            stabilized,
            reason,
        }
    }

    /// Records that the scale went from `from` to `to` at `now` (feeds the
    /// rate policies). A no-op when equal.
    pub fn record_scale(&mut self, now: UnixMillis, from: u32, to: u32) {
        if to > from {
            self.scale_ups.push(Stamped {
                at: now,
                value: to - from,
            });
        } else if to < from {
            self.scale_downs.push(Stamped {
                at: now,
                value: from - to,
            });
        }
    }

    /// `stabilizeRecommendationWithBehaviors`: the recommendation is kept
    /// between the lowest of the scale-up window and the highest of the
    /// scale-down window.
    fn stabilize(&mut self, now: UnixMillis, current: u32, desired: u32) -> u32 {
        let up_window = self.config.scale_up.stabilization_seconds * 1000;
        let down_window = self.config.scale_down.stabilization_seconds * 1000;
        let keep = up_window.max(down_window);
        let (mut up, mut down) = (desired, desired);
        for r in &self.recommendations {
            if r.at + up_window > now {
                up = up.min(r.value);
            }
            if r.at + down_window > now {
                down = down.max(r.value);
            }
        }
        self.recommendations.retain(|r| r.at + keep > now);
        self.recommendations.push(Stamped {
            at: now,
            value: desired,
        });
        current.max(up).min(down)
    }

    /// `convertDesiredReplicasWithBehaviorRate` plus min/max clamping.
    fn rate_limit(
        &mut self,
        now: UnixMillis,
        current: u32,
        desired: u32,
        min: u32,
        max: u32,
    ) -> (u32, Option<String>) {
        let keep = |rules: &ScalingRules| {
            rules
                .policies
                .iter()
                .map(|p| p.period_seconds * 1000)
                .max()
                .unwrap_or(0)
        };
        let (ku, kd) = (keep(&self.config.scale_up), keep(&self.config.scale_down));
        self.scale_ups.retain(|e| e.at + ku > now);
        self.scale_downs.retain(|e| e.at + kd > now);
        if desired > current {
            let limit = self.scale_up_limit(now, current).max(current);
            if limit < max {
                if desired > limit {
                    return (
                        limit,
                        Some(format!("scale-up limited to {limit} by the rate policies")),
                    );
                }
                (desired, None)
            } else if desired > max {
                (max, Some(format!("capped at max_replicas {max}")))
            } else {
                (desired, None)
            }
        } else if desired < current {
            let limit = self.scale_down_limit(now, current).min(current);
            if limit > min {
                if desired < limit {
                    return (
                        limit,
                        Some(format!(
                            "scale-down limited to {limit} by the rate policies"
                        )),
                    );
                }
                (desired, None)
            } else if desired < min {
                (min, Some(format!("raised to min_replicas {min}")))
            } else {
                (desired, None)
            }
        } else {
            (current, None)
        }
    }

    /// The lowest count the scale-down rate policies allow from `current`
    /// at `now` (`current` itself when scale-down is disabled).
    pub fn scale_down_floor(&self, now: UnixMillis, current: u32) -> u32 {
        self.scale_down_limit(now, current).min(current)
    }

    fn changes_within(events: &[Stamped], now: UnixMillis, period_seconds: u64) -> u32 {
        events
            .iter()
            .filter(|e| e.at + period_seconds * 1000 > now)
            .map(|e| e.value)
            .sum()
    }

    fn period_start(&self, now: UnixMillis, current: u32, period: u64) -> i64 {
        i64::from(current) - i64::from(Self::changes_within(&self.scale_ups, now, period))
            + i64::from(Self::changes_within(&self.scale_downs, now, period))
    }

    fn scale_up_limit(&self, now: UnixMillis, current: u32) -> u32 {
        let rules = &self.config.scale_up;
        let mut result: Option<i64> = None;
        for p in &rules.policies {
            let start = self.period_start(now, current, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start + i64::from(p.value),
                // Rounded up so that a small group can always grow.
                PolicyKind::Percent => {
                    (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
                }
            };
            result = Some(match (rules.select, result) {
                (SelectPolicy::Disabled, _) => return current,
                (_, None) => proposed,
                (SelectPolicy::Max, Some(r)) => r.max(proposed),
                (SelectPolicy::Min, Some(r)) => r.min(proposed),
            });
        }
        if rules.select == SelectPolicy::Disabled {
            return current;
        }
        result.map_or(current, |r| r.clamp(0, i64::from(u32::MAX)) as u32)
    }

    fn scale_down_limit(&self, now: UnixMillis, current: u32) -> u32 {
        let rules = &self.config.scale_down;
        if rules.select == SelectPolicy::Disabled {
            return current;
        }
        let mut result: Option<i64> = None;
        for p in &rules.policies {
            let start = self.period_start(now, current, p.period_seconds);
            let proposed = match p.kind {
                PolicyKind::Pods => start - i64::from(p.value),
                // Truncated, as the controller does (so 10 % of 72 removes 8).
                PolicyKind::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
            };
            // "Max" selects the policy allowing the largest change: the
            // lowest floor.
            result = Some(match (rules.select, result) {
                (_, None) => proposed,
                (SelectPolicy::Max, Some(r)) => r.min(proposed),
                (_, Some(r)) => r.max(proposed),
            });
        }
        result.map_or(current, |r| r.clamp(0, i64::from(u32::MAX)) as u32)
    }
}
