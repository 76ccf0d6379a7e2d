//! `jdos bench failover`: host loss → every container running elsewhere with
//! its IP, measured on this machine's Docker engine with real processes.
//!
//! Each run starts a fresh server in this process (temp data dir, default
//! timings; no deploy API exists yet, so the group is placed and published
//! through the server's platform layer, as a deploy task would) and N
//! `jdos agent` processes (`--driver docker --shared-engine`, one rack each),
//! records each container's IP from the engine (its container list), then
//! simulates a power loss: SIGKILL one agent *and* `docker kill` its
//! containers. The clock runs from the kill until the engine shows every
//! container of the lost host running on another host with its original IP.
//! Then the killed agent is restarted under the same name, and the run
//! checks that it destroys its stale copies and resurrects none. Everything
//! the run created is removed at the end (containers, networks, processes,
//! data dir).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jdos_client::{Client, EventQuery};
use serde::Serialize;
use tokio::process::{Child, Command};

use super::GlobalOpts;

/// `bench failover` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// Runs (each on a fresh server and agents).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Containers deployed (one group spread over the agents).
    #[arg(long, default_value_t = 21)]
    pub containers: u32,
    /// Agents (hosts) started.
    #[arg(long, default_value_t = 3)]
    pub agents: u32,
    /// Image of the containers.
    #[arg(long, default_value = "jdos-busybox:latest")]
    pub image: String,
    /// The `jdos` binary to start (default: this one).
    #[arg(long)]
    pub jdos: Option<PathBuf>,
    /// Give up a step after this long.
    #[arg(long, default_value = "90s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON (same as `-o json`).
    #[arg(long)]
    pub json: bool,
    /// Keep each agent's log (level from RUST_LOG, else info) in
    /// DIR/<agent>.log, to see where a run's time went.
    #[arg(long, value_name = "DIR")]
    pub agent_logs: Option<PathBuf>,
}

/// One container of the lost host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// Instance id.
    pub id: String,
    /// IP before the loss (from the engine).
    pub ip_before: String,
    /// IP of the running replacement (from the engine).
    pub ip_after: String,
    /// Host it ran on.
    pub from: String,
    /// Host its replacement runs on.
    pub to: String,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Run number (1-based).
    pub run: u32,
    /// The host that lost power.
    pub victim: String,
    /// Containers it ran.
    pub moved: Vec<Moved>,
    /// Seconds from the kill to the last replacement running (as the engine shows it).
    pub seconds: f64,
    /// Seconds from the kill to the server's `host.down` event.
    pub detect_seconds: f64,
    /// Seconds from `host.down` to the last `group.evacuate` event (relocation committed).
    pub relocate_seconds: f64,
    /// Seconds from relocation to the last replacement running (agent
    /// long-poll wake-up, docker create and start).
    pub start_seconds: f64,
    /// IPs held by two running containers at the end (must be empty).
    pub duplicate_ips: Vec<String>,
    /// The restarted agent removed every stale copy it had.
    pub stale_destroyed: bool,
    /// Moved containers running on the restarted agent's host (must be empty).
    pub resurrected: Vec<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverReport {
    /// Containers deployed per run.
    pub containers: u32,
    /// Agents per run.
    pub agents: u32,
    /// Runs.
    pub runs: Vec<RunReport>,
    /// Median of `seconds`.
    pub median_seconds: f64,
    /// Worst `seconds`.
    pub max_seconds: f64,
    /// The target.
    pub target_seconds: f64,
}

/// Runs the benchmark.
pub async fn run(a: FailoverArgs, g: &GlobalOpts) -> anyhow::Result<()> {
    if a.agents < 2 {
        bail!("--agents must be at least 2: one is lost, the others take its containers");
    }
    if a.containers == 0 {
        bail!("--containers must be at least 1");
    }
    let jdos = match &a.jdos {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find the jdos binary")?,
    };
    let engine = bollard::Docker::connect_with_local_defaults()
        .context("connect to the Docker engine")?
        .negotiate_version()
        .await
        .context("the Docker engine does not answer")?;
    if let Some(dir) = &a.agent_logs {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut runs = Vec::new();
    for run in 1..=a.runs {
        let tag = format!("fo{}r{run}", std::process::id());
        let mut env = Env::new(&jdos, engine.clone(), &tag, a.timeout);
        let r = env.run_once(&a, run).await;
        env.cleanup().await;
        let r = r.with_context(|| format!("run {run}"))?;
        if g.output == crate::output::OutputFormat::Table && !a.json {
            eprintln!(
                "run {run}: {} containers off {} running elsewhere with their IPs after {:.2} s (detect {:.2} s, relocate {:.2} s, start {:.2} s)",
                r.moved.len(),
                r.victim,
                r.seconds,
                r.detect_seconds,
                r.relocate_seconds,
                r.start_seconds
            );
        }
        runs.push(r);
    }
    let mut secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    secs.sort_by(f64::total_cmp);
    let report = FailoverReport {
        containers: a.containers,
        agents: a.agents,
        median_seconds: secs[secs.len() / 2],
        max_seconds: *secs.last().unwrap_or(&0.0),
        target_seconds: 10.0,
        runs,
    };
    let json_only = a.json;
    let text = || render(&report);
    if json_only {
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(())
    } else {
        super::print(g, &report, text)
    }
}

/// The table of runs and the summary line.
pub fn render(r: &FailoverReport) -> String {
    let mut t = crate::output::Table::new([
        "RUN",
        "VICTIM",
        "MOVED",
        "SECONDS",
        "DETECT",
        "RELOCATE",
        "START",
        "SAME IPS",
        "DUP IPS",
        "STALE FENCED",
    ]);
    for run in &r.runs {
        let same = run.moved.iter().all(|m| m.ip_before == m.ip_after);
        t.row([
            run.run.to_string(),
            run.victim.clone(),
            run.moved.len().to_string(),
            format!("{:.2}", run.seconds),
            format!("{:.2}", run.detect_seconds),
            format!("{:.2}", run.relocate_seconds),
            format!("{:.2}", run.start_seconds),
            if same { "yes" } else { "NO" }.to_string(),
            run.duplicate_ips.len().to_string(),
            if run.stale_destroyed && run.resurrected.is_empty() {
                "yes"
            } else {
                "NO"
            }
            .to_string(),
        ]);
    }
    format!(
        "{}\nhost loss → all {} containers running elsewhere with the same IPs: median {:.2} s, max {:.2} s (target ≤ {:.0} s; {} containers on {} agents)\n",
        t.render(),
        r.runs.first().map_or(0, |x| x.moved.len()),
        r.median_seconds,
        r.max_seconds,
        r.target_seconds,
        r.containers,
        r.agents
    )
}

/// One container as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    docker_id: String,
    instance: String,
    host: String,
    ip: String,
    running: bool,
}

/// Processes, files and engine objects of one run.
struct Env {
    jdos: PathBuf,
    engine: bollard::Docker,
    tag: String,
    dir: PathBuf,
    timeout: Duration,
    server: Option<jdos_server::ServerHandle>,
    agents: BTreeMap<String, Child>,
    addr: String,
    token: String,
    join_token: String,
}

impl Env {
    fn new(jdos: &Path, engine: bollard::Docker, tag: &str, timeout: Duration) -> Env {
        Env {
            jdos: jdos.to_path_buf(),
            engine,
            tag: tag.to_string(),
            dir: std::env::temp_dir().join(format!("jdos-bench-{tag}")),
            timeout,
            server: None,
            agents: BTreeMap::new(),
            addr: String::new(),
            token: String::new(),
            join_token: String::new(),
        }
    }

    fn app(&self) -> String {
        self.tag.clone()
    }

    fn agent_name(&self, i: u32) -> String {
        format!("{}-h{i}", self.tag)
    }

    async fn run_once(&mut self, a: &FailoverArgs, run: u32) -> anyhow::Result<RunReport> {
        std::fs::create_dir_all(&self.dir)?;
        self.start_server().await?;
        let client = Client::new(&self.addr, Some(self.token.clone()))?;
        for i in 0..a.agents {
            self.start_agent(i, a).await?;
        }
        self.wait_hosts(&client, a.agents).await?;
        // A network per run; the subnet from the process id keeps runs of
        // concurrent benches apart.
        let octet = 16 + (std::process::id() + run) % 200;
        let net = jdos_types::Network {
            name: format!("{}-net", self.tag),
            vlan: 3000 + (std::process::id() % 500) as u16 + run as u16,
            subnet: format!("10.231.{octet}.0/24").parse()?,
            gateway: format!("10.231.{octet}.1").parse()?,
            reserved: Vec::new(),
            zone: "default".into(),
            switches: vec!["sw1".into()],
            quarantine_secs: 300,
        };
        client
            .create_network(&net)
            .await
            .context("create the network")?;
        self.deploy(a, &net.name).await?;
        let all = self
            .wait_until("every container running", || async {
                let seen = self.inspect().await?;
                let running = seen.iter().filter(|s| s.running).count();
                Ok((running == a.containers as usize).then_some(seen))
            })
            .await?;
        let victim = self.agent_name(0);
        let before: Vec<Seen> = all.into_iter().filter(|s| s.host == victim).collect();
        if before.is_empty() {
            bail!("the spread put nothing on {victim}");
        }

        // Power loss: the agent and its containers die together.
        let kill_ms = now_ms();
        let t0 = Instant::now();
        if let Some(mut c) = self.agents.remove(&victim) {
            c.start_kill()?;
            let _ = c.wait().await;
        }
        let ids: Vec<String> = before.iter().map(|s| s.docker_id.clone()).collect();
        let mut kill = vec!["kill"];
        kill.extend(ids.iter().map(String::as_str));
        docker(&kill).await?;

        let want: BTreeMap<String, String> = before
            .iter()
            .map(|s| (s.instance.clone(), s.ip.clone()))
            .collect();
        let moved = self
            .wait_until("every container running elsewhere with its IP", || async {
                let seen = self.inspect().await?;
                let mut out = Vec::new();
                for (id, ip) in &want {
                    let Some(s) = seen.iter().find(|s| {
                        s.running && &s.instance == id && s.host != victim && &s.ip == ip
                    }) else {
                        return Ok(None);
                    };
                    out.push(Moved {
                        id: id.clone(),
                        ip_before: ip.clone(),
                        ip_after: s.ip.clone(),
                        from: victim.clone(),
                        to: s.host.clone(),
                    });
                }
                Ok(Some(out))
            })
            .await?;
        let seconds = t0.elapsed().as_secs_f64();
        let done_ms = kill_ms + (seconds * 1000.0) as u64;

        // Where the time went, from the server's events.
        let events = client
            .all_events(&EventQuery {
                since_ms: Some(kill_ms.saturating_sub(1_000)),
                ..Default::default()
            })
            .await?;
        let down_ms = events
            .iter()
            .find(|e| e.action == "host.down" && e.object == victim)
            .map_or(done_ms, |e| e.time_ms);
        let relocated_ms = events
            .iter()
            .filter(|e| e.action == "group.evacuate")
            .map(|e| e.time_ms)
            .max()
            .unwrap_or(down_ms);

        // The killed agent comes back under the same name.
        self.start_agent(0, a).await?;
        let stale_ids: BTreeSet<String> = ids.into_iter().collect();
        let stale_destroyed = self
            .wait_until("the restarted agent to remove its stale copies", || async {
                let seen = self.inspect().await?;
                Ok((!seen.iter().any(|s| stale_ids.contains(&s.docker_id))).then_some(()))
            })
            .await
            .is_ok();
        // Give it a few heartbeats to (wrongly) start anything.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let end = self.inspect().await?;
        let resurrected: Vec<String> = end
            .iter()
            .filter(|s| s.running && s.host == victim && want.contains_key(&s.instance))
            .map(|s| s.instance.clone())
            .collect();
        let mut by_ip: BTreeMap<&str, u32> = BTreeMap::new();
        for s in end.iter().filter(|s| s.running) {
            *by_ip.entry(s.ip.as_str()).or_default() += 1;
        }
        let duplicate_ips = by_ip
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(ip, _)| ip.to_string())
            .collect();
        let s = |ms: u64| ms as f64 / 1000.0;
        Ok(RunReport {
            run,
            victim,
            moved,
            seconds,
            detect_seconds: s(down_ms.saturating_sub(kill_ms)),
            relocate_seconds: s(relocated_ms.saturating_sub(down_ms)),
            start_seconds: s(done_ms.saturating_sub(relocated_ms)),
            duplicate_ips,
            stale_destroyed,
            resurrected,
        })
    }

    async fn start_server(&mut self) -> anyhow::Result<()> {
        let config =
            jdos_server::ServerConfig::new("127.0.0.1:0".parse()?, self.dir.join("server"));
        let handle = jdos_server::start(config)
            .await
            .context("start the server")?;
        self.addr = handle.url();
        self.token = handle
            .admin_token
            .clone()
            .context("a fresh data dir yields an admin token")?;
        self.join_token = handle.join_token.clone();
        self.server = Some(handle);
        Ok(())
    }

    async fn start_agent(&mut self, i: u32, a: &FailoverArgs) -> anyhow::Result<()> {
        let name = self.agent_name(i);
        let root = self.dir.join(&name);
        std::fs::create_dir_all(root.join("l1"))?;
        std::fs::create_dir_all(root.join("l2"))?;
        let log = match &a.agent_logs {
            // Appended: the restarted agent writes after the killed one.
            Some(dir) => {
                let path = dir.join(format!("{name}.log"));
                Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("open {}", path.display()))?,
                )
            }
            None => Stdio::null(),
        };
        let child = Command::new(&self.jdos)
            .args([
                "agent",
                "--server",
                &self.addr,
                "--join-token",
                &self.join_token,
            ])
            .args([
                "--name",
                &name,
                "--datacenter",
                &self.tag,
                "--switch",
                "sw1",
            ])
            .args([
                "--rack",
                &format!("r{i}"),
                "--driver",
                "docker",
                "--shared-engine",
            ])
            .args(["--cpu", "8", "--memory", "8GiB"])
            .arg("--l1-root")
            .arg(root.join("l1"))
            .arg("--l2-root")
            .arg(root.join("l2"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start agent {name}"))?;
        self.agents.insert(name, child);
        Ok(())
    }

    async fn wait_hosts(&self, client: &Client, n: u32) -> anyhow::Result<()> {
        self.wait_until("the agents to register", || async {
            let hosts = client.all_hosts(&Default::default()).await?;
            let ready = hosts
                .iter()
                .filter(|h| h.datacenter == self.tag && h.schedulable())
                .count();
            Ok((ready == n as usize).then_some(()))
        })
        .await
    }

    /// App, group and placement through the platform layer: the group's
    /// containers placed (spread kept) with IPs and their work orders
    /// published, as a deploy task does.
    async fn deploy(&self, a: &FailoverArgs, network: &str) -> anyhow::Result<()> {
        let st = self.server.as_ref().context("server running")?.state();
        let app = jdos_types::App {
            name: self.app(),
            owner: "bench".into(),
            department: "bench".into(),
            business_level: Default::default(),
            description: String::new(),
            labels: Default::default(),
            created_at_ms: now_ms(),
        };
        st.store()
            .put(
                &jdos_types::keys::app(&app.name),
                jdos_store::json::encode(&app)?,
                None,
            )
            .await?;
        // Spread 1/N per host; after a loss the survivors must take it all.
        let per_host = a.containers.div_ceil(a.agents - 1) + 1;
        let group = jdos_types::Group {
            app: self.app(),
            env: "bench".into(),
            name: "sleepers".into(),
            datacenter: self.tag.clone(),
            replicas: a.containers,
            template: jdos_types::group::ContainerTemplate {
                image: a.image.clone(),
                command: vec!["sleep".into(), "100000".into()],
                resources: jdos_types::Resources::new(100, 16 << 20),
                network: Some(network.to_string()),
                stop_grace_secs: Some(1),
                ..Default::default()
            },
            placement: jdos_types::group::Placement {
                max_per_host: Some(per_host),
                ..Default::default()
            },
            autoscaling: None,
        };
        st.store()
            .put(
                &jdos_types::keys::group(&group.key()),
                jdos_store::json::encode(&group)?,
                None,
            )
            .await?;
        let placed = st
            .platform()
            .place_missing(&group, group.replicas)
            .await
            .context("place the group")?;
        let ids: Vec<_> = placed.iter().map(|c| c.id.clone()).collect();
        st.platform()
            .publish(&group, &ids)
            .await
            .context("publish the work orders")?;
        Ok(())
    }

    /// Every container of the run's app as the engine shows it: one
    /// list call (labels, state and IPs are in the summary), not a `docker`
    /// process per look, so polling every 100 ms does not compete with the
    /// agents for the engine on a loaded machine.
    async fn inspect(&self) -> anyhow::Result<Vec<Seen>> {
        let filters: std::collections::HashMap<&str, Vec<String>> =
            [("label", vec![format!("jdos.app={}", self.app())])].into();
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .engine
            .list_containers(Some(options))
            .await
            .context("list the engine's containers")?;
        Ok(listed
            .into_iter()
            .map(|c| {
                let label = |k: &str| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .cloned()
                        .unwrap_or_default()
                };
                let ip = c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|nets| {
                        nets.values()
                            .filter_map(|n| n.ip_address.clone())
                            .find(|ip| !ip.is_empty())
                    })
                    .unwrap_or_default();
                Seen {
                    docker_id: c.id.clone().unwrap_or_default(),
                    instance: label("jdos.instance"),
                    host: label("jdos.host"),
                    ip,
                    running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                }
            })
            .collect())
    }

    async fn wait_until<T, F, Fut>(&self, what: &str, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(v) = f().await? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {} s waiting for {what}",
                    self.timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the processes and removes what the run created.
    async fn cleanup(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.agents) {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let filter = format!("label=jdos.app={}", self.app());
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]).await {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(&ids);
                let _ = docker(&args).await;
            }
        }
        let net_filter = format!("label=jdos.network={}-net", self.tag);
        if let Ok(ids) = docker(&["network", "ls", "-q", "--filter", &net_filter]).await {
            for id in ids.split_whitespace() {
                let _ = docker(&["network", "rm", id]).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `docker ARGS`, answering its stdout.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn now_ms() -> u64 {
    crate::output::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_flags_broken_invariants() {
        let run = RunReport {
            run: 1,
            victim: "h0".into(),
            moved: vec![Moved {
                id: "a/b/c/0".into(),
                ip_before: "10.0.0.5".into(),
                ip_after: "10.0.0.5".into(),
                from: "h0".into(),
                to: "h1".into(),
            }],
            seconds: 7.5,
            detect_seconds: 6.1,
            relocate_seconds: 0.05,
            start_seconds: 1.35,
            duplicate_ips: Vec::new(),
            stale_destroyed: true,
            resurrected: Vec::new(),
        };
        let mut r = FailoverReport {
            containers: 21,
            agents: 3,
            runs: vec![run],
            median_seconds: 7.5,
            max_seconds: 7.5,
            target_seconds: 10.0,
        };
        let text = render(&r);
        assert!(text.contains("median 7.50 s"), "{text}");
        assert!(!text.contains("NO"), "{text}");
        r.runs[0].resurrected.push("a/b/c/0".into());
        assert!(render(&r).contains("NO"));
    }
}
