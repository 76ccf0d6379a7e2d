//! `jdos events [--app X] [--since 1h] [--action A] [--result failure] [--watch]`:
//! the audit trail; `--watch` keeps following it (long-polling the server)
//! until Ctrl-C.

use std::time::Duration;

use jdos_client::EventQuery;
use jdos_types::{Event, EventResult};

use super::GlobalOpts;
use crate::output::{now_ms, OutputFormat};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events of this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only events on this kind of object (host, app, group, task …).
    #[arg(long = "kind")]
    pub object_kind: Option<String>,
    /// Only events on this object.
    #[arg(long)]
    pub object: Option<String>,
    /// Only this action (app.apply, host.cordon …).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events with this result.
    #[arg(long, value_enum)]
    pub result: Option<ResultArg>,
    /// Only events newer than this, e.g. `10m`, `1h` (default: everything;
    /// with `--watch`, only new events unless given).
    #[arg(long, value_parser = super::parse_duration)]
    pub since: Option<Duration>,
    /// Keep following the trail: print new events as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Event results, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResultArg {
    /// It worked.
    Success,
    /// It failed.
    Failure,
}

impl From<ResultArg> for EventResult {
    fn from(r: ResultArg) -> EventResult {
        match r {
            ResultArg::Success => EventResult::Success,
            ResultArg::Failure => EventResult::Failure,
        }
    }
}

/// How long one long-poll waits on the server.
const POLL_MS: u64 = 25_000;

/// Prints the matching events, then with `--watch` follows new ones.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let now = now_ms();
    let q = EventQuery {
        app: a.app,
        object_kind: a.object_kind,
        object: a.object,
        result: a.result.map(Into::into),
        action: a.action,
        since_ms: a.since.map(|d| now.saturating_sub(d.as_millis() as u64)),
        limit: Some(500),
        ..Default::default()
    };
    if !a.watch {
        let events = client.all_events(&q).await?;
        return super::print(g, &events, || super::get::render_events(&events, now));
    }
    // Watching: the history asked for (if any), then new events as they come,
    // as a table that grows (one line each) or one JSON object per line.
    let mut last = if a.since.is_some() {
        let events = client.all_events(&q).await?;
        if !emit(g, &events, true)? {
            return Ok(());
        }
        events.last().map_or(0, |e| e.seq)
    } else {
        // From now on.
        client.events_head().await?
    };
    let mut header = a.since.is_none();
    loop {
        let q = EventQuery {
            since_ms: None,
            ..q.clone()
        };
        let events = tokio::select! {
            r = client.wait_events(last, &q, POLL_MS) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if let Some(e) = events.last() {
            last = e.seq;
        }
        if !emit(g, &events, header)? {
            return Ok(());
        }
        if !events.is_empty() {
            header = false;
        }
    }
}

/// Prints events as they arrive: table lines (with a header on the first
/// batch) or, for `-o json|yaml`, one document per event. False when the
/// reader went away (`jdos events -w | head`): time to stop.
fn emit(g: &GlobalOpts, events: &[Event], header: bool) -> anyhow::Result<bool> {
    if events.is_empty() {
        return Ok(true);
    }
    let text = match g.output {
        OutputFormat::Table => {
            let table = super::get::render_events(events, now_ms());
            if header {
                table
            } else {
                table.lines().skip(1).map(|l| format!("{l}\n")).collect()
            }
        }
        OutputFormat::Json => events
            .iter()
            .map(|e| serde_json::to_string(e).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
        OutputFormat::Yaml => events
            .iter()
            .map(|e| serde_norway::to_string(e).map(|s| format!("---\n{s}")))
            .collect::<Result<String, _>>()?,
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        r => r.map(|_| true).map_err(Into::into),
    }
}
