//! The autoscaling policy block of a group, as written in an app spec and
//! stored on the group. The autoscaler (`jdos-autoscaler`) turns it into its
//! evaluation policy; its JSON is exactly what `Policy::from_json` reads.
//!
//! ```yaml
//! autoscaling:
//!   min_replicas: 2          # alias: min
//!   max_replicas: 50         # alias: max
//!   metric: cpu              # or a custom per-instance metric, e.g. requests_per_second
//!   target: 0.6              # cpu: utilization in (0, 1]; custom: value per instance
//!   mode: predictive         # reactive (HPA) | predictive
//!   utc_offset_minutes: 480
//!   schedules:
//!     - {days: [sat, sun], start: "09:00", end: "23:00", min_replicas: 10}
//!     - {from: "2026-11-11T00:00", to: "2026-11-12T02:00", min_replicas: 200}
//! ```

use serde::{Deserialize, Serialize};

use crate::group::MAX_REPLICAS;
use crate::ValidationErrors;

/// Reactive (the Kubernetes HPA algorithm) or predictive (forecast-driven,
/// the reactive signal as a safety net).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMode {
    /// The HPA algorithm.
    #[default]
    Reactive,
    /// Forecast-driven.
    Predictive,
}

/// A scheduled floor: at least `min_replicas` while the window is open.
/// Weekly (`days`, `start`, `end` as `HH:MM` local time) or one-off (`from`,
/// `to` as `YYYY-MM-DD[THH:MM]` local time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Optional name, shown in decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Weekdays the window starts on (`mon` … `sun`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Weekly start, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Weekly end, `HH:MM` (at or before `start` crosses midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// One-off start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// One-off end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Floor while open.
    pub min_replicas: u32,
}

/// The autoscaling policy of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingPolicy {
    /// Fewest replicas (≥ 1, default 1).
    #[serde(default = "one", alias = "min")]
    pub min_replicas: u32,
    /// Most replicas.
    #[serde(alias = "max")]
    pub max_replicas: u32,
    /// `cpu` or the name of a custom per-instance metric.
    #[serde(default = "cpu")]
    pub metric: String,
    /// The per-instance target in the metric's unit: written by users; folded
    /// into `target_utilization` / `target_value` by [`AutoscalingPolicy::normalized`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Cpu target, a fraction of the request in (0, 1] (default 0.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_utilization: Option<f64>,
    /// Custom metric target per instance (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<f64>,
    /// Reactive or predictive.
    #[serde(default)]
    pub mode: ScalingMode,
    /// Seconds from asking for a replica to it serving (≤ 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_seconds: Option<u64>,
    /// Seconds between evaluations (1–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_seconds: Option<u64>,
    /// HPA tolerance around a usage ratio of 1.0, in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// HPA scale-down stabilization window, seconds (≤ 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_stabilization_seconds: Option<u64>,
    /// Local time of the schedules, minutes east of UTC (−840…840).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i32>,
    /// Scheduled floors (pre-scaling for known peaks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
}

// Validation refuses NaN in every float field, so equality is reflexive on
// any policy that reaches a group record.
impl Eq for AutoscalingPolicy {}

fn one() -> u32 {
    1
}

fn cpu() -> String {
    "cpu".to_string()
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// True for `mon`…`sun` or the full day name, any case.
fn is_day(s: &str) -> bool {
    let s = s.trim().to_ascii_lowercase();
    DAYS.iter().any(|d| s == *d || s == d[..3])
}

/// `HH:MM` (00:00–24:00).
fn is_hm(s: &str) -> bool {
    let Some((h, m)) = s.split_once(':') else {
        return false;
    };
    let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) else {
        return false;
    };
    let (hs, ms) = s.split_once(':').unwrap_or_default();
    hs.len() == 2 && ms.len() == 2 && ((h < 24 && m < 60) || (h == 24 && m == 0))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`, as a sortable key (None if malformed).
fn local_datetime_key(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut it = date.split('-');
    let (y, mo, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, mo, d) = (
        y.parse().ok()?,
        mo.parse::<u32>().ok()?,
        d.parse::<u32>().ok()?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1970..=9999).contains(&y) || d == 0 || d > dim {
        return None;
    }
    let minutes = match time {
        None => 0,
        Some(t) if is_hm(t) => {
            let (h, m) = t.split_once(':')?;
            h.parse::<u32>().ok()? * 60 + m.parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    Some((y, mo, d, minutes))
}

impl AutoscalingPolicy {
    /// A reactive cpu policy between `min` and `max` replicas.
    pub fn new(min_replicas: u32, max_replicas: u32) -> Self {
        AutoscalingPolicy {
            min_replicas,
            max_replicas,
            metric: cpu(),
            target: None,
            target_utilization: None,
            target_value: None,
            mode: ScalingMode::Reactive,
            startup_seconds: None,
            sync_seconds: None,
            tolerance: None,
            scale_down_stabilization_seconds: None,
            utc_offset_minutes: None,
            schedules: Vec::new(),
        }
    }

    /// True for the cpu metric.
    pub fn is_cpu(&self) -> bool {
        self.metric.trim() == "cpu"
    }

    /// The policy with `target` folded into `target_utilization` (cpu) or
    /// `target_value` (custom), the form stored on groups.
    pub fn normalized(&self) -> AutoscalingPolicy {
        let mut p = self.clone();
        p.metric = p.metric.trim().to_string();
        if let Some(t) = p.target.take() {
            if p.is_cpu() {
                p.target_utilization = Some(t);
            } else {
                p.target_value = Some(t);
            }
        }
        p
    }

    /// Every problem, with paths relative to the block (`schedules[1].start`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.min_replicas < 1 {
            e.add(
                "min_replicas",
                "out_of_range",
                "min_replicas must be at least 1",
            );
        }
        if self.min_replicas > MAX_REPLICAS {
            e.add(
                "min_replicas",
                "out_of_range",
                format!("min_replicas must be at most {MAX_REPLICAS}"),
            );
        }
        if self.max_replicas > MAX_REPLICAS {
            e.add(
                "max_replicas",
                "out_of_range",
                format!("max_replicas must be at most {MAX_REPLICAS}"),
            );
        } else if self.max_replicas < self.min_replicas {
            e.add(
                "max_replicas",
                "out_of_range",
                format!(
                    "max_replicas ({}) must be at least min_replicas ({})",
                    self.max_replicas, self.min_replicas
                ),
            );
        }
        let metric = self.metric.trim();
        if metric.is_empty() {
            e.add(
                "metric",
                "required",
                "metric must be \"cpu\" or the name of a custom per-instance metric",
            );
        } else if !metric
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
        {
            e.add(
                "metric",
                "invalid_name",
                "a metric name is made of [A-Za-z0-9_.:-]",
            );
        }
        let explicit = if self.is_cpu() {
            ("target_utilization", self.target_utilization)
        } else {
            ("target_value", self.target_value)
        };
        let wrong = if self.is_cpu() {
            ("target_value", self.target_value)
        } else {
            ("target_utilization", self.target_utilization)
        };
        if wrong.1.is_some() {
            e.add(
                wrong.0,
                "not_allowed",
                format!(
                    "the {} metric takes {} (or target), not {}",
                    if self.is_cpu() { "cpu" } else { "custom" },
                    explicit.0,
                    wrong.0
                ),
            );
        }
        if self.target.is_some() && explicit.1.is_some() {
            e.add(
                "target",
                "conflict",
                format!("give either target or {}, not both", explicit.0),
            );
        }
        let (field, value) = match self.target {
            Some(t) => ("target", Some(t)),
            None => explicit,
        };
        if self.is_cpu() {
            let t = value.unwrap_or(0.6);
            if !(t > 0.0 && t <= 1.0) {
                e.add(
                    field,
                    "out_of_range",
                    "a cpu target is a utilization in (0, 1], e.g. 0.6 for 60 %",
                );
            }
        } else {
            match value {
                None => e.add(
                    "target",
                    "required",
                    format!("the custom metric {metric:?} needs a target value per instance"),
                ),
                Some(t) if !(t > 0.0 && t.is_finite()) => {
                    e.add(field, "out_of_range", "the target must be greater than 0")
                }
                Some(_) => {}
            }
        }
        if self.startup_seconds.is_some_and(|s| s > 3600) {
            e.add(
                "startup_seconds",
                "out_of_range",
                "startup_seconds must be at most 3600",
            );
        }
        if self.sync_seconds.is_some_and(|s| !(1..=3600).contains(&s)) {
            e.add(
                "sync_seconds",
                "out_of_range",
                "sync_seconds must be 1-3600",
            );
        }
        if self.tolerance.is_some_and(|t| !(0.0..1.0).contains(&t)) {
            e.add("tolerance", "out_of_range", "tolerance must be in [0, 1)");
        }
        if self
            .scale_down_stabilization_seconds
            .is_some_and(|s| s > 3600)
        {
            e.add(
                "scale_down_stabilization_seconds",
                "out_of_range",
                "scale_down_stabilization_seconds must be at most 3600 (the HPA's limit)",
            );
        }
        if self
            .utc_offset_minutes
            .is_some_and(|m| !(-840..=840).contains(&m))
        {
            e.add(
                "utc_offset_minutes",
                "out_of_range",
                "utc_offset_minutes must be in [-840, 840]",
            );
        }
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("schedules[{i}]");
            self.validate_schedule(&mut e, &at, s);
        }
        e.into_result()
    }

    fn validate_schedule(&self, e: &mut ValidationErrors, at: &str, s: &ScheduleSpec) {
        let weekly = !s.days.is_empty() || s.start.is_some() || s.end.is_some();
        let once = s.from.is_some() || s.to.is_some();
        match (weekly, once) {
            (true, true) => e.add(
                at,
                "conflict",
                "a schedule is either weekly (days/start/end) or one-off (from/to), not both",
            ),
            (false, false) => e.add(
                at,
                "required",
                "a schedule needs days/start/end (weekly) or from/to (one-off)",
            ),
            (true, false) => {
                if s.days.is_empty() {
                    e.add(
                        format!("{at}.days"),
                        "required",
                        "a weekly schedule needs days",
                    );
                }
                for (j, d) in s.days.iter().enumerate() {
                    if !is_day(d) {
                        e.add(
                            format!("{at}.days[{j}]"),
                            "invalid_value",
                            "a day is one of mon, tue, wed, thu, fri, sat, sun",
                        );
                    }
                }
                for (name, v) in [("start", &s.start), ("end", &s.end)] {
                    match v {
                        None => e.add(
                            format!("{at}.{name}"),
                            "required",
                            format!("a weekly schedule needs {name} (HH:MM)"),
                        ),
                        Some(t) if !is_hm(t) => e.add(
                            format!("{at}.{name}"),
                            "invalid_time",
                            format!("{t:?} is not a time of day: use HH:MM, e.g. 09:30"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            (false, true) => {
                let mut keys = [None, None];
                for (k, (name, v)) in [("from", &s.from), ("to", &s.to)].into_iter().enumerate() {
                    match v {
                        None => e.add(
                            format!("{at}.{name}"),
                            "required",
                            format!("a one-off schedule needs {name}"),
                        ),
                        Some(t) => match local_datetime_key(t) {
                            Some(key) => keys[k] = Some(key),
                            None => e.add(
                                format!("{at}.{name}"),
                                "invalid_time",
                                format!("{t:?} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM"),
                            ),
                        },
                    }
                }
                if let [Some(from), Some(to)] = keys {
                    if to <= from {
                        e.add(
                            format!("{at}.to"),
                            "out_of_range",
                            "a one-off window must end after it starts",
                        );
                    }
                }
            }
        }
        if s.min_replicas > self.max_replicas {
            e.add(
                format!("{at}.min_replicas"),
                "out_of_range",
                format!(
                    "a scheduled floor ({}) cannot exceed max_replicas ({})",
                    s.min_replicas, self.max_replicas
                ),
            );
        }
    }
}

/// What the autoscaling controller last did for a group
/// (`GET /api/v1/autoscaling/{app}/{env}/{group}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// App.
    pub app: String,
    /// Environment.
    pub env: String,
    /// Group.
    pub group: String,
    /// The group's policy (normalized).
    pub policy: AutoscalingPolicy,
    /// Replicas of the group record at the last evaluation.
    pub replicas: u32,
    /// The last evaluation, if the controller has run one since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<AutoscaleDecision>,
}

/// One evaluation of a group by the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleDecision {
    /// When, unix ms.
    pub at_ms: crate::UnixMillis,
    /// Replicas the group had.
    pub current: u32,
    /// Replicas the autoscaler asked for.
    pub desired: u32,
    /// `reactive`, `predictive` or `reactive_fallback` (empty when the
    /// evaluation failed before deciding).
    pub mode_used: String,
    /// The floor in force (min replicas raised by scheduled windows).
    pub floor: u32,
    /// Group load in metric units (cpu: request-equivalents), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Live containers, ready ones, and ones without a metric sample.
    pub containers: u32,
    /// Containers running.
    pub ready: u32,
    /// Containers without a sample in the window.
    pub missing: u32,
    /// `keep`, `scale` (a task was submitted), `blocked` (a task of the app
    /// is active) or `error`.
    pub action: String,
    /// The scale task submitted, or the active task that blocked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Why (the autoscaler's reason, or the error).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(p: &AutoscalingPolicy) -> Vec<String> {
        p.validate()
            .err()
            .map(|e| e.errors.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_good_policy_passes_and_normalizes_its_target() {
        let mut p = AutoscalingPolicy::new(2, 50);
        p.target = Some(0.7);
        p.mode = ScalingMode::Predictive;
        p.schedules.push(ScheduleSpec {
            days: vec!["sat".into(), "Sunday".into()],
            start: Some("09:00".into()),
            end: Some("24:00".into()),
            min_replicas: 10,
            ..Default::default()
        });
        p.schedules.push(ScheduleSpec {
            from: Some("2026-11-11".into()),
            to: Some("2026-11-12T02:00".into()),
            min_replicas: 50,
            ..Default::default()
        });
        assert_eq!(fields(&p), Vec::<String>::new());
        let n = p.normalized();
        assert_eq!(n.target, None);
        assert_eq!(n.target_utilization, Some(0.7));
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["target_utilization"], 0.7);
        assert_eq!(json["mode"], "predictive");
        assert!(json.get("target").is_none());
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let mut p = AutoscalingPolicy::new(0, 100_001);
        p.target = Some(1.5);
        p.target_value = Some(3.0);
        p.sync_seconds = Some(0);
        p.schedules.push(ScheduleSpec {
            days: vec!["someday".into()],
            start: Some("25:00".into()),
            end: None,
            min_replicas: 1,
            ..Default::default()
        });
        p.schedules.push(ScheduleSpec {
            from: Some("2026-02-30".into()),
            to: Some("2026-03-01".into()),
            days: vec!["mon".into()],
            min_replicas: 1,
            ..Default::default()
        });
        p.schedules.push(ScheduleSpec {
            from: Some("2026-03-02".into()),
            to: Some("2026-03-01".into()),
            min_replicas: 1,
            ..Default::default()
        });
        assert_eq!(
            fields(&p),
            [
                "min_replicas",
                "max_replicas",
                "target_value",
                "target",
                "sync_seconds",
                "schedules[0].days[0]",
                "schedules[0].start",
                "schedules[0].end",
                "schedules[1]",
                "schedules[2].to",
            ]
        );
    }

    #[test]
    fn custom_metrics_need_a_target_and_floors_stay_under_max() {
        let mut p = AutoscalingPolicy::new(1, 5);
        p.metric = "requests_per_second".into();
        p.schedules.push(ScheduleSpec {
            days: vec!["mon".into()],
            start: Some("08:00".into()),
            end: Some("02:00".into()),
            min_replicas: 9,
            ..Default::default()
        });
        assert_eq!(fields(&p), ["target", "schedules[0].min_replicas"]);
        p.target = Some(100.0);
        p.schedules[0].min_replicas = 5;
        assert_eq!(fields(&p), Vec::<String>::new());
        assert_eq!(p.normalized().target_value, Some(100.0));
    }

    #[test]
    fn short_names_are_accepted() {
        let p: AutoscalingPolicy =
            serde_json::from_str(r#"{"min": 2, "max": 8, "target": 0.5}"#).unwrap();
        assert_eq!((p.min_replicas, p.max_replicas), (2, 8));
        assert!(serde_json::from_str::<AutoscalingPolicy>(r#"{"max": 8, "maxx": 1}"#).is_err());
    }
}
