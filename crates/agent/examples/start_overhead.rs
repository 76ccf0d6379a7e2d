//! Start overhead of the agent vs raw `docker run` (issue #5's target: jdos
//! creating 50 containers within 1.15 × the wall time of 50 raw
//! `docker run`s at the same parallelism, on the same engine, in one run).
//!
//! The jdos side is what an agent does for a batch of new assignments: one
//! reconcile pass — list the host's containers, plan against the
//! assignments, run the actions through the [`Executor`] (realize the
//! network, create, start; `--parallelism` at once) — and a listing that
//! confirms every container runs. The raw side runs `docker run -d` with the
//! same settings (network, static IP, cgroup limits, log rotation) at the
//! same parallelism. Rounds alternate which side goes first.
//!
//! ```text
//! cargo run --release -p jdos-agent --example start_overhead -- \
//!     [--count 50] [--parallelism 16] [--rounds 3]
//! ```
//!
//! Needs the Docker engine and `jdos-busybox:latest`
//! (`scripts/build-test-image.sh`). Uses the network `jdos-bench-agent-start`
//! (10.213.173.0/24) and removes everything it created.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jdos_agent::plan::{plan, PlanContext, PlanMode, Trackers, Wanted};
use jdos_agent::Executor;
use jdos_runtime::{
    BackoffPolicy, DestroyOptions, DockerConfig, DockerDriver, Driver, LabelFilter,
    NetworkRealization, RuntimeState,
};
use jdos_types::agent::Assignment;
use jdos_types::container::DesiredState;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::MIB;
use jdos_types::{Container, ContainerPhase, InstanceId, Network, Resources};

const IMAGE: &str = "jdos-busybox:latest";
const HOST: &str = "bench-agent-host";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn network() -> Network {
    Network {
        name: "bench-agent-start".into(),
        vlan: 173,
        subnet: "10.213.173.0/24".parse().unwrap(),
        gateway: "10.213.173.1".parse().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

fn assignments(n: usize, net: &Network) -> BTreeMap<InstanceId, Wanted> {
    let template = ContainerTemplate {
        image: IMAGE.into(),
        command: vec!["sleep".into(), "3600".into()],
        env: Default::default(),
        resources: Resources::new(100, 32 * MIB),
        ports: vec![],
        network_zone: None,
        network: Some(net.name.clone()),
        isolation: Default::default(),
        storage: Default::default(),
        health: None,
        stop_grace_secs: None,
        hooks: Default::default(),
    };
    (0..n)
        .map(|i| {
            let id: InstanceId = format!("benchagent/b/g/{i}").parse().unwrap();
            let a = Assignment {
                container: Container {
                    id: id.clone(),
                    datacenter: "dc".into(),
                    host: Some(HOST.into()),
                    host_epoch: 1,
                    network: Some(net.name.clone()),
                    ip: Some(format!("10.213.173.{}", 10 + i).parse().unwrap()),
                    image: IMAGE.into(),
                    resources: template.resources,
                    desired: DesiredState::Running,
                    phase: ContainerPhase::Scheduled,
                    restarts: 0,
                    message: String::new(),
                    created_at_ms: 0,
                    updated_at_ms: 0,
                },
                template: template.clone(),
                network: Some(net.clone()),
                generation: 0,
                snapshot: None,
            };
            let w = Wanted::from_assignment(&a, HOST, &NetworkRealization::bridge());
            (id, w)
        })
        .collect()
}

async fn run_jdos(
    d: &std::sync::Arc<DockerDriver>,
    wanted: &BTreeMap<InstanceId, Wanted>,
    par: usize,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let exec = Executor::new(d.clone(), NetworkRealization::bridge(), par);
    let observed = d
        .list(&LabelFilter::host(HOST))
        .await?
        .into_iter()
        .filter_map(|s| Some((s.instance.clone()?, s)))
        .collect();
    let mut trackers = Trackers::new();
    let ctx = PlanContext {
        now: 0,
        mode: PlanMode::Normal,
        policy: BackoffPolicy::default(),
    };
    let actions = plan(wanted, &observed, &mut trackers, &ctx);
    anyhow::ensure!(actions.len() == wanted.len(), "planned {}", actions.len());
    let outcomes = exec.run_all(actions).await;
    for o in &outcomes {
        if let Some(e) = &o.error {
            anyhow::bail!("{} {}: {e}", o.kind, o.id);
        }
    }
    let running = d
        .list(&LabelFilter::host(HOST))
        .await?
        .iter()
        .filter(|s| s.state == RuntimeState::Running)
        .count();
    let took = t.elapsed();
    anyhow::ensure!(running == wanted.len(), "only {running} running");
    Ok(took)
}

async fn run_raw(n: usize, par: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            // The settings DockerDriver applies to this spec.
            let out = tokio::process::Command::new("docker")
                .args(["run", "-d", "--name", &format!("bench-agent-raw-{i}")])
                .args(["--network", "jdos-bench-agent-start"])
                .args(["--ip", &format!("10.213.173.{}", 100 + i)])
                .args([
                    "--cpu-shares",
                    "102",
                    "--memory",
                    "32m",
                    "--memory-swap",
                    "32m",
                ])
                .args(["--pids-limit", "4096", "--ulimit", "nofile=16384:16384"])
                .args(["--restart", "no", "--stop-timeout", "10"])
                .args(["--log-driver", "json-file", "--log-opt", "max-size=10m"])
                .args(["--log-opt", "max-file=3"])
                .args(["--label", "jdos.bench=agent-raw"])
                .args([IMAGE, "sleep", "3600"])
                .output()
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "docker run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        })
        .buffer_unordered(par)
        .collect()
        .await;
    let took = t.elapsed();
    for r in results {
        r?;
    }
    Ok(took)
}

async fn cleanup(d: &DockerDriver) -> anyhow::Result<()> {
    let mine = d.list(&LabelFilter::host(HOST)).await?;
    let ids: Vec<InstanceId> = mine.into_iter().filter_map(|s| s.instance).collect();
    let r: Vec<_> = futures_util::stream::iter(ids.iter())
        .map(|id| d.destroy(id, DestroyOptions::purge()))
        .buffer_unordered(8)
        .collect()
        .await;
    for x in r {
        x?;
    }
    let raw = tokio::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=jdos.bench=agent-raw"])
        .output()
        .await?;
    let ids: Vec<String> = String::from_utf8_lossy(&raw.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        tokio::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output()
            .await?;
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = arg("--count", 50).min(80);
    let par = arg("--parallelism", 16).max(1);
    let rounds = arg("--rounds", 3).max(1);
    let d = std::sync::Arc::new(DockerDriver::connect(DockerConfig::default()).await?);
    let net = network();
    let r = NetworkRealization::bridge();
    cleanup(&d).await?;
    d.ensure_network(&net, &r).await?;
    let wanted = assignments(n, &net);
    println!(
        "engine API {}, {} cpus; {n} containers per side, parallelism {par}, {rounds} rounds",
        d.api_version(),
        d.ncpu()
    );
    println!("round  first  agent_s  raw_s  ratio");
    let (mut jd, mut rw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let jdos_first = round % 2 == 0;
        let (j, w) = if jdos_first {
            let j = run_jdos(&d, &wanted, par).await?;
            cleanup(&d).await?;
            (j, run_raw(n, par).await?)
        } else {
            let w = run_raw(n, par).await?;
            cleanup(&d).await?;
            (run_jdos(&d, &wanted, par).await?, w)
        };
        cleanup(&d).await?;
        let ratio = j.as_secs_f64() / w.as_secs_f64();
        println!(
            "{round:>5}  {:>5}  {:>7.2}  {:>5.2}  {ratio:>5.3}",
            if jdos_first { "agent" } else { "raw" },
            j.as_secs_f64(),
            w.as_secs_f64()
        );
        jd.push(j.as_secs_f64());
        rw.push(w.as_secs_f64());
        ratios.push(ratio);
    }
    println!(
        "median: agent {:.2} s, raw docker run {:.2} s, ratio {:.3} (target <= 1.15)",
        median(&mut jd),
        median(&mut rw),
        median(&mut ratios),
    );
    // The engine releases endpoints of removed containers asynchronously.
    for attempt in 0..10 {
        match d.remove_network(&net.name, &r).await {
            Err(e) if e.is_conflict() && attempt < 9 => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => {
                eprintln!("warning: could not remove the bench network: {e}");
                break;
            }
            Ok(()) => break,
        }
    }
    Ok(())
}
