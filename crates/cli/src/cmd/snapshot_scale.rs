//! `jdos snapshot-scale APP/ENV/GROUP --replicas N [--from INDEX] [--wait]`:
//! commit a running container of the group to an image and scale out with
//! clones of it (a `snapshot_scale` task).

use std::time::{Duration, Instant};

use jdos_types::api::SnapshotScaleRequest;
use jdos_types::{Task, TaskState};

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group, `APP/ENV/GROUP`.
    pub group: String,
    /// Target replicas (more than the group has now).
    #[arg(long)]
    pub replicas: u32,
    /// Index of the container to snapshot (default: the lowest-indexed
    /// running one).
    #[arg(long = "from", value_name = "INDEX")]
    pub from: Option<u32>,
    /// Place clones on any host, not only the source's (every engine must
    /// have the image: one shared engine, or pushed to a registry).
    #[arg(long)]
    pub any_host: bool,
    /// Follow the task until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Seconds the task waits for the commit and for the clones (server
    /// default 300).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

/// Submits the task; with `--wait` follows it to the end.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let key = super::get::parse_group_key(&a.group)?;
    let req = SnapshotScaleRequest {
        replicas: a.replicas,
        source_index: a.from,
        any_host: a.any_host,
        timeout_secs: a.timeout_secs,
    };
    let mut t = client.snapshot_scale(&key, &req).await?;
    if !a.wait {
        return super::print(g, &t, || {
            format!(
                "task/{} submitted: snapshot scale-out of {key} to {} replicas (follow with `jdos describe task {}`)\n",
                t.id, a.replicas, t.id
            )
        });
    }
    let started = Instant::now();
    let limit = Duration::from_secs(a.timeout_secs.unwrap_or(300) * 2 + 60);
    let mut last = String::new();
    while !t.state.is_terminal() {
        if started.elapsed() > limit {
            anyhow::bail!(
                "task {} still running after {} s: follow it with `jdos describe task {}`",
                t.id,
                started.elapsed().as_secs(),
                t.id
            );
        }
        let line = progress(&t);
        if g.output == crate::output::OutputFormat::Table && line != last {
            eprintln!("{line}");
        }
        last = line;
        tokio::time::sleep(Duration::from_millis(250)).await;
        t = client.get_task(&t.id).await?;
    }
    super::print(g, &t, || summary(&t))?;
    if t.state != TaskState::Succeeded {
        anyhow::bail!("task {} {}: {}", t.id, state_name(t.state), t.error);
    }
    Ok(())
}

/// The running step and its message.
fn progress(t: &Task) -> String {
    t.steps
        .iter()
        .rev()
        .find(|s| !s.message.is_empty())
        .map_or_else(
            || format!("task/{} {}", t.id, state_name(t.state)),
            |s| format!("{}: {}", s.name, s.message),
        )
}

fn summary(t: &Task) -> String {
    let mut out = format!("task/{} {}\n", t.id, state_name(t.state));
    for s in &t.steps {
        out.push_str(&format!("  {:<18} {}\n", s.name, s.message));
    }
    out
}

fn state_name(s: TaskState) -> String {
    format!("{s:?}").to_lowercase()
}
