//! The alert state machine, as pure functions of the previous alert, what
//! the condition shows now, and the clock:
//!
//! ```text
//!   (none) --holds--> pending --held for `for`--> firing --clears--> resolved
//!             pending --clears--> (none: never fired, nobody told)
//!            resolved --holds again--> pending (or firing when `for` is 0)
//! ```
//!
//! A `for` of zero fires at once. Receivers' marks survive a resolved →
//! pending cycle, so an alert that flaps back before its resolution went
//! out is not announced twice.

use std::collections::BTreeMap;

use jdos_types::alert::{
    fingerprint, render_template, Alert, AlertPolicy, AlertState, NotifyMark, Silence,
    TemplateContext, ALERTNAME, SEVERITY,
};
use jdos_types::UnixMillis;

use super::conditions::Observation;

/// The labels of an alert raised by `policy` for an observation.
pub fn alert_labels(policy: &AlertPolicy, obs: &Observation) -> BTreeMap<String, String> {
    let mut labels = obs.labels.clone();
    for (k, v) in &policy.labels {
        labels.insert(k.clone(), v.clone());
    }
    labels.insert(ALERTNAME.into(), policy.name.clone());
    labels.insert(SEVERITY.into(), policy.severity.as_str().into());
    labels
}

/// The next alert of a partition whose condition holds (`obs`).
pub fn holds(
    prev: Option<&Alert>,
    policy: &AlertPolicy,
    obs: &Observation,
    now: UnixMillis,
) -> Alert {
    let labels = alert_labels(policy, obs);
    let fp = fingerprint(&policy.name, &labels);
    let mut a = match prev {
        Some(p) if p.state != AlertState::Resolved => p.clone(),
        _ => Alert {
            fingerprint: fp,
            policy: policy.name.clone(),
            severity: policy.severity,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            state: AlertState::Pending,
            value: obs.value,
            active_since_ms: now,
            fired_at_ms: None,
            resolved_at_ms: None,
            changed_at_ms: now,
            updated_at_ms: now,
            department: None,
            silenced_by: None,
            notified: prev.map(|p| p.notified.clone()).unwrap_or_default(),
            errors: prev.map(|p| p.errors.clone()).unwrap_or_default(),
        },
    };
    if a.state == AlertState::Pending && now.saturating_sub(a.active_since_ms) >= policy.for_.ms() {
        a.state = AlertState::Firing;
        a.fired_at_ms = Some(now);
        a.changed_at_ms = now;
    }
    a.labels = labels;
    a.severity = policy.severity;
    a.value = obs.value;
    a.updated_at_ms = now;
    a.department = policy.department.clone();
    a.annotations = policy
        .annotations
        .iter()
        .map(|(k, t)| {
            let ctx = TemplateContext {
                labels: &a.labels,
                value: obs.value,
                policy: &policy.name,
                severity: policy.severity,
                state: a.state,
                message: &obs.message,
            };
            (k.clone(), render_template(t, &ctx))
        })
        .collect();
    a
}

/// The next alert of a partition whose condition no longer holds (or whose
/// policy is gone or disabled): `None` when it should be forgotten.
pub fn clears(prev: &Alert, now: UnixMillis) -> Option<Alert> {
    match prev.state {
        AlertState::Pending => None,
        AlertState::Firing => {
            let mut a = prev.clone();
            a.state = AlertState::Resolved;
            a.resolved_at_ms = Some(now);
            a.changed_at_ms = now;
            a.updated_at_ms = now;
            if let Some(s) = a.annotations.get_mut("summary") {
                // The summary was rendered while firing; say it is over.
                if !s.starts_with("resolved: ") {
                    *s = format!("resolved: {s}");
                }
            }
            Some(a)
        }
        AlertState::Resolved => Some(prev.clone()),
    }
}

/// The first active silence matching the alert.
pub fn silenced_by(alert: &Alert, silences: &[Silence], now: UnixMillis) -> Option<String> {
    silences
        .iter()
        .find(|s| s.is_active(now) && s.matches(&alert.labels))
        .map(|s| s.id.clone())
}

/// True when a resolved alert may be deleted: every existing receiver that
/// was told it fired was told it resolved, and it has been kept for
/// `retention_ms` (or for a day, whatever the receivers say).
pub fn collectable(
    a: &Alert,
    receiver_exists: impl Fn(&str) -> bool,
    now: UnixMillis,
    retention_ms: u64,
) -> bool {
    let Some(resolved) = a.resolved_at_ms.filter(|_| a.state == AlertState::Resolved) else {
        return false;
    };
    let age = now.saturating_sub(resolved);
    let told = a
        .notified
        .iter()
        .all(|(r, m): (&String, &NotifyMark)| m.state != AlertState::Firing || !receiver_exists(r));
    (told && age >= retention_ms) || age >= 86_400_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::alert::Condition;

    fn policy(for_secs: u64) -> AlertPolicy {
        let mut p: AlertPolicy = serde_json::from_value(serde_json::json!({
            "name": "high-cpu",
            "scope": {"app": "shop"},
            "condition": {"type": "threshold", "metric": "cpu", "op": ">", "value": 0.9},
            "annotations": {"summary": "{{labels.instance}} at {{value}} ({{state}})"},
            "receivers": ["oncall"]
        }))
        .unwrap();
        p.for_ = jdos_types::duration::HumanDuration::secs(for_secs);
        assert!(matches!(p.condition, Condition::Threshold(_)));
        p
    }

    fn obs(v: f64) -> Observation {
        Observation {
            labels: [("instance".to_string(), "shop.p.web.1".to_string())].into(),
            value: v,
            message: String::new(),
        }
    }

    #[test]
    fn pending_fires_after_for_then_resolves() {
        let p = policy(60);
        let a = holds(None, &p, &obs(0.95), 1000);
        assert_eq!(a.state, AlertState::Pending);
        assert_eq!(a.labels[ALERTNAME], "high-cpu");
        assert_eq!(a.labels[SEVERITY], "warning");
        let a = holds(Some(&a), &p, &obs(0.97), 30_000);
        assert_eq!(a.state, AlertState::Pending, "30 s is not 60 s");
        assert_eq!(a.active_since_ms, 1000);
        let a = holds(Some(&a), &p, &obs(0.99), 61_000);
        assert_eq!(a.state, AlertState::Firing);
        assert_eq!(a.fired_at_ms, Some(61_000));
        assert_eq!(a.annotations["summary"], "shop.p.web.1 at 0.99 (firing)");
        let r = clears(&a, 70_000).unwrap();
        assert_eq!(r.state, AlertState::Resolved);
        assert_eq!(r.resolved_at_ms, Some(70_000));
        assert_eq!(r.fingerprint, a.fingerprint);
        assert!(r.annotations["summary"].starts_with("resolved: "));
    }

    #[test]
    fn a_zero_for_fires_at_once_and_pending_that_clears_is_forgotten() {
        let a = holds(None, &policy(0), &obs(1.0), 5);
        assert_eq!(a.state, AlertState::Firing);
        let p = holds(None, &policy(60), &obs(1.0), 5);
        assert_eq!(clears(&p, 10), None);
    }

    #[test]
    fn flapping_under_for_never_fires() {
        let p = policy(60);
        let mut cur: Option<Alert> = None;
        // Holds 40 s, clears, holds 40 s, clears…: never 60 s in a row.
        for round in 0..5u64 {
            let base = round * 100_000;
            for t in [0, 20_000, 40_000] {
                cur = Some(holds(cur.as_ref(), &p, &obs(1.0), base + t));
                assert_eq!(cur.as_ref().unwrap().state, AlertState::Pending);
            }
            cur = cur.and_then(|a| clears(&a, base + 50_000));
            assert!(cur.is_none());
        }
    }

    #[test]
    fn refiring_after_resolve_starts_a_new_cycle_keeping_marks() {
        let p = policy(0);
        let mut a = holds(None, &p, &obs(1.0), 0);
        a.notified.insert(
            "oncall".into(),
            NotifyMark {
                state: AlertState::Firing,
                at_ms: 0,
            },
        );
        let r = clears(&a, 10).unwrap();
        let again = holds(Some(&r), &p, &obs(1.0), 20);
        assert_eq!(again.state, AlertState::Firing);
        assert_eq!(again.active_since_ms, 20);
        assert_eq!(again.resolved_at_ms, None);
        assert_eq!(again.notified["oncall"].state, AlertState::Firing);
    }

    #[test]
    fn resolved_alerts_are_collected_once_told() {
        let p = policy(0);
        let mut a = clears(&holds(None, &p, &obs(1.0), 0), 1000).unwrap();
        a.notified.insert(
            "oncall".into(),
            NotifyMark {
                state: AlertState::Firing,
                at_ms: 0,
            },
        );
        assert!(!collectable(&a, |_| true, 10_000_000, 3_600_000));
        assert!(
            collectable(&a, |_| false, 10_000_000, 3_600_000),
            "receiver gone"
        );
        a.notified.get_mut("oncall").unwrap().state = AlertState::Resolved;
        assert!(!collectable(&a, |_| true, 2000, 3_600_000), "kept a while");
        assert!(collectable(&a, |_| true, 3_601_000, 3_600_000));
    }
}
