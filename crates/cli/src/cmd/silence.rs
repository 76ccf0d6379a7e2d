//! `jdos silence create | list | expire`: mute notifications of matching
//! alerts for a while.

use jdos_types::alert::{LabelMatcher, Silence};

use super::GlobalOpts;
use crate::output::{age, now_ms, or_dash, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub what: What,
}

/// `jdos silence` sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Silence alerts matching every `--match` for a while.
    Create {
        /// `label=value`, `*` matching any text (e.g. app=shop, instance=shop.*); repeatable.
        #[arg(long = "match", required = true, value_parser = parse_matcher)]
        matchers: Vec<LabelMatcher>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for", default_value = "1h", value_parser = super::parse_duration)]
        duration: std::time::Duration,
        /// Why (shown to whoever wonders where the alerts went).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences.
    List {
        /// Only active, pending or expired ones.
        #[arg(long, value_parser = ["active", "pending", "expired"])]
        status: Option<String>,
    },
    /// End a silence now.
    Expire {
        /// Silence id.
        id: String,
    },
}

fn parse_matcher(s: &str) -> Result<LabelMatcher, String> {
    s.parse()
}

/// Runs `jdos silence`.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        What::Create {
            matchers,
            duration,
            comment,
        } => {
            let now = now_ms();
            let s = Silence {
                id: String::new(),
                matchers,
                starts_at_ms: now,
                ends_at_ms: now + duration.as_millis() as u64,
                created_by: String::new(),
                comment,
                department: None,
                created_at_ms: 0,
            };
            let s = client.create_silence(&s).await?;
            super::print(g, &s, || {
                format!(
                    "silence/{} created: {} until {}\n",
                    s.id,
                    matchers_text(&s),
                    ends_in(s.ends_at_ms, now_ms())
                )
            })
        }
        What::List { status } => {
            let ss = client.all_silences(status.as_deref()).await?;
            super::print(g, &ss, || render(&ss, now_ms()))
        }
        What::Expire { id } => {
            let s = client.expire_silence(&id).await?;
            super::print(g, &s, || format!("silence/{id} expired\n"))
        }
    }
}

fn matchers_text(s: &Silence) -> String {
    s.matchers
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn ends_in(end: u64, now: u64) -> String {
    if end <= now {
        format!("ended {} ago", age(end, now))
    } else {
        // `age` reads the span between two times: here from now to the end.
        format!("in {}", age(now, end))
    }
}

fn render(ss: &[Silence], now: u64) -> String {
    if ss.is_empty() {
        return "no silences\n".to_string();
    }
    let mut t = Table::new(["ID", "STATUS", "MATCHERS", "ENDS", "BY", "COMMENT"]);
    for s in ss {
        t.row([
            s.id.clone(),
            s.status(now).to_string(),
            matchers_text(s),
            ends_in(s.ends_at_ms, now),
            s.created_by.clone(),
            or_dash(&s.comment),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_render_with_their_status_and_end() {
        let s = Silence {
            id: "ab12".into(),
            matchers: vec!["app=shop".parse().unwrap()],
            starts_at_ms: 1_000,
            ends_at_ms: 7_201_000,
            created_by: "ops".into(),
            comment: "deploy".into(),
            department: None,
            created_at_ms: 1_000,
        };
        let out = render(std::slice::from_ref(&s), 1_000);
        let row = out.lines().nth(1).unwrap();
        assert!(
            row.contains("active") && row.contains("app=shop") && row.contains("in 2h"),
            "{out}"
        );
        let out = render(&[s], 7_261_000);
        assert!(
            out.contains("expired") && out.contains("ended 60s ago"),
            "{out}"
        );
        assert!(parse_matcher("app").is_err());
    }
}
