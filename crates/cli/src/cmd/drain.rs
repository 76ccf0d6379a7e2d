//! `jdos drain host NAME [--wait] [--batch N]`: cordon a host and move its
//! containers elsewhere with their IPs, showing progress.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use jdos_types::failover::{Drain, DrainRequest, DrainState};

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to drain.
    #[command(subcommand)]
    pub what: What,
}

/// Objects that can be drained.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A host: cordon it, then move every container elsewhere (each stopped
    /// here before it starts there, so an IP is never live twice); the host
    /// stays cordoned.
    Host {
        /// Host name.
        name: String,
        /// Follow the drain with a progress bar until it ends.
        #[arg(long)]
        wait: bool,
        /// Containers moved at once (server default 4).
        #[arg(long)]
        batch: Option<u32>,
        /// Give up waiting after this long (e.g. 10m).
        #[arg(long, default_value = "30m", value_parser = super::parse_duration)]
        timeout: Duration,
    },
}

/// Starts (or joins) a drain; with `--wait` follows it to the end.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let What::Host {
        name,
        wait,
        batch,
        timeout,
    } = a.what;
    let started = Instant::now();
    let mut d = client.drain_host(&name, &DrainRequest { batch }).await?;
    if !wait {
        return super::print(g, &d, || {
            format!(
                "host/{} draining: {} containers to move (follow with `jdos drain host {} --wait`)\n",
                d.host, d.total, d.host
            )
        });
    }
    let tty = std::io::stderr().is_terminal() && g.output == crate::output::OutputFormat::Table;
    let mut last = String::new();
    while !d.state.is_terminal() {
        if started.elapsed() > timeout {
            anyhow::bail!(
                "drain of {name} still running after {} s ({} of {} moved): follow it with `jdos drain host {name} --wait`",
                started.elapsed().as_secs(),
                d.moved,
                d.total
            );
        }
        let line = progress_line(&d);
        if tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if g.output == crate::output::OutputFormat::Table && line != last {
            eprintln!("{line}");
        }
        last = line;
        tokio::time::sleep(Duration::from_millis(250)).await;
        d = client.get_drain(&name).await?;
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
    super::print(g, &d, || summary(&d))?;
    if d.state == DrainState::Failed {
        anyhow::bail!("drain of {name} failed: {}", d.message);
    }
    Ok(())
}

/// `[#########.....................]  9/30 moved  0 failed  <message>`.
pub fn progress_line(d: &Drain) -> String {
    format!(
        "{} {:>3}/{} moved  {} failed  {}",
        super::follow::bar(u64::from(d.moved + d.failed), u64::from(d.total)),
        d.moved,
        d.total,
        d.failed,
        d.message
    )
}

/// The end-of-drain summary.
pub fn summary(d: &Drain) -> String {
    let secs = d.finished_at_ms.saturating_sub(d.started_at_ms) as f64 / 1000.0;
    match d.state {
        DrainState::Done => format!(
            "host/{} drained: {} containers moved with their IPs in {secs:.1} s; the host stays cordoned (`jdos uncordon host {}` to use it again)\n",
            d.host, d.moved, d.host
        ),
        DrainState::Failed => format!(
            "host/{} drain failed after {secs:.1} s: {} moved, {} not moved: {}\n",
            d.host, d.moved, d.failed, d.message
        ),
        DrainState::Running => format!("host/{} draining: {}\n", d.host, progress_line(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::follow::BAR;

    fn drain(moved: u32, failed: u32, state: DrainState) -> Drain {
        Drain {
            host: "h1".into(),
            actor: "ops".into(),
            state,
            total: 20,
            moved,
            failed,
            batch: 4,
            message: "batch 3 of 5".into(),
            started_at_ms: 1_000,
            finished_at_ms: 13_500,
        }
    }

    #[test]
    fn the_bar_fills_with_progress() {
        let l = progress_line(&drain(0, 0, DrainState::Running));
        assert!(l.starts_with(&format!("[{}]", ".".repeat(BAR))), "{l}");
        let l = progress_line(&drain(10, 0, DrainState::Running));
        assert!(
            l.contains(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{l}"
        );
        assert!(l.contains(" 10/20 moved"), "{l}");
        let l = progress_line(&drain(18, 2, DrainState::Running));
        assert!(l.contains(&"#".repeat(BAR)), "{l}");
    }

    #[test]
    fn summaries_say_what_happened() {
        let s = summary(&drain(20, 0, DrainState::Done));
        assert!(s.contains("20 containers moved"), "{s}");
        assert!(s.contains("12.5 s"), "{s}");
        assert!(s.contains("cordoned"), "{s}");
        let s = summary(&drain(17, 3, DrainState::Failed));
        assert!(s.contains("3 not moved"), "{s}");
    }
}
