//! `jdos alerts`: list alerts; `jdos alerts policy apply|get|delete` and
//! `jdos alerts receiver apply|get|delete` manage what raises them and where
//! they go.

use std::path::{Path, PathBuf};

use anyhow::Context;
use jdos_client::AlertQuery;
use jdos_types::alert::{format_value, Alert, AlertPolicy, AlertState, Receiver};
use serde::Deserialize;

use super::GlobalOpts;
use crate::output::{age, now_ms, or_dash, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Policies or receivers; without one, lists alerts.
    #[command(subcommand)]
    pub what: Option<What>,
    /// Only alerts in this state: pending, firing or resolved.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<AlertState>,
    /// Only alerts of this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only alerts of this policy.
    #[arg(long)]
    pub policy: Option<String>,
}

fn parse_state(s: &str) -> Result<AlertState, String> {
    s.parse()
}

/// `jdos alerts` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Alert policies: apply, get, delete.
    Policy {
        /// What to do.
        #[command(subcommand)]
        what: PolicyCmd,
    },
    /// Receivers (email, sms, webhook): apply, get, delete.
    Receiver {
        /// What to do.
        #[command(subcommand)]
        what: ReceiverCmd,
    },
}

/// `jdos alerts policy …`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Create or replace the policies (and receivers) of a YAML or JSON file:
    /// one policy, a list of them, or `{receivers: [...], policies: [...]}`.
    Apply {
        /// The file (`-` reads stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List policies, or show one.
    Get {
        /// Policy name.
        name: Option<String>,
    },
    /// Delete a policy (its alerts resolve).
    Delete {
        /// Policy name.
        name: String,
    },
}

/// `jdos alerts receiver …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReceiverCmd {
    /// Create or replace the receivers of a YAML or JSON file (one or a list).
    Apply {
        /// The file (`-` reads stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List receivers (secrets are never shown).
    Get,
    /// Delete a receiver no policy names.
    Delete {
        /// Receiver name.
        name: String,
    },
}

/// What an alerting file holds.
#[derive(Debug, Default, PartialEq)]
pub struct AlertingFile {
    /// Receivers, applied first.
    pub receivers: Vec<Receiver>,
    /// Policies.
    pub policies: Vec<AlertPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    #[serde(default)]
    receivers: Vec<Receiver>,
    #[serde(default)]
    policies: Vec<AlertPolicy>,
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Parses an alerting file: `{receivers, policies}`, one policy, or a list
/// of policies (`receivers_only` reads one receiver or a list instead).
pub fn parse_file(text: &str, receivers_only: bool) -> anyhow::Result<AlertingFile> {
    let v: serde_json::Value = serde_norway::from_str(text).context("not YAML or JSON")?;
    if receivers_only {
        let receivers = if v.is_array() {
            serde_json::from_value(v)?
        } else {
            vec![serde_json::from_value(v)?]
        };
        return Ok(AlertingFile {
            receivers,
            policies: Vec::new(),
        });
    }
    let is_bundle = v
        .as_object()
        .is_some_and(|o| o.contains_key("policies") || o.contains_key("receivers"));
    if is_bundle {
        let b: Bundle = serde_json::from_value(v)?;
        return Ok(AlertingFile {
            receivers: b.receivers,
            policies: b.policies,
        });
    }
    let policies = if v.is_array() {
        serde_json::from_value(v)?
    } else {
        vec![serde_json::from_value(v)?]
    };
    Ok(AlertingFile {
        receivers: Vec::new(),
        policies,
    })
}

/// Runs `jdos alerts`.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        None => {
            let q = AlertQuery {
                state: a.state,
                app: a.app,
                policy: a.policy,
                ..AlertQuery::default()
            };
            let mut alerts = client.all_alerts(&q).await?;
            alerts.sort_by(|x, y| {
                (order(x.state), x.severity, &x.policy, &x.labels).cmp(&(
                    order(y.state),
                    y.severity,
                    &y.policy,
                    &y.labels,
                ))
            });
            super::print(g, &alerts, || render_alerts(&alerts, now_ms()))
        }
        Some(What::Policy { what }) => match what {
            PolicyCmd::Apply { file } => {
                let f = parse_file(&read_text(&file)?, false)
                    .with_context(|| format!("{} is not an alerting file", file.display()))?;
                let mut lines = String::new();
                let mut done = Vec::new();
                for r in &f.receivers {
                    let r = client
                        .apply_receiver(r)
                        .await
                        .with_context(|| format!("receiver {:?}", r.name))?;
                    lines.push_str(&format!("receiver/{} applied\n", r.name));
                    done.push(serde_json::to_value(&r)?);
                }
                for p in &f.policies {
                    let p = client
                        .apply_alert_policy(p)
                        .await
                        .with_context(|| format!("policy {:?}", p.name))?;
                    lines.push_str(&format!("policy/{} applied\n", p.name));
                    done.push(serde_json::to_value(&p)?);
                }
                super::print(g, &done, || lines)
            }
            PolicyCmd::Get { name: Some(name) } => {
                let p = client.get_alert_policy(&name).await?;
                super::print(g, &p, || render_policies(std::slice::from_ref(&p)))
            }
            PolicyCmd::Get { name: None } => {
                let ps = client.all_alert_policies().await?;
                super::print(g, &ps, || render_policies(&ps))
            }
            PolicyCmd::Delete { name } => {
                let p = client.delete_alert_policy(&name).await?;
                super::print(g, &p, || format!("policy/{name} deleted\n"))
            }
        },
        Some(What::Receiver { what }) => match what {
            ReceiverCmd::Apply { file } => {
                let f = parse_file(&read_text(&file)?, true)
                    .with_context(|| format!("{} is not a receiver file", file.display()))?;
                let mut lines = String::new();
                let mut done = Vec::new();
                for r in &f.receivers {
                    let r = client
                        .apply_receiver(r)
                        .await
                        .with_context(|| format!("receiver {:?}", r.name))?;
                    lines.push_str(&format!("receiver/{} applied\n", r.name));
                    done.push(r);
                }
                super::print(g, &done, || lines)
            }
            ReceiverCmd::Get => {
                let rs = client.all_receivers().await?;
                super::print(g, &rs, || render_receivers(&rs))
            }
            ReceiverCmd::Delete { name } => {
                let r = client.delete_receiver(&name).await?;
                super::print(g, &r, || format!("receiver/{name} deleted\n"))
            }
        },
    }
}

fn order(s: AlertState) -> u8 {
    match s {
        AlertState::Firing => 0,
        AlertState::Pending => 1,
        AlertState::Resolved => 2,
    }
}

/// What an alert is about, in one cell: its most telling labels.
fn subject(a: &Alert) -> String {
    for k in ["instance", "object", "host", "group", "app"] {
        if let Some(v) = a.labels.get(k) {
            return format!("{k}={v}");
        }
    }
    "-".to_string()
}

/// The alerts table.
pub fn render_alerts(alerts: &[Alert], now: u64) -> String {
    if alerts.is_empty() {
        return "no alerts\n".to_string();
    }
    let mut t = Table::new([
        "STATE", "SEVERITY", "POLICY", "SUBJECT", "VALUE", "SINCE", "SILENCED", "SUMMARY",
    ]);
    for a in alerts {
        let since = match a.state {
            AlertState::Pending => a.active_since_ms,
            AlertState::Firing => a.fired_at_ms.unwrap_or(a.active_since_ms),
            AlertState::Resolved => a.resolved_at_ms.unwrap_or(a.changed_at_ms),
        };
        t.row([
            a.state.as_str().to_string(),
            a.severity.as_str().to_string(),
            a.policy.clone(),
            subject(a),
            format_value(a.value),
            age(since, now),
            or_dash(a.silenced_by.as_deref().unwrap_or("")),
            or_dash(a.annotations.get("summary").map_or("", String::as_str)),
        ]);
    }
    t.render()
}

fn render_policies(ps: &[AlertPolicy]) -> String {
    if ps.is_empty() {
        return "no alert policies\n".to_string();
    }
    let mut t = Table::new([
        "NAME",
        "SCOPE",
        "CONDITION",
        "FOR",
        "SEVERITY",
        "RECEIVERS",
        "ENABLED",
    ]);
    for p in ps {
        let scope: Vec<String> = p
            .scope
            .matchers()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        t.row([
            p.name.clone(),
            if scope.is_empty() {
                "cluster".to_string()
            } else {
                scope.join(",")
            },
            p.condition.describe(),
            p.for_.to_string(),
            p.severity.as_str().to_string(),
            or_dash(&p.receivers.join(",")),
            p.enabled.to_string(),
        ]);
    }
    t.render()
}

fn render_receivers(rs: &[Receiver]) -> String {
    if rs.is_empty() {
        return "no receivers\n".to_string();
    }
    let mut t = Table::new(["NAME", "TYPE", "TARGET", "DEPARTMENT"]);
    for r in rs {
        t.row([
            r.name.clone(),
            r.kind.as_str().to_string(),
            r.kind.target(),
            or_dash(r.department.as_deref().unwrap_or("")),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_validates() {
        let text = include_str!("../../../../examples/alerts.yaml");
        let f = parse_file(text, false).unwrap();
        assert!(f.receivers.len() >= 2 && f.policies.len() >= 4, "{f:?}");
        for r in &f.receivers {
            jdos_types::Validate::validate(r).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
        for p in &f.policies {
            jdos_types::Validate::validate(p).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }

    #[test]
    fn a_single_policy_or_a_list_is_accepted() {
        let one = "name: a\ncondition: {type: absence, metric: up}\n";
        assert_eq!(parse_file(one, false).unwrap().policies.len(), 1);
        let list = "- name: a\n  condition: {type: absence, metric: up}\n- name: b\n  condition: {type: event, action: task.failed}\n";
        assert_eq!(parse_file(list, false).unwrap().policies.len(), 2);
        assert!(parse_file("policies: 5", false).is_err());
        assert!(parse_file("polices: []", false).is_err());
    }

    #[test]
    fn alerts_render_as_a_table() {
        let labels: std::collections::BTreeMap<String, String> = [
            ("alertname".to_string(), "cpu".to_string()),
            ("instance".to_string(), "shop.production.web.1".to_string()),
        ]
        .into();
        let a = Alert {
            fingerprint: "f".into(),
            policy: "cpu".into(),
            severity: jdos_types::alert::Severity::Critical,
            labels,
            annotations: [("summary".to_string(), "hot".to_string())].into(),
            state: AlertState::Firing,
            value: 0.95,
            active_since_ms: 1_000,
            fired_at_ms: Some(61_000),
            resolved_at_ms: None,
            changed_at_ms: 61_000,
            updated_at_ms: 61_000,
            department: None,
            silenced_by: None,
            notified: Default::default(),
            errors: Default::default(),
        };
        let out = render_alerts(&[a], 181_000);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("STATE"), "{out}");
        assert!(lines[1].contains("firing") && lines[1].contains("instance=shop.production.web.1"));
        assert!(
            lines[1].contains("0.95") && lines[1].contains("2m") && lines[1].ends_with("hot"),
            "{out}"
        );
        assert_eq!(render_alerts(&[], 0), "no alerts\n");
    }
}
