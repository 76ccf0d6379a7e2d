//! `jdos autoscale status [APP/ENV/GROUP] [--app X]`: each autoscaled
//! group's policy, replicas and the controller's last evaluation.

use jdos_types::autoscaling::AutoscaleStatus;

use super::GlobalOpts;
use crate::output::{age, now_ms, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Sub,
}

/// Sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Last decision, mode used and time per autoscaled group.
    Status {
        /// One group, `app/env/group`.
        group: Option<String>,
        /// Only groups of this app.
        #[arg(long)]
        app: Option<String>,
        /// Show the full reason of the last decision.
        #[arg(long)]
        wide: bool,
    },
}

/// Runs the command.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.command {
        Sub::Status { group, app, wide } => {
            let rows = match group {
                Some(key) => {
                    let (app, env, group) = split_group(&key)?;
                    vec![client.autoscaling_status(app, env, group).await?]
                }
                None => client.autoscaling_statuses(app.as_deref()).await?,
            };
            let now = now_ms();
            super::print(g, &rows, || render(&rows, now, wide))
        }
    }
}

/// `app/env/group`.
fn split_group(s: &str) -> anyhow::Result<(&str, &str, &str)> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [a, e, g] if !a.is_empty() && !e.is_empty() && !g.is_empty() => Ok((a, e, g)),
        _ => anyhow::bail!("{s:?} is not a group: expected app/env/group"),
    }
}

fn render(rows: &[AutoscaleStatus], now: u64, wide: bool) -> String {
    if rows.is_empty() {
        return "no group has an autoscaling policy\n".into();
    }
    let mut header = vec![
        "GROUP", "MODE", "MIN", "MAX", "REPLICAS", "DESIRED", "USED", "LOAD", "ACTION", "AGE",
    ];
    if wide {
        header.push("REASON");
    }
    let mut t = Table::new(header);
    for s in rows {
        let p = &s.policy;
        let mode = match p.mode {
            jdos_types::autoscaling::ScalingMode::Reactive => "reactive",
            jdos_types::autoscaling::ScalingMode::Predictive => "predictive",
        };
        let mut cells = vec![
            format!("{}/{}/{}", s.app, s.env, s.group),
            mode.to_string(),
            p.min_replicas.to_string(),
            p.max_replicas.to_string(),
            s.replicas.to_string(),
        ];
        match &s.last {
            Some(d) => {
                cells.push(d.desired.to_string());
                cells.push(if d.mode_used.is_empty() {
                    "-".into()
                } else {
                    d.mode_used.clone()
                });
                cells.push(d.load.map_or("-".into(), |l| format!("{l:.2}")));
                cells.push(match &d.task {
                    Some(t) => format!("{} ({t})", d.action),
                    None => d.action.clone(),
                });
                cells.push(age(d.at_ms, now));
                if wide {
                    cells.push(d.reason.clone());
                }
            }
            None => {
                cells.extend(["-", "-", "-", "not evaluated yet", "-"].map(String::from));
                if wide {
                    cells.push(String::new());
                }
            }
        }
        t.row(cells);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_argument() {
        assert_eq!(
            split_group("shop/production/web").unwrap(),
            ("shop", "production", "web")
        );
        assert!(split_group("shop/web").is_err());
        assert!(split_group("shop//web").is_err());
    }
}
