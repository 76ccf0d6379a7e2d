//! `jdos scale APP/ENV/GROUP --replicas N|+N|-N|+P%|-P%` and
//! `jdos scale --selector department=retail --replicas +50%`: a scale task
//! for one group, or a batch scale task over every group a selector picks
//! (which starts a scale task per group). `--wait` follows it.

use std::time::Duration;

use anyhow::Context;
use jdos_client::{BatchScaleRequest, ScaleSelector};
use jdos_server::ops::{ReplicaChange, Selector};
use jdos_types::{GroupKey, Task};

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group, as `APP/ENV/GROUP` (or give `--selector`).
    #[arg(required_unless_present = "selector", conflicts_with = "selector")]
    pub group: Option<String>,
    /// Every group of the apps matching `k=v[,k=v…]`: `department`, `env`
    /// and `datacenter` are fields, any other key an app label.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Target: `N`, or a change `+N`, `-N`, `+P%`, `-P%` (percentages round
    /// up when growing, down when shrinking).
    #[arg(long, allow_hyphen_values = true)]
    pub replicas: String,
    /// Follow the task with a progress bar until it ends; exit non-zero if
    /// it fails.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (the task goes on).
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

/// What the command asks the server for, once its arguments are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// One group to `replicas` (a relative change is resolved against the
    /// group's current replicas first).
    Group {
        /// The group.
        key: GroupKey,
        /// The change.
        change: ReplicaChange,
    },
    /// A batch over a selector.
    Batch(BatchScaleRequest),
}

/// Checks the arguments: a valid change, and a group or a non-empty
/// selector.
pub fn request(a: &Args) -> anyhow::Result<Request> {
    let change: ReplicaChange = a.replicas.parse()?;
    match (&a.group, &a.selector) {
        (Some(g), None) => Ok(Request::Group {
            key: super::get::parse_group_key(g)?,
            change,
        }),
        (None, Some(s)) => {
            let sel = Selector::parse(s).map_err(|e| anyhow::anyhow!("--selector: {e}"))?;
            anyhow::ensure!(
                !sel.is_empty(),
                "--selector picks nothing: give e.g. department=retail or tier=web"
            );
            Ok(Request::Batch(BatchScaleRequest {
                selector: ScaleSelector {
                    department: sel.department,
                    labels: sel.labels,
                    env: sel.env,
                    datacenter: sel.datacenter,
                },
                replicas: change.to_string(),
                timeout_secs: None,
            }))
        }
        _ => anyhow::bail!("give a group (APP/ENV/GROUP) or --selector, not both"),
    }
}

/// Starts the scale; with `--wait` follows it.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let req = request(&a)?;
    let client = super::client(g)?;
    let (task, what) = match req {
        Request::Group { key, change } => {
            let target = match change {
                ReplicaChange::Absolute(n) => n,
                _ => {
                    // Resolved here: the scale route takes a number. A
                    // concurrent change between this read and the task is
                    // overridden by it, as with an absolute target.
                    let cur = client
                        .get_group(&key)
                        .await
                        .with_context(|| format!("cannot read group {key}"))?;
                    change.apply(cur.group.replicas)
                }
            };
            let t = client
                .scale_group(&key, target)
                .await
                .with_context(|| format!("cannot scale group {key}"))?;
            (t, format!("group {key} → {target} replicas"))
        }
        Request::Batch(b) => {
            let what = format!(
                "groups matching {} → {}",
                a.selector.as_deref().unwrap_or_default(),
                b.replicas
            );
            let t = client
                .batch_scale(&b)
                .await
                .context("cannot start the batch scale")?;
            (t, what)
        }
    };
    finish(&client, g, task, &what, a.wait, a.timeout).await
}

/// Prints a started task, or follows it with `--wait` (shared by the
/// commands that start one task: scale, delete).
pub async fn finish(
    client: &jdos_client::Client,
    g: &GlobalOpts,
    task: Task,
    what: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    if !wait {
        return super::print(g, &task, || started(&task, what));
    }
    let done = super::follow::wait(client, g, std::slice::from_ref(&task.id), timeout).await?;
    let text = super::follow::outcome(&done);
    super::print(g, &done[0], || {
        text.as_ref().map_or(String::new(), Clone::clone)
    })?;
    text.map(|_| ())
}

/// `task ID started: scale group web/production/web-lf → 4 replicas …`.
pub fn started(t: &Task, what: &str) -> String {
    format!(
        "task {} started: {} {what} (follow with `jdos describe task {}`, or pass --wait)\n",
        t.id, t.kind, t.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("scale").chain(args.iter().copied())).map(|c| c.a)
    }

    #[test]
    fn a_group_takes_absolute_and_relative_targets() {
        let a = parse(&["web/production/web-lf", "--replicas", "4"]).unwrap();
        assert_eq!(
            request(&a).unwrap(),
            Request::Group {
                key: GroupKey::new("web", "production", "web-lf"),
                change: ReplicaChange::Absolute(4)
            }
        );
        let a = parse(&["web/production/web-lf", "--replicas", "-2", "--wait"]).unwrap();
        assert!(a.wait);
        assert_eq!(
            request(&a).unwrap(),
            Request::Group {
                key: GroupKey::new("web", "production", "web-lf"),
                change: ReplicaChange::Delta(-2)
            }
        );
        let a = parse(&["web/production/web-lf", "--replicas", "+50%"]).unwrap();
        let Request::Group { change, .. } = request(&a).unwrap() else {
            panic!("a group request")
        };
        assert_eq!(change.apply(3), 5, "+50% of 3 rounds up");
    }

    #[test]
    fn a_selector_makes_a_batch() {
        let a = parse(&[
            "--selector",
            "department=retail,tier=web",
            "--replicas",
            "+50%",
        ])
        .unwrap();
        let Request::Batch(b) = request(&a).unwrap() else {
            panic!("a batch")
        };
        assert_eq!(b.selector.department.as_deref(), Some("retail"));
        assert_eq!(
            b.selector.labels.get("tier").map(String::as_str),
            Some("web")
        );
        assert_eq!(b.replicas, "+50%");
        let body = serde_json::to_value(&b).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"selector": {"department": "retail", "labels": {"tier": "web"}}, "replicas": "+50%"})
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert!(
            parse(&["--replicas", "3"]).is_err(),
            "a group or a selector"
        );
        assert!(parse(&["a/b/c", "--selector", "x=y", "--replicas", "3"]).is_err());
        let a = parse(&["a/b/c", "--replicas", "50%"]).unwrap();
        let e = request(&a).unwrap_err().to_string();
        assert!(e.contains("+P%"), "{e}");
        let a = parse(&["web-lf", "--replicas", "3"]).unwrap();
        let e = request(&a).unwrap_err().to_string();
        assert!(e.contains("APP/ENV/GROUP"), "{e}");
        let a = parse(&["--selector", "retail", "--replicas", "3"]).unwrap();
        let e = request(&a).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
    }
}
