//! `jdos failover status` / `jdos failover resume --datacenter X`.

use jdos_types::failover::{Brake, FailoverStatus};

use super::GlobalOpts;
use crate::output::{age, now_ms, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub what: What,
}

/// Sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Timings, mass-failure brakes and crash-looping containers.
    Status,
    /// Release a datacenter's brake: its down hosts are fenced and their
    /// containers moved elsewhere (admin, ops).
    Resume {
        /// The braked datacenter.
        #[arg(long)]
        datacenter: String,
    },
}

/// Runs the sub-command.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        What::Status => {
            let s = client.failover_status().await?;
            super::print(g, &s, || render_status(&s, now_ms()))
        }
        What::Resume { datacenter } => {
            let b = client.resume_failover(&datacenter).await?;
            super::print(g, &b, || {
                let held = if b.held.is_empty() {
                    String::new()
                } else {
                    format!(": fencing and evacuating {}", b.held.join(", "))
                };
                format!("datacenter/{} brake released{held}\n", b.datacenter)
            })
        }
    }
}

/// The settings line, then one row per brake and per crash-looping container.
pub fn render_status(s: &FailoverStatus, now: u64) -> String {
    let mut out = format!(
        "hosts: suspect after {:.1} s, down after {:.1} s without a heartbeat; brake above {:.0} % of a datacenter's hosts failing (at least {}); crash loops given up after {} hosts\n\n",
        s.suspect_after_ms as f64 / 1000.0,
        s.down_after_ms as f64 / 1000.0,
        s.brake_fraction * 100.0,
        s.brake_min_hosts,
        s.crash_loop_max_hosts,
    );
    match &s.leader {
        Some(l) => out.push_str(&format!("leader: {l} (its controller acts)\n\n")),
        None => out.push_str("leader: none (no server's controller acts)\n\n"),
    }
    if s.brakes.is_empty() {
        out.push_str("no brakes: every datacenter evacuates down hosts\n");
    } else {
        let mut t = Table::new([
            "DATACENTER",
            "BRAKE",
            "FAILING",
            "HELD",
            "AGE",
            "RELEASED BY",
        ]);
        for b in &s.brakes {
            t.row(brake_row(b, now));
        }
        out.push_str(&t.render());
    }
    if !s.crash_loops.is_empty() {
        out.push('\n');
        let mut t = Table::new(["CONTAINER", "CRASH-LOOPED ON", "STATE"]);
        for c in &s.crash_loops {
            t.row([
                c.id.to_string(),
                c.hosts.join(","),
                if c.given_up { "given up" } else { "moved" }.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

fn brake_row(b: &Brake, now: u64) -> Vec<String> {
    vec![
        b.datacenter.clone(),
        if b.engaged() { "engaged" } else { "released" }.to_string(),
        format!("{}/{}", b.hosts_failing.len(), b.hosts_total),
        if b.held.is_empty() {
            "-".to_string()
        } else {
            b.held.join(",")
        },
        age(b.engaged_at_ms, now),
        b.released_by.clone().unwrap_or_else(|| "-".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::failover::CrashLoop;

    #[test]
    fn status_shows_brakes_and_crash_loops() {
        let mut s = FailoverStatus {
            suspect_after_ms: 3_000,
            down_after_ms: 6_000,
            brake_fraction: 0.3,
            brake_min_hosts: 3,
            crash_loop_max_hosts: 3,
            brakes: Vec::new(),
            crash_loops: Vec::new(),
            leader: Some("server-1".into()),
        };
        let text = render_status(&s, 0);
        assert!(text.contains("leader: server-1"), "{text}");
        assert!(text.contains("down after 6.0 s"), "{text}");
        assert!(text.contains("no brakes"), "{text}");
        s.brakes.push(Brake {
            datacenter: "dc1".into(),
            engaged_at_ms: 0,
            hosts_total: 10,
            hosts_failing: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            held: vec!["a".into(), "b".into()],
            released: false,
            released_by: None,
            released_at_ms: 0,
        });
        s.crash_loops.push(CrashLoop {
            id: "shop/prod/web/3".parse().unwrap(),
            hosts: vec!["h1".into(), "h2".into(), "h3".into()],
            given_up: true,
            updated_at_ms: 0,
        });
        let text = render_status(&s, 120_000);
        assert!(text.contains("dc1"), "{text}");
        assert!(text.contains("engaged"), "{text}");
        assert!(text.contains("4/10"), "{text}");
        assert!(text.contains("a,b"), "{text}");
        assert!(text.contains("shop/prod/web/3"), "{text}");
        assert!(text.contains("given up"), "{text}");
    }
}
