//! Which notifications are due: alerts grouped per receiver by the policy's
//! `group_by` labels, a new group held for `group_wait` so that alerts
//! starting together go out together, a still-firing group repeated after
//! `repeat_interval`, silenced alerts left out, resolutions told to every
//! receiver that was told the alert fired.

use std::collections::BTreeMap;

use jdos_types::alert::{Alert, AlertPolicy, AlertState, Notification, ALERTNAME};
use jdos_types::UnixMillis;

/// One due notification and the alerts it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The notification.
    pub notification: Notification,
    /// Fingerprints of its alerts, to mark them told once it went out.
    pub fingerprints: Vec<String>,
}

/// What the planner found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Notifications to send now.
    pub due: Vec<Due>,
    /// The earliest time a held group becomes due, if any.
    pub next_due_ms: Option<UnixMillis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Not to be told.
    Nothing,
    /// Part of the group's state (firing, already told): goes along.
    Along,
    /// A change to tell: due once held for the group wait.
    Change,
    /// Firing, told, and the repeat interval has passed.
    Repeat,
}

fn need(a: &Alert, receiver: &str, policy: Option<&AlertPolicy>, now: UnixMillis) -> Need {
    let mark = a.notified.get(receiver);
    match a.state {
        AlertState::Pending => Need::Nothing,
        AlertState::Firing if a.silenced_by.is_some() => Need::Nothing,
        AlertState::Firing => match mark {
            Some(m) if m.state == AlertState::Firing => {
                let repeat = policy.map_or(u64::MAX, |p| p.repeat_interval.ms());
                if now.saturating_sub(m.at_ms) >= repeat {
                    Need::Repeat
                } else {
                    Need::Along
                }
            }
            _ => Need::Change,
        },
        AlertState::Resolved => match mark {
            Some(m) if m.state == AlertState::Firing => Need::Change,
            _ => Need::Nothing,
        },
    }
}

/// The receivers an alert goes to: its policy's, and any told it fired.
fn receivers_of(a: &Alert, policy: Option<&AlertPolicy>) -> Vec<String> {
    let mut rs: Vec<String> = policy.map(|p| p.receivers.clone()).unwrap_or_default();
    for r in a.notified.keys() {
        if !rs.contains(r) {
            rs.push(r.clone());
        }
    }
    rs
}

#[derive(Default)]
struct Group {
    labels: BTreeMap<String, String>,
    members: Vec<(String, Need)>,
    wait_ms: u64,
    first_change_ms: Option<UnixMillis>,
    repeat: bool,
}

/// Plans the notifications due at `now`.
pub fn plan(
    alerts: &BTreeMap<String, Alert>,
    policies: &BTreeMap<String, AlertPolicy>,
    now: UnixMillis,
) -> Plan {
    let mut groups: BTreeMap<(String, Vec<String>, Vec<String>), Group> = BTreeMap::new();
    for a in alerts.values() {
        let policy = policies.get(&a.policy);
        let group_by =
            policy.map_or_else(|| vec![ALERTNAME.to_string()], |p| p.effective_group_by());
        let values: Vec<String> = group_by
            .iter()
            .map(|l| a.labels.get(l).cloned().unwrap_or_default())
            .collect();
        for r in receivers_of(a, policy) {
            let n = need(a, &r, policy, now);
            if n == Need::Nothing {
                continue;
            }
            let g = groups
                .entry((r, group_by.clone(), values.clone()))
                .or_insert_with(|| Group {
                    labels: group_by
                        .iter()
                        .cloned()
                        .zip(values.iter().cloned())
                        .collect(),
                    wait_ms: u64::MAX,
                    ..Group::default()
                });
            g.wait_ms = g.wait_ms.min(policy.map_or(0, |p| p.group_wait.ms()));
            g.members.push((a.fingerprint.clone(), n));
            match n {
                Need::Change => {
                    g.first_change_ms = Some(
                        g.first_change_ms
                            .map_or(a.changed_at_ms, |t| t.min(a.changed_at_ms)),
                    );
                }
                Need::Repeat => g.repeat = true,
                _ => {}
            }
        }
    }
    let mut out = Plan::default();
    for ((receiver, _, _), g) in groups {
        let change_due = g.first_change_ms.map(|t| t.saturating_add(g.wait_ms));
        let is_due = g.repeat || change_due.is_some_and(|t| t <= now);
        if !is_due {
            if let Some(t) = change_due {
                out.next_due_ms = Some(out.next_due_ms.map_or(t, |n| n.min(t)));
            }
            continue;
        }
        let mut members: Vec<&Alert> = g.members.iter().map(|(fp, _)| &alerts[fp]).collect();
        members.sort_by(|a, b| {
            (a.state != AlertState::Firing, &a.labels)
                .cmp(&(b.state != AlertState::Firing, &b.labels))
        });
        let status = if members.iter().any(|a| a.state == AlertState::Firing) {
            AlertState::Firing
        } else {
            AlertState::Resolved
        };
        out.due.push(Due {
            fingerprints: members.iter().map(|a| a.fingerprint.clone()).collect(),
            notification: Notification {
                receiver,
                status,
                group_labels: g.labels,
                alerts: members.into_iter().cloned().collect(),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::alert::{NotifyMark, Severity};
    use jdos_types::duration::HumanDuration;

    fn policy(name: &str, group_by: &[&str]) -> AlertPolicy {
        let mut p: AlertPolicy = serde_json::from_value(serde_json::json!({
            "name": name,
            "condition": {"type": "threshold", "metric": "cpu", "op": ">", "value": 0.9},
            "receivers": ["oncall"],
            "repeat_interval": "1h",
            "group_wait": "5s"
        }))
        .unwrap();
        p.group_by = group_by.iter().map(|s| s.to_string()).collect();
        p
    }

    fn alert(policy: &str, instance: &str, app: &str, state: AlertState, changed: u64) -> Alert {
        let labels: BTreeMap<String, String> = [
            (ALERTNAME.to_string(), policy.to_string()),
            ("instance".to_string(), instance.to_string()),
            ("app".to_string(), app.to_string()),
        ]
        .into();
        Alert {
            fingerprint: jdos_types::alert::fingerprint(policy, &labels),
            policy: policy.into(),
            severity: Severity::Warning,
            labels,
            annotations: BTreeMap::new(),
            state,
            value: 1.0,
            active_since_ms: changed,
            fired_at_ms: Some(changed),
            resolved_at_ms: (state == AlertState::Resolved).then_some(changed),
            changed_at_ms: changed,
            updated_at_ms: changed,
            department: None,
            silenced_by: None,
            notified: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn index(alerts: Vec<Alert>) -> BTreeMap<String, Alert> {
        alerts
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect()
    }

    fn policies(ps: Vec<AlertPolicy>) -> BTreeMap<String, AlertPolicy> {
        ps.into_iter().map(|p| (p.name.clone(), p)).collect()
    }

    #[test]
    fn a_new_group_waits_then_goes_out_whole() {
        let ps = policies(vec![policy("cpu", &[])]);
        let alerts = index(vec![
            alert("cpu", "a", "shop", AlertState::Firing, 1000),
            alert("cpu", "b", "shop", AlertState::Firing, 3000),
            alert("cpu", "c", "shop", AlertState::Pending, 3000),
        ]);
        let early = plan(&alerts, &ps, 4000);
        assert!(early.due.is_empty());
        assert_eq!(early.next_due_ms, Some(6000), "first change + group wait");
        let p = plan(&alerts, &ps, 6000);
        assert_eq!(p.due.len(), 1);
        let n = &p.due[0].notification;
        assert_eq!(n.receiver, "oncall");
        assert_eq!(n.status, AlertState::Firing);
        assert_eq!(n.alerts.len(), 2, "pending alerts are not told");
        assert_eq!(n.group_labels[ALERTNAME], "cpu");
    }

    #[test]
    fn group_by_splits_notifications() {
        let ps = policies(vec![policy("cpu", &["app"])]);
        let alerts = index(vec![
            alert("cpu", "a", "shop", AlertState::Firing, 0),
            alert("cpu", "b", "cart", AlertState::Firing, 0),
            alert("cpu", "c", "shop", AlertState::Firing, 0),
        ]);
        let p = plan(&alerts, &ps, 10_000);
        let sizes: Vec<(String, usize)> = p
            .due
            .iter()
            .map(|d| {
                (
                    d.notification.group_labels["app"].clone(),
                    d.notification.alerts.len(),
                )
            })
            .collect();
        assert_eq!(sizes, [("cart".to_string(), 1), ("shop".to_string(), 2)]);
    }

    #[test]
    fn told_alerts_repeat_only_after_the_interval() {
        let ps = policies(vec![policy("cpu", &[])]);
        let mut a = alert("cpu", "a", "shop", AlertState::Firing, 0);
        a.notified.insert(
            "oncall".into(),
            NotifyMark {
                state: AlertState::Firing,
                at_ms: 10_000,
            },
        );
        let alerts = index(vec![a]);
        assert!(plan(&alerts, &ps, 10_000 + 3_599_999).due.is_empty());
        assert_eq!(
            plan(&alerts, &ps, 10_000 + HumanDuration::hours(1).ms())
                .due
                .len(),
            1
        );
    }

    #[test]
    fn silenced_alerts_are_left_out_and_resolutions_go_to_the_told() {
        let ps = policies(vec![policy("cpu", &[])]);
        let mut silenced = alert("cpu", "a", "shop", AlertState::Firing, 0);
        silenced.silenced_by = Some("s1".into());
        let mut resolved = alert("cpu", "b", "shop", AlertState::Resolved, 0);
        resolved.notified.insert(
            "pager".into(),
            NotifyMark {
                state: AlertState::Firing,
                at_ms: 0,
            },
        );
        let never_told = alert("cpu", "c", "shop", AlertState::Resolved, 0);
        let p = plan(&index(vec![silenced, resolved, never_told]), &ps, 10_000);
        assert_eq!(p.due.len(), 1, "{p:?}");
        let n = &p.due[0].notification;
        assert_eq!(
            n.receiver, "pager",
            "told the alert fired, so told it resolved"
        );
        assert_eq!(n.status, AlertState::Resolved);
        assert_eq!(n.alerts.len(), 1);
    }
}
