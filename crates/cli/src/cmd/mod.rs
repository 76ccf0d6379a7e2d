//! Sub-command handlers, one file each, plus what they share.

pub mod agent;
pub mod alerts;
pub mod apply;
pub mod autoscale;
pub mod autoscale_sim;
pub mod bench;
pub mod bench_failover;
pub mod cancel;
pub mod completions;
pub mod cordon;
pub mod create;
pub mod delete;
pub mod describe;
pub mod dev;
pub mod drain;
pub mod events;
pub mod failover;
pub mod follow;
pub mod get;
pub mod login;
pub mod metrics;
pub mod net;
pub mod scale;
pub mod server;
pub mod silence;
pub mod sim;
pub mod snapshot_scale;
pub mod top;
pub mod whoami;

use std::time::Duration;

use clap::Args as ClapArgs;

use crate::config;
use crate::output::OutputFormat;

/// Options every sub-command accepts.
#[derive(Debug, Clone, ClapArgs)]
pub struct GlobalOpts {
    /// Log filter, e.g. `info` or `jdos_server=debug` (env RUST_LOG also works).
    #[arg(long, global = true, env = "JDOS_LOG", default_value = "warn")]
    pub log: String,
    /// Server address, e.g. `http://127.0.0.1:7070` (default: the config file's, else 127.0.0.1:7070).
    #[arg(long, global = true, env = "JDOS_ADDR")]
    pub addr: Option<String>,
    /// Bearer token `<id>.<secret>` (default: the config file's).
    #[arg(long, global = true, env = "JDOS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Installs the tracing subscriber: only the binary does this.
pub fn init_tracing(g: &GlobalOpts) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&g.log));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Writes a long-running command's banner to stdout, ignoring a closed pipe:
/// a server must not die because whoever started it stopped reading its
/// output (`jdos dev | head`, a supervisor that drops the pipe). `println!`
/// would panic on that `EPIPE`.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// [`say`] for stderr, one line.
pub fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Renders an error chain on one line: `what failed: because: because`.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Runs an async command on a multi-threaded tokio runtime. `main` stays
/// synchronous so that a sub-command may also build its own runtime.
pub fn block_on<F>(fut: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// A client for the server the flags, environment or config file point at.
pub fn client(g: &GlobalOpts) -> anyhow::Result<jdos_client::Client> {
    let file = config::load(&config::path()?)?;
    let (addr, token) = config::resolve(g.addr.as_deref(), g.token.as_deref(), &file);
    Ok(jdos_client::Client::new(addr, token)?)
}

/// Prints a command's result: JSON/YAML of `value`, or the table `render` makes.
pub fn print<T: serde::Serialize + ?Sized>(
    g: &GlobalOpts,
    value: &T,
    render: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let text = match crate::output::structured(g.output, value)? {
        Some(s) => s,
        None => render(),
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`jdos get hosts | head`) is not an error worth reporting.
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 30s, 10m, 2h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?}: use ms, s, m, h or d"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn error_chains_render_on_one_line() {
        let e = anyhow::anyhow!("connection refused").context("cannot reach server");
        assert_eq!(render_error(&e), "cannot reach server: connection refused");
    }
}
