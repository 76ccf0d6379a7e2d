//! Evaluating one policy's condition: which partitions (instances, groups,
//! hosts, the scope, event objects) it holds for right now, with the value.

use std::collections::BTreeMap;

use jdos_monitor::query::aggregate;
use jdos_monitor::Aggregation;
use jdos_types::alert::{
    glob_match, AbsenceCondition, AlertPolicy, AlertScope, Condition, EventCondition,
    MetricAggregation, MetricCondition, Per,
};
use jdos_types::{Event, UnixMillis};

use super::feed::EventFeed;
use super::source::{MetricSource, Reduce, SeriesValue, SourceError, WindowQuery};

/// The condition holds for one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The partition's labels plus the scope's.
    pub labels: BTreeMap<String, String>,
    /// The observed value.
    pub value: f64,
    /// For event conditions, the newest matching event's message.
    pub message: String,
}

/// The partitions `policy`'s condition holds for at `now`.
pub async fn evaluate(
    policy: &AlertPolicy,
    source: &dyn MetricSource,
    feed: &EventFeed,
    now: UnixMillis,
) -> Result<Vec<Observation>, SourceError> {
    let now_i = now as i64;
    match &policy.condition {
        Condition::Threshold(m) | Condition::Rate(m) => {
            let reduce = if matches!(policy.condition, Condition::Rate(_)) {
                Reduce::Rate
            } else {
                Reduce::Mean
            };
            let q = query(
                &policy.scope,
                &m.metric,
                now_i - m.window.ms() as i64,
                now_i,
                reduce,
            );
            let series = source.window(&q).await?;
            Ok(threshold(&policy.scope, m, &series))
        }
        Condition::Absence(a) => {
            let q = query(
                &policy.scope,
                &a.metric,
                now_i - a.lookback.ms() as i64,
                now_i,
                Reduce::Last,
            );
            let series = source.window(&q).await?;
            Ok(absence(&policy.scope, a, &series, now_i))
        }
        Condition::Event(ev) => Ok(events(&policy.scope, ev, feed.events(), now)),
    }
}

fn query(scope: &AlertScope, metric: &str, start: i64, end: i64, reduce: Reduce) -> WindowQuery {
    WindowQuery {
        metric: metric.to_string(),
        matchers: scope
            .matchers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        start,
        end,
        reduce,
    }
}

fn scope_labels(scope: &AlertScope) -> BTreeMap<String, String> {
    scope
        .matchers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The partition a series belongs to: its values of `per`'s labels.
fn partition(per: Per, s: &SeriesValue) -> Vec<(String, String)> {
    per.labels()
        .iter()
        .filter_map(|l| s.labels.get(*l).map(|v| (l.to_string(), v.clone())))
        .collect()
}

fn labels_of(scope: &AlertScope, part: &[(String, String)]) -> BTreeMap<String, String> {
    let mut labels = scope_labels(scope);
    labels.extend(part.iter().cloned());
    labels
}

fn to_monitor(a: MetricAggregation) -> Aggregation {
    match a {
        MetricAggregation::Avg => Aggregation::Avg,
        MetricAggregation::Max => Aggregation::Max,
        MetricAggregation::Min => Aggregation::Min,
        MetricAggregation::Sum => Aggregation::Sum,
        MetricAggregation::P95 => Aggregation::P95,
    }
}

/// Threshold and rate: series values combined per partition, compared.
pub fn threshold(
    scope: &AlertScope,
    m: &MetricCondition,
    series: &[SeriesValue],
) -> Vec<Observation> {
    let mut parts: BTreeMap<Vec<(String, String)>, Vec<f64>> = BTreeMap::new();
    for s in series {
        if let Some(v) = s.value.filter(|v| v.is_finite()) {
            parts.entry(partition(m.per, s)).or_default().push(v);
        }
    }
    parts
        .into_iter()
        .filter_map(|(part, mut vals)| {
            let v = aggregate(to_monitor(m.aggregation), &mut vals)?;
            m.op.holds(v, m.value).then(|| Observation {
                labels: labels_of(scope, &part),
                value: v,
                message: String::new(),
            })
        })
        .collect()
}

/// Absence: partitions seen within the lookback whose newest sample is older
/// than the window; the value is the seconds since that sample. A scope-wide
/// policy also fires when nothing at all was seen.
pub fn absence(
    scope: &AlertScope,
    a: &AbsenceCondition,
    series: &[SeriesValue],
    now: i64,
) -> Vec<Observation> {
    let mut newest: BTreeMap<Vec<(String, String)>, i64> = BTreeMap::new();
    for s in series {
        if let Some(t) = s.last_t {
            let e = newest.entry(partition(a.per, s)).or_insert(t);
            *e = (*e).max(t);
        }
    }
    if newest.is_empty() && a.per == Per::Scope {
        return vec![Observation {
            labels: scope_labels(scope),
            value: a.lookback.ms() as f64 / 1000.0,
            message: String::new(),
        }];
    }
    let cut = now - a.window.ms() as i64;
    newest
        .into_iter()
        .filter(|(_, t)| *t < cut)
        .map(|(part, t)| Observation {
            labels: labels_of(scope, &part),
            value: (now - t) as f64 / 1000.0,
            message: String::new(),
        })
        .collect()
}

fn in_scope(scope: &AlertScope, e: &Event) -> bool {
    if let Some(app) = &scope.app {
        if e.app.as_deref() != Some(app.as_str()) {
            return false;
        }
        // Events name groups as `app/env/group` in their object or message.
        let path = match (&scope.env, &scope.group) {
            (Some(env), Some(g)) => Some(format!("{app}/{env}/{g}")),
            (Some(env), None) => Some(format!("{app}/{env}/")),
            _ => None,
        };
        if let Some(p) = path {
            if !e.object.contains(&p) && !e.message.contains(&p) {
                return false;
            }
        }
    }
    if let Some(h) = &scope.host {
        if e.object != *h && !e.actor.ends_with(&format!(":{h}")) {
            return false;
        }
    }
    true
}

/// Event conditions: matching events within the window, one partition per
/// (action, object); the value is how many.
pub fn events<'a>(
    scope: &AlertScope,
    c: &EventCondition,
    recent: impl Iterator<Item = &'a Event>,
    now: UnixMillis,
) -> Vec<Observation> {
    let since = now.saturating_sub(c.window.ms());
    let mut parts: BTreeMap<BTreeMap<String, String>, (u32, String)> = BTreeMap::new();
    for e in recent {
        let hit = e.time_ms >= since
            && e.time_ms <= now
            && e.result == c.result
            && glob_match(&c.action, &e.action)
            && c.object_kind.as_ref().is_none_or(|k| *k == e.object_kind)
            && in_scope(scope, e);
        if !hit {
            continue;
        }
        let mut labels = scope_labels(scope);
        labels.insert("action".into(), e.action.clone());
        labels.insert("object_kind".into(), e.object_kind.clone());
        labels.insert("object".into(), e.object.clone());
        if let Some(app) = &e.app {
            labels.insert("app".into(), app.clone());
        }
        let entry = parts.entry(labels).or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = e.message.clone();
    }
    parts
        .into_iter()
        .filter(|(_, (n, _))| *n >= c.min_count)
        .map(|(labels, (n, message))| Observation {
            labels,
            value: f64::from(n),
            message,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::alert::Op;
    use jdos_types::duration::HumanDuration;
    use jdos_types::EventResult;

    fn sv(labels: &[(&str, &str)], value: Option<f64>, last_t: Option<i64>) -> SeriesValue {
        SeriesValue {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            last_t,
        }
    }

    fn shop() -> AlertScope {
        AlertScope {
            app: Some("shop".into()),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_combine_series_per_partition() {
        let series = [
            sv(
                &[("app", "shop"), ("host", "h1"), ("instance", "a")],
                Some(0.95),
                None,
            ),
            sv(
                &[("app", "shop"), ("host", "h1"), ("instance", "b")],
                Some(0.15),
                None,
            ),
            sv(
                &[("app", "shop"), ("host", "h2"), ("instance", "c")],
                Some(0.5),
                None,
            ),
            sv(
                &[("app", "shop"), ("host", "h2"), ("instance", "d")],
                None,
                None,
            ),
        ];
        let mut m = MetricCondition {
            metric: "cpu".into(),
            aggregation: MetricAggregation::Avg,
            per: Per::Host,
            op: Op::Gt,
            value: 0.52,
            window: HumanDuration::mins(1),
        };
        let obs = threshold(&shop(), &m, &series);
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].labels["host"], "h1");
        assert_eq!(obs[0].labels["app"], "shop");
        assert!((obs[0].value - 0.55).abs() < 1e-9);
        m.aggregation = MetricAggregation::Max;
        m.per = Per::Scope;
        let obs = threshold(&shop(), &m, &series);
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].value, 0.95);
        assert_eq!(obs[0].labels.len(), 1, "scope labels only");
        m.aggregation = MetricAggregation::Sum;
        m.op = Op::Lt;
        assert!(
            threshold(&shop(), &m, &series).is_empty(),
            "sum 1.6 is not < 0.52"
        );
    }

    #[test]
    fn absence_finds_silent_partitions() {
        let a = AbsenceCondition {
            metric: "up".into(),
            per: Per::Host,
            window: HumanDuration::secs(60),
            lookback: HumanDuration::hours(1),
        };
        let now = 1_000_000;
        let series = [
            sv(&[("host", "h1")], Some(1.0), Some(now - 10_000)),
            sv(&[("host", "h2")], Some(1.0), Some(now - 120_000)),
            sv(&[("host", "h3")], None, None),
        ];
        let obs = absence(&AlertScope::default(), &a, &series, now);
        assert_eq!(obs.len(), 1);
        assert_eq!(obs[0].labels["host"], "h2");
        assert_eq!(obs[0].value, 120.0);
        let scope_wide = AbsenceCondition {
            per: Per::Scope,
            ..a.clone()
        };
        let obs = absence(&shop(), &scope_wide, &[], now);
        assert_eq!(obs.len(), 1, "nothing seen at all is absent");
        assert_eq!(obs[0].labels["app"], "shop");
    }

    #[test]
    fn events_match_action_result_and_scope() {
        let ev = |seq: u64, t: u64, action: &str, app: &str, object: &str, result| Event {
            seq,
            time_ms: t,
            actor: "system".into(),
            action: action.into(),
            object_kind: "task".into(),
            object: object.into(),
            app: Some(app.into()),
            department: None,
            result,
            message: format!("m{seq}"),
        };
        let recent = [
            ev(1, 100, "task.failed", "shop", "t1", EventResult::Failure),
            ev(2, 200, "task.failed", "shop", "t1", EventResult::Failure),
            ev(3, 300, "task.failed", "cart", "t2", EventResult::Failure),
            ev(4, 400, "task.succeeded", "shop", "t3", EventResult::Success),
            ev(5, 10, "task.failed", "shop", "t4", EventResult::Failure),
        ];
        let c = EventCondition {
            action: "task.*".into(),
            result: EventResult::Failure,
            object_kind: None,
            window: HumanDuration(350),
            min_count: 1,
        };
        let obs = events(&shop(), &c, recent.iter(), 400);
        assert_eq!(obs.len(), 1, "{obs:?}");
        assert_eq!(obs[0].labels["object"], "t1");
        assert_eq!(obs[0].value, 2.0);
        assert_eq!(obs[0].message, "m2");
        let obs = events(&AlertScope::default(), &c, recent.iter(), 400);
        assert_eq!(obs.len(), 2);
        let twice = EventCondition { min_count: 2, ..c };
        assert_eq!(
            events(&AlertScope::default(), &twice, recent.iter(), 400).len(),
            1
        );
    }
}
