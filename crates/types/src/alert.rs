//! Alerting: policies (a condition over metrics or events, held for a while),
//! receivers (email over SMTP, SMS through a gateway webhook, generic
//! webhooks), silences, and the alerts the evaluator keeps.
//!
//! Store layout under [`keys::ALERTING`](crate::keys::ALERTING): see
//! [`crate::keys::alert_policy`], [`crate::keys::alert_receiver`],
//! [`crate::keys::silence`] and [`crate::keys::alert`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::name::{check_label, check_name};
use crate::{EventResult, UnixMillis, Validate, ValidationErrors};

/// Label every alert carries: the name of the policy that raised it.
pub const ALERTNAME: &str = "alertname";
/// Label every alert carries: its severity.
pub const SEVERITY: &str = "severity";
/// What a redacted secret reads as in API answers. Sending it back on an
/// update keeps the stored secret.
pub const REDACTED: &str = "<redacted>";

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone must act now.
    Critical,
    /// Someone should look soon.
    #[default]
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a policy watches: an app (optionally one env and group), a host, a
/// datacenter, or, with nothing set, the whole cluster (admin and ops only).
/// Each set field filters the series (or events) by the label of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertScope {
    /// App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Env of the app (needs `app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Group of the app (needs `app` and `env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Datacenter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

impl AlertScope {
    /// The set fields as `(label, value)` filters.
    pub fn matchers(&self) -> Vec<(&'static str, &str)> {
        [
            ("app", &self.app),
            ("env", &self.env),
            ("group", &self.group),
            ("host", &self.host),
            ("datacenter", &self.datacenter),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// True when nothing is set: the policy watches the whole cluster.
    pub fn is_cluster_wide(&self) -> bool {
        self.matchers().is_empty()
    }

    fn check(&self, e: &mut ValidationErrors) {
        for (k, v) in self.matchers() {
            check_name(e, &format!("scope.{k}"), v);
        }
        if self.env.is_some() && self.app.is_none() {
            e.add("scope.env", "requires", "an env scope needs scope.app too");
        }
        if self.group.is_some() && (self.app.is_none() || self.env.is_none()) {
            e.add(
                "scope.group",
                "requires",
                "a group scope needs scope.app and scope.env too",
            );
        }
    }
}

/// How the values of the series of one partition combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricAggregation {
    /// Mean.
    #[default]
    Avg,
    /// Largest.
    Max,
    /// Smallest.
    Min,
    /// Sum.
    Sum,
    /// 95th percentile (nearest rank).
    P95,
}

impl MetricAggregation {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricAggregation::Avg => "avg",
            MetricAggregation::Max => "max",
            MetricAggregation::Min => "min",
            MetricAggregation::Sum => "sum",
            MetricAggregation::P95 => "p95",
        }
    }
}

/// What one alert is raised for: each instance, each group, each host, or the
/// scope as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One alert per container (labels app, env, group, instance).
    Instance,
    /// One alert per group (labels app, env, group).
    Group,
    /// One alert per host (label host).
    Host,
    /// One alert for the whole scope.
    #[default]
    Scope,
}

impl Per {
    /// The labels that tell partitions apart.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Per::Instance => &["app", "env", "group", "instance"],
            Per::Group => &["app", "env", "group"],
            Per::Host => &["host"],
            Per::Scope => &[],
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Instance => "instance",
            Per::Group => "group",
            Per::Host => "host",
            Per::Scope => "scope",
        }
    }
}

/// A comparison of the observed value against the policy's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Above.
    #[serde(rename = ">")]
    Gt,
    /// At or above.
    #[serde(rename = ">=")]
    Ge,
    /// Below.
    #[serde(rename = "<")]
    Lt,
    /// At or below.
    #[serde(rename = "<=")]
    Le,
    /// Equal.
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    /// True when `observed <op> value`.
    pub fn holds(self, observed: f64, value: f64) -> bool {
        match self {
            Op::Gt => observed > value,
            Op::Ge => observed >= value,
            Op::Lt => observed < value,
            Op::Le => observed <= value,
            Op::Eq => observed == value,
            Op::Ne => observed != value,
        }
    }

    /// The symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

fn default_window() -> HumanDuration {
    HumanDuration::mins(5)
}

fn default_absence_window() -> HumanDuration {
    HumanDuration::mins(2)
}

fn default_lookback() -> HumanDuration {
    HumanDuration::hours(1)
}

fn default_event_window() -> HumanDuration {
    HumanDuration::mins(10)
}

fn default_per_instance() -> Per {
    Per::Instance
}

fn default_min_count() -> u32 {
    1
}

fn default_failure() -> EventResult {
    EventResult::Failure
}

/// A threshold or rate condition on a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricCondition {
    /// Metric name (e.g. `container_cpu_usage_cores`).
    pub metric: String,
    /// How the series of a partition combine (default `avg`).
    #[serde(default)]
    pub aggregation: MetricAggregation,
    /// One alert per instance, group, host or the whole scope (default scope).
    #[serde(default)]
    pub per: Per,
    /// Comparison.
    pub op: Op,
    /// Value compared against.
    pub value: f64,
    /// Each series is reduced over this trailing window (mean for a
    /// threshold, per-second increase for a rate); default 5m.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
}

/// No samples of a metric for a while: a dead agent or container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsenceCondition {
    /// Metric name (e.g. `host_cpu_utilization` for agents).
    pub metric: String,
    /// One alert per instance (default), group, host or the whole scope.
    #[serde(default = "default_per_instance")]
    pub per: Per,
    /// A partition with no sample for this long is absent (default 2m).
    #[serde(default = "default_absence_window")]
    pub window: HumanDuration,
    /// Only partitions seen within this long are expected to report
    /// (default 1h): a container deleted longer ago is not missed.
    #[serde(default = "default_lookback")]
    pub lookback: HumanDuration,
}

/// Recorded events (failed tasks, failover) matching an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCondition {
    /// Action, `*` matching any text: `task.failed`, `failover.*`.
    pub action: String,
    /// Only events of this result (default `failure`).
    #[serde(default = "default_failure")]
    pub result: EventResult,
    /// Only events about this kind of object (`task`, `host`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_kind: Option<String>,
    /// An alert stays active while a matching event is this recent
    /// (default 10m); it resolves afterwards.
    #[serde(default = "default_event_window")]
    pub window: HumanDuration,
    /// Events needed within the window (default 1).
    #[serde(default = "default_min_count")]
    pub min_count: u32,
}

/// What a policy checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// Each series' mean over the window, combined per partition, compared.
    Threshold(MetricCondition),
    /// Each series' per-second increase over the window (a counter),
    /// combined per partition, compared.
    Rate(MetricCondition),
    /// No samples for a window.
    Absence(AbsenceCondition),
    /// Matching events recorded within a window.
    Event(EventCondition),
}

impl Condition {
    /// Lowercase kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Threshold(_) => "threshold",
            Condition::Rate(_) => "rate",
            Condition::Absence(_) => "absence",
            Condition::Event(_) => "event",
        }
    }

    /// One line for people: `avg(container_cpu_usage_cores) per instance > 0.9 over 5m`.
    pub fn describe(&self) -> String {
        match self {
            Condition::Threshold(m) | Condition::Rate(m) => format!(
                "{}({}{}){} {} {} over {}",
                m.aggregation.as_str(),
                if matches!(self, Condition::Rate(_)) {
                    "rate "
                } else {
                    ""
                },
                m.metric,
                match m.per {
                    Per::Scope => String::new(),
                    p => format!(" per {}", p.as_str()),
                },
                m.op.as_str(),
                m.value,
                m.window
            ),
            Condition::Absence(a) => {
                format!("no {} per {} for {}", a.metric, a.per.as_str(), a.window)
            }
            Condition::Event(ev) => format!(
                "{} {} event{} within {}",
                ev.min_count,
                ev.action,
                if ev.min_count == 1 { "" } else { "s" },
                ev.window
            ),
        }
    }
}

fn default_repeat() -> HumanDuration {
    HumanDuration::hours(4)
}

fn default_group_wait() -> HumanDuration {
    HumanDuration::secs(5)
}

fn default_true() -> bool {
    true
}

/// An alert policy, stored at [`crate::keys::alert_policy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPolicy {
    /// Unique name; the `alertname` label of its alerts.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What it watches.
    #[serde(default)]
    pub scope: AlertScope,
    /// What it checks.
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (default 0:
    /// at once).
    #[serde(default, rename = "for")]
    pub for_: HumanDuration,
    /// Severity (default warning).
    #[serde(default)]
    pub severity: Severity,
    /// Labels added to every alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Templates rendered per alert: `summary` (used as the mail subject and
    /// the SMS text), `description`. Placeholders: `{{labels.NAME}}`,
    /// `{{value}}`, `{{policy}}`, `{{severity}}`, `{{state}}`, `{{message}}`
    /// (the last matching event's message).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Names of the receivers notified.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// A still-firing alert is notified again after this long (default 4h).
    #[serde(default = "default_repeat")]
    pub repeat_interval: HumanDuration,
    /// Alerts whose values of these labels agree go out in one notification
    /// (default `[alertname]`: one notification per policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// How long a new alert waits for others of its group before the first
    /// notification (default 5s).
    #[serde(default = "default_group_wait")]
    pub group_wait: HumanDuration,
    /// A disabled policy raises nothing; its alerts resolve.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Department of the scope's app (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Who last wrote it (set by the server).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_by: String,
    /// When it was created (set by the server).
    #[serde(default)]
    pub created_at_ms: UnixMillis,
    /// When it was last changed (set by the server).
    #[serde(default)]
    pub updated_at_ms: UnixMillis,
}

/// Largest number of receivers, labels, annotations or group-by labels.
pub const MAX_ITEMS: usize = 32;

impl AlertPolicy {
    /// The labels notifications are grouped by.
    pub fn effective_group_by(&self) -> Vec<String> {
        if self.group_by.is_empty() {
            vec![ALERTNAME.to_string()]
        } else {
            self.group_by.clone()
        }
    }
}

fn check_metric_name(e: &mut ValidationErrors, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if !ok {
        e.add(
            field,
            "invalid_metric",
            format!("{name:?} is not a metric name: use [a-zA-Z_:][a-zA-Z0-9_:]*"),
        );
    }
}

fn check_window(e: &mut ValidationErrors, field: &str, d: HumanDuration, min_ms: u64) {
    if d.ms() < min_ms || d.ms() > 7 * 86_400_000 {
        e.add(
            field,
            "out_of_range",
            format!(
                "{d} is out of range: use between {} and 7d",
                HumanDuration(min_ms)
            ),
        );
    }
}

impl Validate for AlertPolicy {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        if self.description.len() > 1024 {
            e.add("description", "too_long", "must be at most 1024 characters");
        }
        self.scope.check(&mut e);
        match &self.condition {
            Condition::Threshold(m) | Condition::Rate(m) => {
                check_metric_name(&mut e, "condition.metric", &m.metric);
                if !m.value.is_finite() {
                    e.add("condition.value", "invalid", "must be a finite number");
                }
                check_window(&mut e, "condition.window", m.window, 1000);
            }
            Condition::Absence(a) => {
                check_metric_name(&mut e, "condition.metric", &a.metric);
                check_window(&mut e, "condition.window", a.window, 1000);
                if a.lookback < a.window {
                    e.add(
                        "condition.lookback",
                        "out_of_range",
                        format!(
                            "lookback {} must be at least the window {}",
                            a.lookback, a.window
                        ),
                    );
                }
                check_window(&mut e, "condition.lookback", a.lookback, 1000);
            }
            Condition::Event(ev) => {
                let ok = !ev.action.is_empty()
                    && ev.action.len() <= 128
                    && ev.action.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-*".contains(&b)
                    });
                if !ok {
                    e.add(
                        "condition.action",
                        "invalid",
                        format!(
                            "{:?} is not an action pattern: use lowercase words joined by '.', '*' matching any text (e.g. task.failed, failover.*)",
                            ev.action
                        ),
                    );
                }
                if let Some(k) = &ev.object_kind {
                    check_name(&mut e, "condition.object_kind", k);
                }
                check_window(&mut e, "condition.window", ev.window, 1000);
                if ev.min_count == 0 {
                    e.add("condition.min_count", "out_of_range", "must be at least 1");
                }
                if self.scope.datacenter.is_some() {
                    e.add(
                        "scope.datacenter",
                        "unsupported",
                        "events carry no datacenter: scope an event policy by app, group or host",
                    );
                }
            }
        }
        if self.for_.ms() > 7 * 86_400_000 {
            e.add("for", "out_of_range", "must be at most 7d");
        }
        if self.labels.len() > MAX_ITEMS {
            e.add("labels", "too_many", format!("at most {MAX_ITEMS} labels"));
        }
        for (k, v) in &self.labels {
            check_label(&mut e, "labels", k, v);
            if k == ALERTNAME || k == SEVERITY {
                e.add(
                    format!("labels.{k}"),
                    "reserved",
                    format!("label {k:?} is set by the evaluator"),
                );
            }
        }
        if self.annotations.len() > MAX_ITEMS {
            e.add(
                "annotations",
                "too_many",
                format!("at most {MAX_ITEMS} annotations"),
            );
        }
        for (k, v) in &self.annotations {
            if !crate::name::is_valid_name(k)
                && !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                e.add(
                    format!("annotations.{k}"),
                    "invalid",
                    "annotation names are lowercase words (summary, description, runbook)",
                );
            }
            if v.len() > 2048 {
                e.add(
                    format!("annotations.{k}"),
                    "too_long",
                    "must be at most 2048 characters",
                );
            }
            if let Err(msg) = check_template(v) {
                e.add(format!("annotations.{k}"), "invalid_template", msg);
            }
        }
        if self.receivers.len() > MAX_ITEMS {
            e.add(
                "receivers",
                "too_many",
                format!("at most {MAX_ITEMS} receivers"),
            );
        }
        for (i, r) in self.receivers.iter().enumerate() {
            check_name(&mut e, &format!("receivers[{i}]"), r);
            if self.receivers[..i].contains(r) {
                e.add(
                    format!("receivers[{i}]"),
                    "duplicate",
                    format!("receiver {r:?} is listed twice"),
                );
            }
        }
        check_window(&mut e, "repeat_interval", self.repeat_interval, 60_000);
        if self.group_wait.ms() > 3_600_000 {
            e.add("group_wait", "out_of_range", "must be at most 1h");
        }
        if self.group_by.len() > MAX_ITEMS {
            e.add(
                "group_by",
                "too_many",
                format!("at most {MAX_ITEMS} labels"),
            );
        }
        for (i, l) in self.group_by.iter().enumerate() {
            check_label(&mut e, &format!("group_by[{i}]"), l, "");
        }
        e.into_result()
    }
}

/// Placeholders a template may use.
const TEMPLATE_VARS: [&str; 5] = ["value", "policy", "severity", "state", "message"];

fn placeholders(template: &str) -> Result<Vec<(usize, usize, &str)>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = template[from..].find("{{") {
        let start = from + open;
        let close = template[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' at byte {start}"))?;
        let end = start + close + 2;
        out.push((start, end, template[start + 2..end - 2].trim()));
        from = end;
    }
    Ok(out)
}

/// Checks that every `{{…}}` of a template is a known placeholder.
pub fn check_template(template: &str) -> Result<(), String> {
    for (_, _, name) in placeholders(template)? {
        let ok = TEMPLATE_VARS.contains(&name)
            || name
                .strip_prefix("labels.")
                .is_some_and(|l| !l.is_empty() && !l.contains(' '));
        if !ok {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}: use {{{{labels.NAME}}}}, {{{{value}}}}, {{{{policy}}}}, {{{{severity}}}}, {{{{state}}}} or {{{{message}}}}"
            ));
        }
    }
    Ok(())
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct TemplateContext<'a> {
    /// The alert's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The observed value.
    pub value: f64,
    /// Policy name.
    pub policy: &'a str,
    /// Severity.
    pub severity: Severity,
    /// State.
    pub state: AlertState,
    /// Last matching event's message (event conditions).
    pub message: &'a str,
}

/// Renders a template; unknown labels render as empty text, a malformed
/// template renders as itself.
pub fn render_template(template: &str, ctx: &TemplateContext<'_>) -> String {
    let Ok(ps) = placeholders(template) else {
        return template.to_string();
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut at = 0;
    for (start, end, name) in ps {
        out.push_str(&template[at..start]);
        match name {
            "value" => out.push_str(&format_value(ctx.value)),
            "policy" => out.push_str(ctx.policy),
            "severity" => out.push_str(ctx.severity.as_str()),
            "state" => out.push_str(ctx.state.as_str()),
            "message" => out.push_str(ctx.message),
            other => {
                if let Some(v) = other
                    .strip_prefix("labels.")
                    .and_then(|l| ctx.labels.get(l))
                {
                    out.push_str(v);
                }
            }
        }
        at = end;
    }
    out.push_str(&template[at..]);
    out
}

/// A value as people read it: up to 4 decimals, no trailing zeros.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `*` matches any text (also none); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// State of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for the policy's `for` duration.
    Pending,
    /// The condition has held long enough: notified.
    Firing,
    /// It held, and no longer does.
    Resolved,
}

impl AlertState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            _ => Err(format!(
                "unknown alert state {s:?}: use pending, firing or resolved"
            )),
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one receiver was last told about an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyMark {
    /// The state it was told (firing or resolved).
    pub state: AlertState,
    /// When.
    pub at_ms: UnixMillis,
}

/// One alert: a policy's condition holding for one partition (instance,
/// group, host, scope or event object). Stored at [`crate::keys::alert`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Hash of the policy name and the labels: the dedup key.
    pub fingerprint: String,
    /// Policy that raised it.
    pub policy: String,
    /// Severity.
    pub severity: Severity,
    /// Labels: `alertname`, `severity`, the policy's labels, the scope's
    /// and the partition's.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations (`summary`, `description`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlertState,
    /// Last observed value (for events: matching events in the window).
    pub value: f64,
    /// Since when the condition holds (start of pending).
    pub active_since_ms: UnixMillis,
    /// When it started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at_ms: Option<UnixMillis>,
    /// When it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<UnixMillis>,
    /// When the state last changed.
    pub changed_at_ms: UnixMillis,
    /// When it was last evaluated.
    pub updated_at_ms: UnixMillis,
    /// Department of the policy (developer tokens see their department's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The silence muting it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// Per receiver, what it was last told.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notified: BTreeMap<String, NotifyMark>,
    /// Last delivery error per receiver, until a delivery works.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// The dedup key of an alert: FNV-1a (64 bit) over the policy name and the
/// sorted labels, as 16 hex digits. Stable across releases and replicas.
pub fn fingerprint(policy: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator no label contains, so ("ab","c") ≠ ("a","bc").
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(policy.as_bytes());
    for (k, v) in labels {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    format!("{h:016x}")
}

/// One matcher of a silence: a label equal to a value, `*` in the value
/// matching any text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMatcher {
    /// Label name.
    pub name: String,
    /// Value pattern.
    pub value: String,
}

impl LabelMatcher {
    /// True when `labels` has the label with a matching value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        labels
            .get(&self.name)
            .is_some_and(|v| glob_match(&self.value, v))
    }

    /// True when the value has no `*`.
    pub fn is_exact(&self) -> bool {
        !self.value.contains('*')
    }
}

impl FromStr for LabelMatcher {
    type Err = String;
    /// `name=value`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not a matcher: use label=value (e.g. app=shop)"))?;
        Ok(LabelMatcher {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
        })
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// A silence: no notifications for alerts matching every matcher between
/// its start and end. Stored at [`crate::keys::silence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Id (set by the server).
    #[serde(default)]
    pub id: String,
    /// Every matcher must match.
    pub matchers: Vec<LabelMatcher>,
    /// Start, unix ms (default: now).
    #[serde(default)]
    pub starts_at_ms: UnixMillis,
    /// End, unix ms.
    pub ends_at_ms: UnixMillis,
    /// Who made it (set by the server).
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Department of a developer's silence (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// When it was made (set by the server).
    #[serde(default)]
    pub created_at_ms: UnixMillis,
}

impl Silence {
    /// True between start (inclusive) and end (exclusive).
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.starts_at_ms <= now && now < self.ends_at_ms
    }

    /// True when every matcher matches `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matchers.is_empty() && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Active, pending (not yet started) or expired.
    pub fn status(&self, now: UnixMillis) -> &'static str {
        if now < self.starts_at_ms {
            "pending"
        } else if now < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }
}

impl Validate for Silence {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.matchers.is_empty() {
            e.add(
                "matchers",
                "required",
                "a silence needs at least one matcher (e.g. app=shop)",
            );
        }
        if self.matchers.len() > MAX_ITEMS {
            e.add(
                "matchers",
                "too_many",
                format!("at most {MAX_ITEMS} matchers"),
            );
        }
        for (i, m) in self.matchers.iter().enumerate() {
            check_label(
                &mut e,
                &format!("matchers[{i}]"),
                &m.name,
                &m.value.replace('*', ""),
            );
            if m.value.is_empty() {
                e.add(
                    format!("matchers[{i}].value"),
                    "required",
                    "a matcher needs a value ('*' matches any)",
                );
            }
        }
        if self.ends_at_ms <= self.starts_at_ms {
            e.add(
                "ends_at_ms",
                "out_of_range",
                "the silence must end after it starts",
            );
        } else if self.ends_at_ms - self.starts_at_ms > 366 * 86_400_000 {
            e.add(
                "ends_at_ms",
                "out_of_range",
                "a silence may last at most a year",
            );
        }
        if self.comment.len() > 1024 {
            e.add("comment", "too_long", "must be at most 1024 characters");
        }
        e.into_result()
    }
}

fn default_smtp_port() -> u16 {
    25
}

fn default_email_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_http_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

fn default_retries() -> u32 {
    3
}

/// Mail through an SMTP relay (plain SMTP, no TLS: a relay on the host or
/// the local network, as MTAs in a datacenter usually are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailReceiver {
    /// SMTP server host name or address.
    pub smtp_host: String,
    /// SMTP port (default 25).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Sender address.
    pub from: String,
    /// Recipient addresses.
    pub to: Vec<String>,
    /// Give up on one delivery after this long (default 10s).
    #[serde(default = "default_email_timeout")]
    pub timeout: HumanDuration,
}

/// Text messages through an SMS gateway's HTTP webhook: `POST url` with
/// `{"to": [phones], "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsReceiver {
    /// Gateway URL (`http://…`).
    pub url: String,
    /// Phone numbers, `+` and 6–15 digits.
    pub to: Vec<String>,
    /// Bearer token sent to the gateway (a secret: never shown back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Per attempt (default 5s).
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after the first failed one (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// A generic webhook: `POST url` with the notification as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookReceiver {
    /// URL (`http://…`).
    pub url: String,
    /// Bearer token (a secret: never shown back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Per attempt (default 5s).
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after the first failed one (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// How a receiver delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReceiverKind {
    /// SMTP mail.
    Email(EmailReceiver),
    /// SMS gateway webhook.
    Sms(SmsReceiver),
    /// Generic webhook.
    Webhook(WebhookReceiver),
}

impl ReceiverKind {
    /// Lowercase kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiverKind::Email(_) => "email",
            ReceiverKind::Sms(_) => "sms",
            ReceiverKind::Webhook(_) => "webhook",
        }
    }

    /// Where it delivers, for listings (no secrets).
    pub fn target(&self) -> String {
        match self {
            ReceiverKind::Email(m) => {
                format!("{} via {}:{}", m.to.join(","), m.smtp_host, m.smtp_port)
            }
            ReceiverKind::Sms(s) => format!("{} via {}", s.to.join(","), s.url),
            ReceiverKind::Webhook(w) => w.url.clone(),
        }
    }

    fn secret_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            ReceiverKind::Email(_) => None,
            ReceiverKind::Sms(s) => Some(&mut s.token),
            ReceiverKind::Webhook(w) => Some(&mut w.token),
        }
    }
}

/// A receiver, stored at [`crate::keys::alert_receiver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// Unique name, referred to by policies.
    pub name: String,
    /// How it delivers.
    #[serde(flatten)]
    pub kind: ReceiverKind,
    /// Department of a developer's receiver (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// When it was last written (set by the server).
    #[serde(default)]
    pub updated_at_ms: UnixMillis,
}

impl Receiver {
    /// The receiver with its secret replaced by [`REDACTED`]: what the API shows.
    pub fn redacted(mut self) -> Self {
        if let Some(secret) = self.kind.secret_mut() {
            if secret.is_some() {
                *secret = Some(REDACTED.to_string());
            }
        }
        self
    }

    /// Where an update sends [`REDACTED`] back, keeps `stored`'s secret.
    pub fn keep_secret_from(&mut self, stored: &Receiver) {
        let old = stored.clone().kind.secret_mut().and_then(|s| s.clone());
        if let Some(secret) = self.kind.secret_mut() {
            if secret.as_deref() == Some(REDACTED) {
                *secret = old;
            }
        }
    }
}

/// True for something like `ops@example.com`.
pub fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\\\"".contains(&b))
        && !domain.contains('@')
}

/// True for `+8613800000000`, `13800000000`: an optional `+` and 6–15 digits.
pub fn is_phone_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn check_http_url(e: &mut ValidationErrors, field: &str, url: &str) {
    let Some(rest) = url.strip_prefix("http://") else {
        let msg = if url.starts_with("https://") {
            "this build sends webhooks over plain http only: point it at http:// (a gateway or relay on the local network)"
        } else {
            "must be an http:// URL"
        };
        e.add(field, "invalid_url", msg);
        return;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || url.len() > 2048 || url.bytes().any(|b| b.is_ascii_whitespace()) {
        e.add(
            field,
            "invalid_url",
            format!("{url:?} is not a URL: use http://host[:port]/path"),
        );
    }
}

fn check_timeout(e: &mut ValidationErrors, field: &str, d: HumanDuration) {
    if d.ms() < 100 || d.ms() > 120_000 {
        e.add(
            field,
            "out_of_range",
            format!("{d} is out of range: use between 100ms and 2m"),
        );
    }
}

fn check_list<T>(
    e: &mut ValidationErrors,
    field: &str,
    items: &[T],
    ok: impl Fn(&T) -> bool,
    what: &str,
) where
    T: fmt::Debug,
{
    if items.is_empty() {
        e.add(field, "required", format!("at least one {what}"));
    }
    if items.len() > MAX_ITEMS {
        e.add(field, "too_many", format!("at most {MAX_ITEMS} entries"));
    }
    for (i, it) in items.iter().enumerate() {
        if !ok(it) {
            e.add(
                format!("{field}[{i}]"),
                "invalid",
                format!("{it:?} is not a valid {what}"),
            );
        }
    }
}

impl Validate for Receiver {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        match &self.kind {
            ReceiverKind::Email(m) => {
                let host_ok = !m.smtp_host.is_empty()
                    && m.smtp_host.len() <= 253
                    && m.smtp_host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                if !host_ok {
                    e.add(
                        "smtp_host",
                        "invalid",
                        format!("{:?} is not a host name or address", m.smtp_host),
                    );
                }
                if m.smtp_port == 0 {
                    e.add("smtp_port", "out_of_range", "must be 1-65535");
                }
                if !is_email_address(&m.from) {
                    e.add(
                        "from",
                        "invalid",
                        format!("{:?} is not an email address", m.from),
                    );
                }
                check_list(
                    &mut e,
                    "to",
                    &m.to,
                    |s| is_email_address(s),
                    "email address",
                );
                check_timeout(&mut e, "timeout", m.timeout);
            }
            ReceiverKind::Sms(s) => {
                check_http_url(&mut e, "url", &s.url);
                check_list(&mut e, "to", &s.to, |p| is_phone_number(p), "phone number");
                check_timeout(&mut e, "timeout", s.timeout);
                if s.retries > 10 {
                    e.add("retries", "out_of_range", "must be at most 10");
                }
            }
            ReceiverKind::Webhook(w) => {
                check_http_url(&mut e, "url", &w.url);
                check_timeout(&mut e, "timeout", w.timeout);
                if w.retries > 10 {
                    e.add("retries", "out_of_range", "must be at most 10");
                }
            }
        }
        e.into_result()
    }
}

/// One notification: the alerts of one group for one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Receiver name.
    pub receiver: String,
    /// `firing` when any alert fires, else `resolved`.
    pub status: AlertState,
    /// The labels the group is keyed by, with their values.
    pub group_labels: BTreeMap<String, String>,
    /// The alerts (firing first).
    pub alerts: Vec<Alert>,
}

impl Notification {
    /// Firing alerts in it.
    pub fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count()
    }

    /// The subject line: `[FIRING:2] high-cpu app=shop (critical)`.
    pub fn subject(&self) -> String {
        let head = match self.status {
            AlertState::Firing => format!("[FIRING:{}]", self.firing()),
            _ => "[RESOLVED]".to_string(),
        };
        let mut s = head;
        if let Some(first) = self.alerts.first() {
            let summary = first.annotations.get("summary").cloned();
            match summary {
                Some(sum) if self.alerts.len() == 1 && !sum.is_empty() => {
                    s.push(' ');
                    s.push_str(&sum);
                }
                _ => {
                    for (k, v) in &self.group_labels {
                        s.push_str(&format!(" {k}={v}"));
                    }
                }
            }
            s.push_str(&format!(" ({})", first.severity.as_str()));
        }
        s
    }

    /// The plain-text body: one paragraph per alert.
    pub fn body(&self) -> String {
        let mut b = String::new();
        for a in &self.alerts {
            b.push_str(&format!(
                "[{}] {} = {}\n",
                a.state.as_str().to_uppercase(),
                a.policy,
                format_value(a.value)
            ));
            for (k, v) in &a.annotations {
                b.push_str(&format!("  {k}: {v}\n"));
            }
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b.push_str(&format!("  labels: {}\n", labels.join(" ")));
            b.push_str(&format!(
                "  active since: {} (unix ms)\n",
                a.active_since_ms
            ));
            if let Some(t) = a.resolved_at_ms.filter(|_| a.state == AlertState::Resolved) {
                b.push_str(&format!("  resolved at: {t} (unix ms)\n"));
            }
            b.push('\n');
        }
        b
    }

    /// A short text for SMS: the subject and, for several alerts, how many.
    pub fn short_text(&self) -> String {
        let mut s = self.subject();
        if self.alerts.len() > 1 {
            let first = &self.alerts[0];
            if let Some(sum) = first.annotations.get("summary") {
                s.push_str(&format!(": {sum}"));
            }
            s.push_str(&format!(" (+{} more)", self.alerts.len() - 1));
        }
        s.chars().take(480).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AlertPolicy {
        serde_json::from_value(serde_json::json!({
            "name": "high-cpu",
            "scope": {"app": "shop"},
            "condition": {"type": "threshold", "metric": "container_cpu_usage_cores",
                          "aggregation": "max", "per": "instance", "op": ">", "value": 0.9},
            "for": "2m",
            "severity": "critical",
            "annotations": {"summary": "cpu of {{labels.instance}} at {{value}}"},
            "receivers": ["oncall"]
        }))
        .unwrap()
    }

    #[test]
    fn a_policy_reads_with_defaults() {
        let p = policy();
        p.validate().unwrap();
        assert_eq!(p.for_, HumanDuration::mins(2));
        assert_eq!(p.repeat_interval, HumanDuration::hours(4));
        assert_eq!(p.group_wait, HumanDuration::secs(5));
        assert!(p.enabled);
        let Condition::Threshold(m) = &p.condition else {
            panic!()
        };
        assert_eq!(m.window, HumanDuration::mins(5));
        assert_eq!(p.effective_group_by(), vec!["alertname"]);
        assert_eq!(
            p.condition.describe(),
            "max(container_cpu_usage_cores) per instance > 0.9 over 5m"
        );
        let back: AlertPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_bad_policy_names_every_field() {
        let mut p = policy();
        p.name = "High CPU".into();
        p.scope = AlertScope {
            group: Some("web".into()),
            ..Default::default()
        };
        p.condition = Condition::Threshold(MetricCondition {
            metric: "9cpu".into(),
            aggregation: MetricAggregation::Avg,
            per: Per::Scope,
            op: Op::Gt,
            value: f64::NAN,
            window: HumanDuration(10),
        });
        p.annotations
            .insert("summary".into(), "{{lables.x}} {{value}}".into());
        p.receivers = vec!["a".into(), "a".into()];
        p.labels.insert("severity".into(), "x".into());
        let errs = p.validate().unwrap_err();
        let fields: Vec<&str> = errs.errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "name",
            "scope.group",
            "condition.metric",
            "condition.value",
            "condition.window",
            "annotations.summary",
            "receivers[1]",
            "labels.severity",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn templates_render_labels_and_values() {
        let labels: BTreeMap<String, String> =
            [("instance".to_string(), "shop.production.web.3".to_string())].into();
        let ctx = TemplateContext {
            labels: &labels,
            value: 0.93456,
            policy: "high-cpu",
            severity: Severity::Critical,
            state: AlertState::Firing,
            message: "",
        };
        assert_eq!(
            render_template(
                "{{labels.instance}} at {{ value }} ({{severity}}, {{labels.nope}})",
                &ctx
            ),
            "shop.production.web.3 at 0.9346 (critical, )"
        );
        assert!(check_template("{{value").is_err());
        assert!(check_template("{{labels.}}").is_err());
        assert!(check_template("plain").is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob_match("task.*", "task.failed"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(glob_match("shop", "shop"));
        assert!(!glob_match("shop", "shops"));
        assert!(!glob_match("task.*", "failover.start"));
        assert!(glob_match("*.failed", "task.failed"));
        assert!(!glob_match("a*c", "abd"));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a: BTreeMap<String, String> = [("ab".to_string(), "c".to_string())].into();
        let b: BTreeMap<String, String> = [("a".to_string(), "bc".to_string())].into();
        assert_ne!(fingerprint("p", &a), fingerprint("p", &b));
        assert_ne!(fingerprint("p", &a), fingerprint("q", &a));
        assert_eq!(fingerprint("p", &a), fingerprint("p", &a.clone()));
        assert_eq!(fingerprint("p", &a).len(), 16);
    }

    #[test]
    fn silences_match_all_matchers_while_active() {
        let s = Silence {
            id: "s1".into(),
            matchers: vec![
                "app=shop".parse().unwrap(),
                "instance=shop.*".parse().unwrap(),
            ],
            starts_at_ms: 100,
            ends_at_ms: 200,
            created_by: "ops".into(),
            comment: "deploy".into(),
            department: None,
            created_at_ms: 100,
        };
        s.validate().unwrap();
        let hit: BTreeMap<String, String> = [
            ("app".to_string(), "shop".to_string()),
            ("instance".to_string(), "shop.prod.web.1".to_string()),
        ]
        .into();
        let miss: BTreeMap<String, String> = [("app".to_string(), "shop".to_string())].into();
        assert!(s.matches(&hit));
        assert!(!s.matches(&miss));
        assert!(!s.is_active(99) && s.is_active(100) && !s.is_active(200));
        assert_eq!(s.status(250), "expired");
        let mut bad = s.clone();
        bad.matchers.clear();
        bad.ends_at_ms = 50;
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["matchers", "ends_at_ms"]);
    }

    #[test]
    fn receivers_validate_and_redact() {
        let r: Receiver = serde_json::from_value(serde_json::json!({
            "name": "sms-oncall", "type": "sms", "url": "http://127.0.0.1:9000/send",
            "to": ["+8613800000000"], "token": "s3cret"
        }))
        .unwrap();
        r.validate().unwrap();
        let shown = r.clone().redacted();
        let text = serde_json::to_string(&shown).unwrap();
        assert!(
            !text.contains("s3cret") && text.contains(REDACTED),
            "{text}"
        );
        let mut update = shown.clone();
        update.keep_secret_from(&r);
        assert_eq!(update, r);

        let bad: Receiver = serde_json::from_value(serde_json::json!({
            "name": "mail", "type": "email", "smtp_host": "", "from": "nobody",
            "to": ["ops@example.com", "not an address"]
        }))
        .unwrap();
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["smtp_host", "from", "to[1]"]);
        let https: Receiver = serde_json::from_value(serde_json::json!({
            "name": "hook", "type": "webhook", "url": "https://example.com/x"
        }))
        .unwrap();
        assert_eq!(https.validate().unwrap_err().errors[0].field, "url");
        assert!(is_phone_number("13800000000") && !is_phone_number("+12ab"));
    }
}
