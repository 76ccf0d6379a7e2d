//! Start overhead of jdos vs raw `docker run`: the wall time to create and
//! start N containers through `DockerDriver` and the wall time of N
//! `docker run -d` processes with the same settings (network, static IP,
//! cgroup limits, labels, log rotation), at the same parallelism, on the same
//! engine, in one run. Rounds alternate which side goes first.
//!
//! ```text
//! cargo run --release -p jdos-runtime --example start_overhead -- \
//!     [--count 50] [--parallelism 10] [--rounds 3]
//! ```
//!
//! Needs the Docker engine and `jdos-busybox:latest`
//! (`scripts/build-test-image.sh`). Uses the network `jdos-bench-start`
//! (10.213.250.0/24) and removes everything it created.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jdos_runtime::{
    ContainerSpec, DestroyOptions, DockerConfig, DockerDriver, Driver, LabelFilter,
    NetworkAttachment, NetworkRealization,
};
use jdos_types::resources::MIB;
use jdos_types::{InstanceId, Network, Resources};

const IMAGE: &str = "jdos-busybox:latest";
const APP: &str = "bench";

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
        name: "bench-start".into(),
        vlan: 250,
        subnet: "10.213.250.0/24".parse().unwrap(),
        gateway: "10.213.250.1".parse().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

fn spec(i: usize, net: &Network) -> ContainerSpec {
    let id: InstanceId = format!("{APP}/b/g/{i}").parse().unwrap();
    let mut s = ContainerSpec::new(id, IMAGE, "bench-host", Resources::new(100, 32 * MIB));
    s.command = vec!["sleep".into(), "3600".into()];
    s.network = Some(NetworkAttachment::new(
        net,
        &NetworkRealization::bridge(),
        Ipv4Addr::new(10, 213, 250, 10 + i as u8),
    ));
    s
}

async fn run_jdos(
    d: &DockerDriver,
    net: &Network,
    n: usize,
    par: usize,
) -> anyhow::Result<Duration> {
    let specs: Vec<ContainerSpec> = (0..n).map(|i| spec(i, net)).collect();
    let t = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(specs.iter())
        .map(|s| async move {
            d.create(s).await?;
            d.start(&s.instance).await
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

async fn run_raw(n: usize, par: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            // The same settings DockerDriver applies to a default spec.
            let out = tokio::process::Command::new("docker")
                .args(["run", "-d", "--name", &format!("bench-raw-{i}")])
                .args(["--network", "jdos-bench-start"])
                .args(["--ip", &format!("10.213.250.{}", 100 + i)])
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
                .args([
                    "--log-driver",
                    "json-file",
                    "--log-opt",
                    "max-size=10m",
                    "--log-opt",
                    "max-file=3",
                ])
                .args([
                    "--label",
                    "jdos.bench=raw",
                    "--label",
                    &format!("jdos.index={i}"),
                ])
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
    let mine = d.list(&LabelFilter::all().with("jdos.app", APP)).await?;
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
        .args(["ps", "-aq", "--filter", "label=jdos.bench=raw"])
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
    let n = arg("--count", 50).min(140);
    let par = arg("--parallelism", 10).max(1);
    let rounds = arg("--rounds", 3).max(1);
    let process_start = Instant::now();
    let d = DockerDriver::connect(DockerConfig::default()).await?;
    let net = network();
    let r = NetworkRealization::bridge();
    cleanup(&d).await?;
    d.ensure_network(&net, &r).await?;
    println!(
        "engine API {}, {} cpus; {n} containers per side, parallelism {par}, {rounds} rounds",
        d.api_version(),
        d.ncpu()
    );
    println!("round  first  jdos_s  raw_s  ratio");
    let (mut jd, mut rw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let jdos_first = round % 2 == 0;
        let (j, w) = if jdos_first {
            let j = run_jdos(&d, &net, n, par).await?;
            cleanup(&d).await?;
            let w = run_raw(n, par).await?;
            (j, w)
        } else {
            let w = run_raw(n, par).await?;
            cleanup(&d).await?;
            let j = run_jdos(&d, &net, n, par).await?;
            (j, w)
        };
        cleanup(&d).await?;
        let ratio = j.as_secs_f64() / w.as_secs_f64();
        println!(
            "{round:>5}  {:>5}  {:>6.2}  {:>5.2}  {ratio:>5.3}",
            if jdos_first { "jdos" } else { "raw" },
            j.as_secs_f64(),
            w.as_secs_f64()
        );
        jd.push(j.as_secs_f64());
        rw.push(w.as_secs_f64());
        ratios.push(ratio);
    }
    d.remove_network(&net.name, &r).await?;
    println!(
        "median: jdos {:.2} s, raw docker run {:.2} s, ratio {:.3} (target <= 1.15); whole process {:.1} s",
        median(&mut jd),
        median(&mut rw),
        median(&mut ratios),
        process_start.elapsed().as_secs_f64()
    );
    Ok(())
}
