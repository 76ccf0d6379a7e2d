//! `jdos dev`: the server plus a topology of real agents in one process (one
//! per simulated host, on the Docker engine when one answers, else the fake
//! driver), on an embedded store in a temporary directory (or `--data-dir`). It prints the
//! address and token, writes the config file so the next commands just work,
//! and stops cleanly on Ctrl-C / SIGTERM.
//!
//! The printed `address: …` and `token: …` lines are a stable interface:
//! scripts and the end-to-end test read them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jdos_agent::{Agent, AgentConfig, HttpControlPlane};
use jdos_runtime::{
    DestroyOptions, DockerConfig, Driver, FakeDriver, LabelFilter, NetworkRealization,
};

use super::GlobalOpts;
use crate::config;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Keep the store here (kept after exit) instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Simulated datacenters.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub datacenters: u32,
    /// Switches per datacenter.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub switches: u32,
    /// Racks per switch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub racks: u32,
    /// Hosts per rack.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub hosts: u32,
    /// Do not write the config file (by default `jdos dev` points the CLI at itself).
    #[arg(long)]
    pub no_config: bool,
    /// How the in-process agents run containers: `auto` uses the Docker
    /// engine when one answers within 2 s, else the fake driver.
    #[arg(long, value_enum, default_value_t = DevDriver::Auto)]
    pub driver: DevDriver,
}

/// The container driver of `jdos dev`'s agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DevDriver {
    /// Docker when an engine answers, else fake.
    Auto,
    /// The Docker engine (fail if none answers).
    Docker,
    /// In memory: nothing really runs.
    Fake,
}

/// Starts everything and serves until Ctrl-C or SIGTERM.
pub async fn run(a: Args, _g: &GlobalOpts) -> anyhow::Result<()> {
    let stop = StopSignals::install()?;
    // The temp dir lives until we return, then it is removed.
    let (data_dir, _tmp) = match &a.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create data dir {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("jdos-dev-")
                .tempdir()
                .context("cannot create a temporary data dir")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let handle = jdos_server::start(server_config(a.listen, data_dir.clone(), None))
        .await
        .with_context(|| format!("cannot start the server on {}", a.listen))?;
    let addr = format!("http://{}", handle.addr);
    let topo = topology(&a);
    let hosts: Vec<String> = jdos_server::dev::seed(handle.state(), &topo)
        .await
        .map_err(|e| anyhow::anyhow!("cannot register the simulated hosts: {}", e.body.message))?
        .into_iter()
        .map(|h| h.name)
        .collect();
    let networks = jdos_server::dev::seed_networks(handle.state(), &topo)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the dev networks: {}", e.body.message))?;
    let agents = DevAgents::start(&topo, &addr, &handle.join_token, a.driver).await?;

    // The token: new on a first start; on a reused --data-dir, the one the
    // server wrote there on its first start (it answers with it only once).
    let token = match &handle.admin_token {
        Some(t) => Some(t.clone()),
        None => std::fs::read_to_string(data_dir.join(jdos_server::auth::ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    };
    let cfg_path = config::path()?;
    if !a.no_config {
        config::save(
            &cfg_path,
            &config::Config {
                addr: Some(addr.clone()),
                token: token.clone(),
            },
        )?;
    }

    let total = topo.host_count();
    let where_ = if a.data_dir.is_some() {
        format!("{} (kept)", data_dir.display())
    } else {
        format!("{} (removed on exit)", data_dir.display())
    };
    // One write, and a closed stdout is not fatal (see `say`).
    let mut out = vec![
        format!("jdos dev is running: embedded store in {where_}"),
        format!(
            "simulated hosts: {} datacenters x {} switches x {} racks x {} hosts = {total}",
            a.datacenters, a.switches, a.racks, a.hosts
        ),
        format!("address: {addr}"),
        match &token {
            Some(t) => format!("token: {t}"),
            None => format!(
                "token: (not shown: {} is gone; pass the admin token with --token)",
                jdos_server::auth::ADMIN_TOKEN_FILE
            ),
        },
    ];
    if !a.no_config {
        out.push(format!(
            "config: {} (the next commands use it)",
            cfg_path.display()
        ));
    }
    out.push(format!(
        "agents: {} in this process, {} driver",
        agents.len(),
        agents.driver_name()
    ));
    for n in &networks {
        out.push(format!(
            "network: {} {} (datacenter hosts behind {})",
            n.name,
            n.subnet,
            n.switches.join(", ")
        ));
    }
    let example = hosts.first().map(String::as_str).unwrap_or("HOST");
    out.extend([
        String::new(),
        "Try:".into(),
        "  jdos get hosts".into(),
        "  jdos get datacenters".into(),
        format!("  jdos describe host {example}"),
        format!("  jdos cordon host {example}"),
        "  jdos get events".into(),
        "  jdos bench api --rate 500 --duration 10s".into(),
        String::new(),
        "Press Ctrl-C to stop.\n".into(),
    ]);
    super::say(&out.join("\n"));

    stop.wait().await?;
    super::say_err("stopping…");
    // A temporary data dir takes the records with it: remove what the
    // agents ran too, so nothing outlives the store that knew about it.
    let cleanup = a.data_dir.is_none();
    agents.stop(cleanup, &networks).await;
    handle.shutdown().await;
    Ok(())
}

/// The agents `jdos dev` runs in-process, one per simulated host, talking to
/// the server over loopback HTTP exactly as `jdos agent` does. On one Docker
/// engine each agent scopes its container names by its host name.
struct DevAgents {
    driver: &'static str,
    agents: Vec<(String, Arc<dyn Driver>, tokio::task::JoinHandle<()>)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl DevAgents {
    async fn start(
        topo: &jdos_server::dev::DevTopology,
        server: &str,
        join_token: &str,
        kind: DevDriver,
    ) -> anyhow::Result<Self> {
        let use_docker = match kind {
            DevDriver::Fake => false,
            DevDriver::Docker => true,
            DevDriver::Auto => {
                let probe = tokio::time::timeout(
                    Duration::from_secs(2),
                    jdos_runtime::DockerDriver::connect(DockerConfig::default()),
                )
                .await;
                match probe {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        super::say_err(&format!(
                            "no Docker engine ({e}): the agents use the fake driver"
                        ));
                        false
                    }
                    Err(_) => {
                        super::say_err("the Docker engine did not answer in 2 s: the agents use the fake driver");
                        false
                    }
                }
            }
        };
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let mut agents = Vec::new();
        for reg in topo.registrations() {
            let mut config = AgentConfig::new(
                &reg.name,
                &reg.datacenter,
                &reg.switch,
                &reg.rack,
                reg.capacity,
            );
            config.labels = reg.labels.clone();
            if !use_docker {
                // Simulated hosts have no /proc of their own: reporting this machine's
                // figures under their names would mislead.
                config.metrics_interval = None;
            }
            let driver: Arc<dyn Driver> = if use_docker {
                let docker = DockerConfig {
                    name_scope: Some(reg.name.clone()),
                    ..DockerConfig::default()
                };
                Arc::new(
                    jdos_runtime::DockerDriver::connect(docker)
                        .await
                        .context("cannot use the Docker engine (or pass --driver fake)")?,
                )
            } else {
                Arc::new(FakeDriver::new().with_name_scope(&reg.name))
            };
            let control = Arc::new(HttpControlPlane::new(server, join_token)?);
            let agent = Agent::new(config);
            let (d, rx, name) = (driver.clone(), shutdown.clone(), reg.name.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = agent.run(d, control, rx).await {
                    super::say_err(&format!("agent {name} stopped: {e}"));
                }
            });
            agents.push((reg.name.clone(), driver, task));
        }
        Ok(DevAgents {
            driver: if use_docker { "docker" } else { "fake" },
            agents,
            stop,
        })
    }

    fn len(&self) -> usize {
        self.agents.len()
    }

    fn driver_name(&self) -> &'static str {
        self.driver
    }

    /// Stops the agents; with `cleanup`, removes their containers and the
    /// engine networks of `networks`.
    async fn stop(self, cleanup: bool, networks: &[jdos_types::Network]) {
        let _ = self.stop.send(true);
        for (_, _, task) in &self.agents {
            task.abort();
        }
        if !cleanup {
            return;
        }
        let mut last = None;
        for (host, driver, _) in &self.agents {
            let Ok(list) = driver.list(&LabelFilter::host(host)).await else {
                continue;
            };
            for c in list {
                if let Some(id) = c.instance {
                    if let Err(e) = driver.destroy(&id, DestroyOptions::purge()).await {
                        super::say_err(&format!("cannot remove container {}: {e}", c.name));
                    }
                }
            }
            last = Some(driver.clone());
        }
        if let Some(driver) = last {
            let realization = NetworkRealization::bridge();
            for n in networks {
                if let Err(e) = driver.remove_network(&n.name, &realization).await {
                    super::say_err(&format!("cannot remove network {}: {e}", n.name));
                }
            }
        }
    }
}

/// The simulated topology the flags ask for.
fn topology(a: &Args) -> jdos_server::dev::DevTopology {
    jdos_server::dev::DevTopology {
        datacenters: a.datacenters,
        switches_per_dc: a.switches,
        racks_per_switch: a.racks,
        hosts_per_rack: a.hosts,
        ..Default::default()
    }
}

/// Server configuration shared by `jdos server` and `jdos dev`.
pub fn server_config(
    listen: SocketAddr,
    data_dir: PathBuf,
    store_url: Option<String>,
) -> jdos_server::ServerConfig {
    jdos_server::ServerConfig {
        store_url,
        // We watch the signals ourselves, to say that we are stopping.
        handle_signals: false,
        ..jdos_server::ServerConfig::new(listen, data_dir)
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, watched from the moment this is built.
///
/// Build it before starting anything: until tokio's handlers are installed, a
/// SIGTERM takes the default action and kills the process without a clean
/// shutdown (a supervisor or a test may signal during start-up).
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers now.
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot watch Ctrl-C")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Resolves when either signal arrived (also one that arrived earlier).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
        }
    }
}
