//! The typed autoscaling policy of a group, parsed and validated from the
//! group's free-form `autoscaling` JSON block.
//!
//! ```json
//! {
//!   "min_replicas": 2, "max_replicas": 50,
//!   "metric": "cpu", "target_utilization": 0.6,
//!   "mode": "predictive", "startup_seconds": 60,
//!   "utc_offset_minutes": 480,
//!   "schedules": [
//!     {"days": ["sat", "sun"], "start": "09:00", "end": "23:00", "min_replicas": 10},
//!     {"from": "2026-11-11T00:00", "to": "2026-11-12T02:00", "min_replicas": 200}
//!   ]
//! }
//! ```
//!
//! `metric` is `cpu` (per-instance utilization of the cpu request, target
//! `target_utilization` in (0, 1]) or the name of a custom per-instance metric
//! such as `requests_per_second` (target `target_value` > 0).

use jdos_types::group::MAX_REPLICAS;
use jdos_types::{UnixMillis, ValidationErrors};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calendar;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// One or more fields are wrong; every one of them is listed.
    #[error("invalid autoscaling policy: {0}")]
    Invalid(ValidationErrors),
}

impl PolicyError {
    /// The field errors.
    pub fn errors(&self) -> &ValidationErrors {
        match self {
            PolicyError::Invalid(e) => e,
        }
    }
}

/// How a group scales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The Kubernetes HPA v2 algorithm.
    #[default]
    Reactive,
    /// Forecast-driven, with the reactive signal as a safety net.
    Predictive,
}

impl Mode {
    /// Lowercase name, as in the policy JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reactive => "reactive",
            Mode::Predictive => "predictive",
        }
    }
}

/// What is measured per instance and the value each instance should run at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cpu utilization as a fraction of the request (0.6 = 60 %).
    Cpu {
        /// Target utilization, in (0, 1].
        target_utilization: f64,
    },
    /// A custom per-instance metric (e.g. requests per second).
    Custom {
        /// Metric name.
        name: String,
        /// Target value per instance, > 0.
        target_value: f64,
    },
}

impl Metric {
    /// The per-instance target, in the metric's unit.
    pub fn target(&self) -> f64 {
        match self {
            Metric::Cpu { target_utilization } => *target_utilization,
            Metric::Custom { target_value, .. } => *target_value,
        }
    }

    /// Highest per-instance value an instance can carry without being
    /// overloaded: 100 % for cpu; the target itself for a custom metric
    /// (nothing more is known about its capacity).
    pub fn ceiling(&self) -> f64 {
        match self {
            Metric::Cpu { target_utilization } => target_utilization.max(1.0),
            Metric::Custom { target_value, .. } => *target_value,
        }
    }

    /// True for resource utilization (HPA treats missing pods differently).
    pub fn is_utilization(&self) -> bool {
        matches!(self, Metric::Cpu { .. })
    }

    /// Short description, e.g. `cpu 60%` or `requests_per_second 100`.
    pub fn describe(&self) -> String {
        match self {
            Metric::Cpu { target_utilization } => {
                format!("cpu {:.0}%", target_utilization * 100.0)
            }
            Metric::Custom { name, target_value } => format!("{name} {target_value}"),
        }
    }
}

/// A day of the week, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// From 0 = Monday … 6 = Sunday.
    pub fn from_index(i: u32) -> Weekday {
        Self::ALL[(i % 7) as usize]
    }

    fn parse(s: &str) -> Option<Weekday> {
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let s = s.trim().to_ascii_lowercase();
        FULL.iter()
            .position(|d| s == *d || s == d[..3])
            .map(|i| Self::ALL[i])
    }
}

/// When a scheduled floor applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Every week on `days`, from `start` to `end` (minutes after local
    /// midnight). `end <= start` crosses midnight into the next day.
    Weekly {
        /// Days the window starts on.
        days: Vec<Weekday>,
        /// Start, minutes after local midnight.
        start_minute: u32,
        /// End (exclusive), minutes after local midnight.
        end_minute: u32,
    },
    /// Once, between two local date-times (a sales day).
    Once {
        /// Start, Unix milliseconds (inclusive).
        from_ms: UnixMillis,
        /// End, Unix milliseconds (exclusive).
        to_ms: UnixMillis,
    },
}

/// A minimum replica count that applies during a window (pre-scaling for a
/// known peak).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFloor {
    /// When.
    pub window: Window,
    /// At least this many replicas while the window is open.
    pub min_replicas: u32,
}

impl ScheduledFloor {
    /// True when the window is open at `now` (`utc_offset_minutes` gives
    /// local time for weekly windows).
    pub fn is_active(&self, now: UnixMillis, utc_offset_minutes: i32) -> bool {
        match &self.window {
            Window::Once { from_ms, to_ms } => now >= *from_ms && now < *to_ms,
            Window::Weekly {
                days,
                start_minute,
                end_minute,
            } => {
                let local = calendar::local_minutes(now, utc_offset_minutes);
                let day = local.div_euclid(1440);
                let minute = local.rem_euclid(1440) as u32;
                let weekday = calendar::weekday_of_day(day);
                if start_minute < end_minute {
                    days.contains(&weekday) && minute >= *start_minute && minute < *end_minute
                } else {
                    // Crosses midnight: open from start today, or until end
                    // if the window started yesterday.
                    let yesterday = calendar::weekday_of_day(day - 1);
                    (days.contains(&weekday) && minute >= *start_minute)
                        || (days.contains(&yesterday) && minute < *end_minute)
                }
            }
        }
    }
}

/// A validated autoscaling policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Fewest replicas (≥ 1).
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Metric and its per-instance target.
    pub metric: Metric,
    /// Reactive or predictive.
    pub mode: Mode,
    /// Seconds from asking for a replica to it serving (the provisioning
    /// horizon is this plus one sync period).
    pub startup_seconds: u64,
    /// Seconds between two evaluations (HPA default 15).
    pub sync_seconds: u64,
    /// HPA tolerance around a usage ratio of 1.0 (default 0.1).
    pub tolerance: f64,
    /// HPA scale-down stabilization window, seconds (default 300).
    pub scale_down_stabilization_seconds: u64,
    /// Local time offset for weekly windows, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// Scheduled floors.
    pub schedules: Vec<ScheduledFloor>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_replicas: 1,
            max_replicas: 10,
            metric: Metric::Cpu {
                target_utilization: 0.6,
            },
            mode: Mode::Reactive,
            startup_seconds: 60,
            sync_seconds: 15,
            tolerance: 0.1,
            scale_down_stabilization_seconds: 300,
            utc_offset_minutes: 0,
            schedules: Vec::new(),
        }
    }
}

impl Policy {
    /// Parses and validates a group's `autoscaling` block, reporting every
    /// bad field (paths relative to the block, e.g. `schedules[1].start`).
    pub fn from_json(v: &Value) -> Result<Policy, PolicyError> {
        let mut e = ValidationErrors::new();
        let Some(obj) = v.as_object() else {
            e.add(
                "",
                "invalid_type",
                "the autoscaling policy must be a JSON object",
            );
            return Err(PolicyError::Invalid(e));
        };
        check_keys(
            &mut e,
            "",
            obj,
            &[
                "min_replicas",
                "max_replicas",
                "metric",
                "target_utilization",
                "target_value",
                "mode",
                "startup_seconds",
                "sync_seconds",
                "tolerance",
                "scale_down_stabilization_seconds",
                "utc_offset_minutes",
                "schedules",
            ],
        );
        let d = Policy::default();
        let min = opt_u64(&mut e, obj, "min_replicas").unwrap_or(u64::from(d.min_replicas));
        let max = match obj.get("max_replicas") {
            None => {
                e.add("max_replicas", "required", "max_replicas is required");
                None
            }
            Some(_) => opt_u64(&mut e, obj, "max_replicas"),
        };
        if min < 1 {
            e.add(
                "min_replicas",
                "out_of_range",
                "min_replicas must be at least 1",
            );
        }
        if min > u64::from(MAX_REPLICAS) {
            e.add(
                "min_replicas",
                "out_of_range",
                format!("min_replicas must be at most {MAX_REPLICAS}"),
            );
        }
        if let Some(max) = max {
            if max > u64::from(MAX_REPLICAS) {
                e.add(
                    "max_replicas",
                    "out_of_range",
                    format!("max_replicas must be at most {MAX_REPLICAS}"),
                );
            } else if max < min {
                e.add(
                    "max_replicas",
                    "out_of_range",
                    format!("max_replicas ({max}) must be at least min_replicas ({min})"),
                );
            }
        }
        let metric_name = match obj.get("metric") {
            None => "cpu".to_string(),
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(_) => {
                e.add(
                    "metric",
                    "invalid_type",
                    "metric must be \"cpu\" or the name of a custom per-instance metric",
                );
                "cpu".to_string()
            }
        };
        let metric = if metric_name == "cpu" {
            if obj.contains_key("target_value") {
                e.add(
                    "target_value",
                    "not_allowed",
                    "the cpu metric takes target_utilization, not target_value",
                );
            }
            let t = opt_f64(&mut e, obj, "target_utilization").unwrap_or(0.6);
            if !(t > 0.0 && t <= 1.0) {
                e.add(
                    "target_utilization",
                    "out_of_range",
                    "target_utilization must be in (0, 1], e.g. 0.6 for 60 %",
                );
            }
            Metric::Cpu {
                target_utilization: t,
            }
        } else {
            if obj.contains_key("target_utilization") {
                e.add(
                    "target_utilization",
                    "not_allowed",
                    "a custom metric takes target_value, not target_utilization",
                );
            }
            let t = match obj.get("target_value") {
                None => {
                    e.add(
                        "target_value",
                        "required",
                        "a custom metric needs target_value (per instance)",
                    );
                    1.0
                }
                Some(_) => opt_f64(&mut e, obj, "target_value").unwrap_or(1.0),
            };
            if !(t > 0.0 && t.is_finite()) {
                e.add(
                    "target_value",
                    "out_of_range",
                    "target_value must be greater than 0",
                );
            }
            Metric::Custom {
                name: metric_name,
                target_value: t,
            }
        };
        let mode = match obj.get("mode") {
            None => Mode::Reactive,
            Some(Value::String(s)) if s == "reactive" => Mode::Reactive,
            Some(Value::String(s)) if s == "predictive" => Mode::Predictive,
            Some(_) => {
                e.add(
                    "mode",
                    "invalid_value",
                    "mode must be \"reactive\" or \"predictive\"",
                );
                Mode::Reactive
            }
        };
        let startup = opt_u64(&mut e, obj, "startup_seconds").unwrap_or(d.startup_seconds);
        if startup > 3600 {
            e.add(
                "startup_seconds",
                "out_of_range",
                "startup_seconds must be at most 3600",
            );
        }
        let sync = opt_u64(&mut e, obj, "sync_seconds").unwrap_or(d.sync_seconds);
        if !(1..=3600).contains(&sync) {
            e.add(
                "sync_seconds",
                "out_of_range",
                "sync_seconds must be 1-3600",
            );
        }
        let tolerance = opt_f64(&mut e, obj, "tolerance").unwrap_or(d.tolerance);
        if !(0.0..1.0).contains(&tolerance) {
            e.add("tolerance", "out_of_range", "tolerance must be in [0, 1)");
        }
        let stab = opt_u64(&mut e, obj, "scale_down_stabilization_seconds")
            .unwrap_or(d.scale_down_stabilization_seconds);
        if stab > 3600 {
            e.add(
                "scale_down_stabilization_seconds",
                "out_of_range",
                "scale_down_stabilization_seconds must be at most 3600 (the HPA's limit)",
            );
        }
        let offset = match obj.get("utc_offset_minutes") {
            None => 0,
            Some(v) => match v.as_i64() {
                Some(m) if (-14 * 60..=14 * 60).contains(&m) => m as i32,
                _ => {
                    e.add(
                        "utc_offset_minutes",
                        "out_of_range",
                        "utc_offset_minutes must be an integer in [-840, 840]",
                    );
                    0
                }
            },
        };
        let mut schedules = Vec::new();
        match obj.get("schedules") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) =
                        parse_schedule(&mut e, &format!("schedules[{i}]"), item, offset)
                    {
                        if let Some(max) = max {
                            if u64::from(s.min_replicas) > max {
                                e.add(
                                    format!("schedules[{i}].min_replicas"),
                                    "out_of_range",
                                    format!(
                                        "a scheduled floor ({}) cannot exceed max_replicas ({max})",
                                        s.min_replicas
                                    ),
                                );
                            }
                        }
                        schedules.push(s);
                    }
                }
            }
            Some(_) => e.add("schedules", "invalid_type", "schedules must be a list"),
        }
        e.into_result().map_err(PolicyError::Invalid)?;
        Ok(Policy {
            min_replicas: min as u32,
            max_replicas: max.unwrap_or(u64::from(d.max_replicas)) as u32,
            metric,
            mode,
            startup_seconds: startup,
            sync_seconds: sync,
            tolerance,
            scale_down_stabilization_seconds: stab,
            utc_offset_minutes: offset,
            schedules,
        })
    }

    /// The floor in force at `now`: `min_replicas` raised by every open
    /// scheduled window, never above `max_replicas`.
    pub fn floor_at(&self, now: UnixMillis) -> u32 {
        self.schedules
            .iter()
            .filter(|s| s.is_active(now, self.utc_offset_minutes))
            .map(|s| s.min_replicas)
            .fold(self.min_replicas, u32::max)
            .min(self.max_replicas)
    }

    /// Seconds from a scale decision until the new replicas serve, plus one
    /// sync period: how far ahead the predictive mode must look.
    pub fn horizon_seconds(&self) -> u64 {
        self.startup_seconds + self.sync_seconds
    }
}

fn check_keys(e: &mut ValidationErrors, prefix: &str, obj: &Map<String, Value>, known: &[&str]) {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            e.add(
                format!("{prefix}{k}"),
                "unknown_field",
                format!("unknown field; expected one of: {}", known.join(", ")),
            );
        }
    }
}

fn opt_u64(e: &mut ValidationErrors, obj: &Map<String, Value>, key: &str) -> Option<u64> {
    opt_u64_at(e, key, obj.get(key)?)
}

fn opt_u64_at(e: &mut ValidationErrors, field: &str, v: &Value) -> Option<u64> {
    match v.as_u64() {
        Some(n) => Some(n),
        None => {
            e.add(field, "invalid_type", "must be a non-negative integer");
            None
        }
    }
}

fn opt_f64(e: &mut ValidationErrors, obj: &Map<String, Value>, key: &str) -> Option<f64> {
    let v = obj.get(key)?;
    match v.as_f64() {
        Some(n) => Some(n),
        None => {
            e.add(key, "invalid_type", "must be a number");
            None
        }
    }
}

fn parse_schedule(
    e: &mut ValidationErrors,
    at: &str,
    v: &Value,
    offset: i32,
) -> Option<ScheduledFloor> {
    let Some(obj) = v.as_object() else {
        e.add(at, "invalid_type", "a schedule must be an object");
        return None;
    };
    let before = e.errors.len();
    let prefix = format!("{at}.");
    check_keys(
        e,
        &prefix,
        obj,
        &["days", "start", "end", "from", "to", "min_replicas", "name"],
    );
    let min = match obj.get("min_replicas") {
        None => {
            e.add(
                format!("{at}.min_replicas"),
                "required",
                "min_replicas is required",
            );
            None
        }
        Some(v) => opt_u64_at(e, &format!("{at}.min_replicas"), v),
    };
    let weekly = obj.contains_key("days") || obj.contains_key("start") || obj.contains_key("end");
    let once = obj.contains_key("from") || obj.contains_key("to");
    let window = match (weekly, once) {
        (true, true) => {
            e.add(
                at,
                "conflict",
                "a schedule is either weekly (days/start/end) or one-off (from/to), not both",
            );
            None
        }
        (false, false) => {
            e.add(
                at,
                "required",
                "a schedule needs days/start/end (weekly) or from/to (one-off)",
            );
            None
        }
        (true, false) => {
            let days = match obj.get("days") {
                Some(Value::Array(ds)) if !ds.is_empty() => {
                    let mut out = Vec::new();
                    for (j, d) in ds.iter().enumerate() {
                        match d.as_str().and_then(Weekday::parse) {
                            Some(w) => out.push(w),
                            None => e.add(
                                format!("{at}.days[{j}]"),
                                "invalid_value",
                                "a day is one of mon, tue, wed, thu, fri, sat, sun",
                            ),
                        }
                    }
                    Some(out)
                }
                Some(Value::String(s)) if s == "*" || s == "daily" => Some(Weekday::ALL.to_vec()),
                _ => {
                    e.add(
                        format!("{at}.days"),
                        "required",
                        "days must be a non-empty list such as [\"mon\", \"fri\"] or \"daily\"",
                    );
                    None
                }
            };
            let start = hm_field(e, at, obj, "start");
            let end = hm_field(e, at, obj, "end");
            if let (Some(s), Some(t)) = (start, end) {
                if s == t {
                    e.add(
                        format!("{at}.end"),
                        "out_of_range",
                        "end must differ from start",
                    );
                }
            }
            match (days, start, end) {
                (Some(days), Some(start_minute), Some(end_minute)) => Some(Window::Weekly {
                    days,
                    start_minute,
                    end_minute,
                }),
                _ => None,
            }
        }
        (false, true) => {
            let from = dt_field(e, at, obj, "from", offset);
            let to = dt_field(e, at, obj, "to", offset);
            if let (Some(f), Some(t)) = (from, to) {
                if t <= f {
                    e.add(format!("{at}.to"), "out_of_range", "to must be after from");
                }
            }
            match (from, to) {
                (Some(from_ms), Some(to_ms)) => Some(Window::Once { from_ms, to_ms }),
                _ => None,
            }
        }
    };
    if e.errors.len() != before {
        return None;
    }
    Some(ScheduledFloor {
        window: window?,
        min_replicas: min? as u32,
    })
}

fn hm_field(
    e: &mut ValidationErrors,
    at: &str,
    obj: &Map<String, Value>,
    key: &str,
) -> Option<u32> {
    let parsed = obj
        .get(key)
        .and_then(Value::as_str)
        .and_then(calendar::parse_hm);
    if parsed.is_none() {
        e.add(
            format!("{at}.{key}"),
            if obj.contains_key(key) {
                "invalid_value"
            } else {
                "required"
            },
            format!("{key} must be a local time HH:MM (00:00-24:00)"),
        );
    }
    parsed
}

fn dt_field(
    e: &mut ValidationErrors,
    at: &str,
    obj: &Map<String, Value>,
    key: &str,
    offset: i32,
) -> Option<UnixMillis> {
    let parsed = obj
        .get(key)
        .and_then(Value::as_str)
        .and_then(|s| calendar::parse_local_datetime(s, offset));
    if parsed.is_none() {
        e.add(
            format!("{at}.{key}"),
            if obj.contains_key(key) { "invalid_value" } else { "required" },
            format!("{key} must be a local date-time YYYY-MM-DDTHH:MM (or a date YYYY-MM-DD) after 1970"),
        );
    }
    parsed
}
