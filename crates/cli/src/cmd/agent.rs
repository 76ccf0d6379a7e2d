//! `jdos agent`: the node agent of one host. Registers the host with the
//! server (join token), heartbeats, and makes the container engine hold
//! exactly the host's assignments. Ctrl-C / SIGTERM stop the agent and
//! leave the containers running: a restarted agent adopts them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use jdos_agent::{capacity, Agent, AgentConfig, HttpControlPlane};
use jdos_runtime::{DockerConfig, Driver, FakeDriver, NetworkRealization, TierRoot, TierRoots};

use super::GlobalOpts;

/// Which driver runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// The Docker engine.
    Docker,
    /// In memory (nothing runs; for tests and demos without an engine).
    Fake,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The jdos server, e.g. `http://10.0.0.1:7070`.
    #[arg(long, env = "JDOS_SERVER")]
    pub server: String,
    /// The server's join token.
    #[arg(long, env = "JDOS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    /// Host name (default: this machine's hostname).
    #[arg(long)]
    pub name: Option<String>,
    /// Datacenter of this host.
    #[arg(long)]
    pub datacenter: String,
    /// Switch this host hangs off.
    #[arg(long)]
    pub switch: String,
    /// Rack of this host.
    #[arg(long)]
    pub rack: String,
    /// Resource zone (default `general`).
    #[arg(long)]
    pub zone: Option<String>,
    /// Host label `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Container driver.
    #[arg(long, value_enum, default_value_t = DriverKind::Docker)]
    pub driver: DriverKind,
    /// Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long)]
    pub docker_host: Option<String>,
    /// Several agents share this engine (dev, tests): container names get
    /// the host name as a suffix so they do not collide.
    #[arg(long)]
    pub shared_engine: bool,
    /// Cpu capacity in cores, e.g. `4` or `0.5` (default: /proc/cpuinfo).
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory capacity, e.g. `8GiB`, `512MiB` (default: MemTotal).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Root of L1 (SSD) host volumes.
    #[arg(long, default_value = "/export/L1")]
    pub l1_root: PathBuf,
    /// Root of L2 (SAS) host volumes.
    #[arg(long, default_value = "/export/L2")]
    pub l2_root: PathBuf,
    /// Realize jdos networks as macvlan on `<IFACE>.<vlan>` (production);
    /// default: Linux bridges (dev).
    #[arg(long, value_name = "IFACE")]
    pub macvlan_parent: Option<String>,
    /// Driver actions run at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallelism: u32,
    /// Collect and push host and container metrics this often (`0s`: never).
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub metrics_interval: std::time::Duration,
}

/// Runs the agent until Ctrl-C or SIGTERM.
pub async fn run(a: Args, _g: &GlobalOpts) -> anyhow::Result<()> {
    let stop = super::dev::StopSignals::install()?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => hostname().context("cannot read this machine's hostname: pass --name")?,
    };
    let mut config = AgentConfig::new(
        &name,
        &a.datacenter,
        &a.switch,
        &a.rack,
        capacity::capacity(a.cpu, a.memory, existing(&a.l1_root), existing(&a.l2_root)),
    );
    config.resource_zone = a.zone.clone();
    config.labels = a.labels.iter().cloned().collect();
    config.parallelism = a.parallelism as usize;
    config.metrics_interval = (!a.metrics_interval.is_zero()).then_some(a.metrics_interval);
    if let Some(parent) = &a.macvlan_parent {
        config.network = NetworkRealization::macvlan(parent);
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid agent flags: {e}"))?;
    let driver: Arc<dyn Driver> = match a.driver {
        DriverKind::Fake => Arc::new(FakeDriver::new()),
        DriverKind::Docker => {
            let docker = DockerConfig {
                name_scope: a.shared_engine.then(|| name.clone()),
                storage: TierRoots::new(TierRoot::new(&a.l1_root), TierRoot::new(&a.l2_root)),
                ..DockerConfig::default()
            };
            Arc::new(
                jdos_agent::docker::connect(a.docker_host.as_deref(), docker)
                    .await
                    .context("cannot use the Docker engine (or pass --driver fake)")?,
            )
        }
    };
    let control = Arc::new(HttpControlPlane::new(&a.server, &a.join_token)?);
    super::say(&format!(
        "jdos agent {name}: {} driver, server {}, capacity {} millicores / {} MiB\n",
        driver.name(),
        a.server,
        config.capacity.cpu_millis,
        config.capacity.memory_bytes >> 20
    ));
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let agent = Agent::new(config);
    let mut task = tokio::spawn(agent.run(driver, control, shutdown));
    tokio::select! {
        r = stop.wait() => {
            r?;
            super::say_err("stopping (containers keep running)…");
            let _ = stop_tx.send(true);
            task.await.context("agent task")??;
        }
        r = &mut task => {
            r.context("agent task")??;
        }
    }
    Ok(())
}

fn existing(p: &std::path::Path) -> Option<&std::path::Path> {
    p.is_dir().then_some(p)
}

fn hostname() -> anyhow::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))?;
    let h = h.trim().to_lowercase();
    anyhow::ensure!(!h.is_empty(), "the hostname is empty");
    Ok(h)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a label: use key=value")),
    }
}

/// Cores (`4`, `0.5`) or millicores (`500m`) → millicores.
fn parse_cpu(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let millis = if let Some(m) = s.strip_suffix('m') {
        m.parse::<u64>().ok()
    } else {
        s.parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c > 0.0 && *c < 1e6)
            .map(|c| (c * 1000.0).round() as u64)
    };
    match millis {
        Some(m) if m > 0 => Ok(m),
        _ => Err(format!(
            "{s:?} is not a cpu amount: use cores (4, 0.5) or millicores (500m)"
        )),
    }
}

/// `8GiB`, `512MiB`, `1.5G`, `1048576` (bytes) → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: use e.g. 8GiB, 512MiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?}: use KiB, MiB, GiB or TiB"
            ))
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_parse() {
        assert_eq!(parse_cpu("4"), Ok(4000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("250m"), Ok(250));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("lots").is_err());
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("8 parsecs").is_err());
        assert_eq!(parse_label("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_label("=b").is_err());
    }
}
