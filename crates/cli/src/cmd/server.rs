//! `jdos server`: the API server on a persistent store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070", env = "JDOS_LISTEN")]
    pub listen: SocketAddr,
    /// Directory for the embedded store and the server's own files.
    #[arg(long, default_value = "/var/lib/jdos", env = "JDOS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Store URL (e.g. `memory:` or `etcd://…`); default: embedded redb under --data-dir.
    #[arg(long, env = "JDOS_STORE")]
    pub store: Option<String>,
    /// Also send every ingested metric sample to this Prometheus remote-write receiver
    /// (e.g. `http://prometheus:9090/api/v1/write`; batched, retried, bounded queue).
    #[arg(long, env = "JDOS_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,
    /// Time between two evaluations of every autoscaled group (`15s`).
    #[arg(long, default_value = "15s", value_parser = super::parse_duration, env = "JDOS_AUTOSCALE_SYNC")]
    pub autoscale_sync: std::time::Duration,
    /// The token agents register with (default: the one in <data-dir>/join.token,
    /// created on first start).
    #[arg(long, env = "JDOS_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// Agent heartbeat and failure-detection timings.
    #[command(flatten)]
    pub timings: TimingArgs,
    /// The mass-failure brake.
    #[command(flatten)]
    pub brake: BrakeArgs,
}

/// Agent timings (`jdos server`, `jdos dev`).
#[derive(Debug, Clone, clap::Args)]
pub struct TimingArgs {
    /// Agents heartbeat this often (ms).
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_interval_ms: u64,
    /// A host is suspect after this long without a heartbeat (ms).
    #[arg(long, default_value_t = 3000)]
    pub suspect_after_ms: u64,
    /// A host is down, and its containers move, after this long (ms).
    #[arg(long, default_value_t = 6000)]
    pub down_after_ms: u64,
    /// An agent cut off from the server this long stops its containers (ms;
    /// less than --down-after-ms).
    #[arg(long, default_value_t = 5000)]
    pub fence_after_ms: u64,
}

impl TimingArgs {
    /// The server's timings.
    pub fn timings(&self) -> jdos_server::Timings {
        jdos_server::Timings {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            suspect_after_ms: self.suspect_after_ms,
            down_after_ms: self.down_after_ms,
            fence_after_ms: self.fence_after_ms,
        }
    }
}

/// Mass-failure brake flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BrakeArgs {
    /// Stop evacuating a datacenter when more than this share of its hosts
    /// fail at once (the mass-failure brake).
    #[arg(long, default_value_t = 0.3, value_parser = parse_fraction)]
    pub brake_fraction: f64,
    /// Fewest failing hosts that can engage the brake.
    #[arg(long, default_value_t = 3)]
    pub brake_min_hosts: u32,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (e.g. 0.3)")),
    }
}

/// Starts the server and serves until Ctrl-C or SIGTERM.
pub async fn run(a: Args, _g: &GlobalOpts) -> anyhow::Result<()> {
    let stop = super::dev::StopSignals::install()?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create data dir {}", a.data_dir.display()))?;
    let timings = a.timings.timings();
    timings
        .validate()
        .map_err(|m| anyhow::anyhow!("invalid timings: {m}"))?;
    let mut config = super::dev::server_config(a.listen, a.data_dir.clone(), a.store.clone());
    config.join_token = a.join_token.clone();
    config.timings = timings;
    config.failover.brake = jdos_server::failover::BrakePolicy {
        fraction: a.brake.brake_fraction,
        min_hosts: a.brake.brake_min_hosts,
    };
    if let Some(url) = &a.remote_write_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--remote-write-url must be an http:// or https:// URL, got {url:?}");
        }
        config.remote_write = Some(jdos_server::remote_write::RemoteWriteConfig::new(url));
    }
    config.autoscale.sync_period = a.autoscale_sync;
    let handle = jdos_server::start(config)
        .await
        .with_context(|| format!("cannot start the server on {}", a.listen))?;
    // One write, and a closed stdout is not fatal (see `say`).
    let mut out = vec![
        format!("jdos server listening (data dir {})", a.data_dir.display()),
        format!("address: http://{}", handle.addr),
    ];
    match &handle.admin_token {
        Some(t) => out.extend([
            format!("token: {t}"),
            "This admin token is shown only once: keep it safe. Use it with:".into(),
            format!("  jdos login --addr http://{} --token {t}", handle.addr),
        ]),
        None => out.push(format!(
            "(the admin token was printed on this data dir's first start; see {} there)",
            jdos_server::auth::ADMIN_TOKEN_FILE
        )),
    }
    if a.join_token.is_none() {
        out.push(format!(
            "agents join with the token in {}",
            a.data_dir
                .join(jdos_server::server::JOIN_TOKEN_FILE)
                .display()
        ));
    }
    out.push(String::new());
    super::say(&out.join("\n"));
    stop.wait().await?;
    super::say_err("stopping…");
    handle.shutdown().await;
    Ok(())
}
