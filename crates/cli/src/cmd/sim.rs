//! `jdos sim`: the real scheduler and store commit against a generated
//! estate of fake hosts. The simulation lives in `jdos_sim`; this file only
//! parses flags and prints.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use jdos_scheduler::ZonePolicy;
use jdos_sim::{E2eConfig, E2eRun, SimConfig, SimReport};

/// Flags of `jdos sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hosts in the generated estate (3 datacenters, ~40 hosts per switch).
    #[arg(long, default_value_t = 6000)]
    pub hosts: usize,
    /// Containers to place, over heavy-tailed groups.
    #[arg(long, default_value_t = 150_000)]
    pub containers: usize,
    /// With `--e2e`: apps to split the containers into, over the same heavy
    /// tail scaled to that count (the target run: `--apps 5000` of 150,000
    /// containers). Default: as many as the tail gives, about one app per
    /// 14 containers.
    #[arg(long)]
    pub apps: Option<usize>,
    /// Seed of the estate, the workload and the scheduler's tie-breaks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent schedulers committing through the store.
    #[arg(long, default_value_t = 1)]
    pub schedulers: usize,
    /// Store to commit to: `memory://` or `redb:///path/file.redb` (must be
    /// empty). Default: `memory://`; with `--e2e` an embedded redb file in
    /// a temporary directory (the server's own default store).
    #[arg(long)]
    pub store: Option<String>,
    /// End to end: an in-process server with the workflow engine, one real
    /// agent per host over a fake driver; apps are committed and deployed
    /// through `deploy` tasks, and the clock stops when every container is
    /// reported running (`e2e_seconds`).
    #[arg(long)]
    pub e2e: bool,
    /// With `--e2e`: workflow engine concurrency (tasks at once).
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// With `--e2e`: clients applying apps at once (each commits an app and
    /// its deploy tasks, then the next).
    #[arg(long, default_value_t = 8)]
    pub submitters: usize,
    /// With `--e2e`: agent heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// With `--e2e`: each simulated agent also collects host metrics every
    /// this many seconds (off by default: a fake host has no /proc of its
    /// own; this measures what the metrics pipeline costs).
    #[arg(long, value_name = "SECS")]
    pub agent_metrics_secs: Option<u64>,
    /// With `--e2e`: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print the report as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Write the topology and the final placement as JSON lines to FILE
    /// (check it with scripts/check-sim-dump.py).
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
}

/// Runs `jdos sim`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.hosts == 0 {
        bail!("--hosts must be at least 1");
    }
    if args.schedulers == 0 {
        bail!("--schedulers must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.e2e {
        return rt.block_on(run_e2e(args));
    }
    let store_url = args.store.clone().unwrap_or_else(|| "memory://".into());
    rt.block_on(async {
        let store = open_empty(&store_url).await?;
        let config = SimConfig {
            hosts: args.hosts,
            containers: args.containers,
            seed: args.seed,
            schedulers: args.schedulers,
            store_url: store_url.clone(),
            ..SimConfig::default()
        };
        let run = jdos_sim::run(&config, Arc::clone(&store)).await?;
        if let Some(path) = &args.dump {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create dump file {}", path.display()))?;
            let mut w = BufWriter::new(file);
            jdos_sim::dump::write_dump(&run, store.as_ref(), &ZonePolicy::default(), &mut w)
                .await?;
            w.flush()
                .with_context(|| format!("cannot write dump file {}", path.display()))?;
        }
        print_summary(&run.report, args.dump.as_deref());
        if args.json {
            println!("{}", serde_json::to_string(&run.report)?);
        }
        Ok(())
    })
}

/// Opens `url` and checks that it is empty.
async fn open_empty(url: &str) -> anyhow::Result<Arc<dyn jdos_store::Store>> {
    let store = jdos_store::open(url)
        .await
        .with_context(|| format!("cannot open store {url}"))?;
    if store.revision().await? != 0 {
        bail!("store {url} is not empty: the simulation needs a fresh store");
    }
    Ok(store)
}

async fn run_e2e(args: Args) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.heartbeat_ms == 0 {
        bail!("--heartbeat-ms must be at least 1");
    }
    // The temporary directory lives until the run ends.
    let (_dir, url) = match &args.store {
        Some(u) => (None, u.clone()),
        None => {
            let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
            let url = format!("redb://{}", dir.path().join("jdos.redb").display());
            (Some(dir), url)
        }
    };
    let store = open_empty(&url).await?;
    let apps = args.apps.filter(|n| *n > 0);
    let config = E2eConfig {
        hosts: args.hosts,
        containers: args.containers,
        apps,
        seed: args.seed,
        store_url: if args.store.is_some() {
            url.clone()
        } else {
            "redb (temporary directory)".into()
        },
        concurrency: args.concurrency,
        submitters: args.submitters,
        heartbeat: std::time::Duration::from_millis(args.heartbeat_ms),
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        agent_metrics: args
            .agent_metrics_secs
            .map(|s| std::time::Duration::from_secs(s.max(1))),
    };
    let run = jdos_sim::run_e2e(&config, store).await?;
    print_e2e(&run);
    if args.json {
        println!("{}", serde_json::to_string(&run.report)?);
    }
    if run.report.e2e_timed_out == Some(true) {
        bail!(
            "not all containers ran within {} s ({} of {})",
            args.timeout_secs,
            run.report.containers_running.unwrap_or(0),
            run.report.containers_requested
        );
    }
    Ok(())
}

fn print_e2e(run: &E2eRun) {
    let r = &run.report;
    let o = |v: Option<f64>| v.unwrap_or(0.0);
    println!(
        "estate     {} hosts (one agent each, fake driver), {} networks",
        r.hosts,
        run.estate.networks.len()
    );
    println!(
        "workload   {} containers in {} groups of {} apps on {}",
        r.containers_requested,
        r.groups,
        r.apps.unwrap_or(0),
        r.store
    );
    println!(
        "e2e        {:.2} s from first submit to all running ({} running): {:.0} containers/s; submits took {:.2} s",
        o(r.e2e_seconds),
        r.containers_running.unwrap_or(0),
        o(r.containers_per_sec),
        o(r.submit_seconds)
    );
    println!(
        "tasks      {} ({} succeeded, {} failed); duration p50 {:.2} s, p99 {:.2} s; {:.1} writes per task",
        r.tasks.unwrap_or(0),
        r.tasks_succeeded.unwrap_or(0),
        r.tasks_failed.unwrap_or(0),
        o(r.p50_task_seconds),
        o(r.p99_task_seconds),
        o(r.task_writes_mean)
    );
    println!("cpu        {:.2} s over the run", r.cpu_seconds);
    if r.violations == 0 {
        println!(
            "check      0 violations (independent pass over the store; {} distinct IPs)",
            run.distinct_ips
        );
    } else {
        println!(
            "check      {} VIOLATIONS: {:?}",
            r.violations, r.violation_kinds
        );
    }
    println!("memory     peak RSS {} MiB", r.peak_rss_bytes >> 20);
}

fn print_summary(r: &SimReport, dump: Option<&std::path::Path>) {
    println!(
        "estate     {} hosts, {} switches, {} racks, 3 datacenters",
        r.hosts, r.switches, r.racks
    );
    println!(
        "workload   {} containers in {} groups",
        r.containers_requested, r.groups
    );
    println!(
        "placed     {} ({} unplaceable) with {} scheduler(s) on {}",
        r.containers_placed, r.unplaceable, r.schedulers, r.store
    );
    println!(
        "time       {:.3} s wall, {:.2} s cpu: {:.0} placements/s",
        r.seconds, r.cpu_seconds, r.placements_per_sec
    );
    println!(
        "latency    per placement p50 {:.1} µs, p99 {:.1} µs; per request p99 {:.0} µs, max {:.0} µs",
        r.p50_placement_us, r.p99_placement_us, r.p99_request_us, r.max_request_us
    );
    println!("conflicts  {} retried", r.conflicts_retried);
    println!(
        "fill       cpu {:.1}%, memory {:.1}%",
        r.cpu_utilization * 100.0,
        r.memory_utilization * 100.0
    );
    if r.violations == 0 {
        println!("check      0 violations (independent pass over the store)");
    } else {
        println!(
            "check      {} VIOLATIONS: {:?}",
            r.violations, r.violation_kinds
        );
    }
    println!("memory     peak RSS {} MiB", r.peak_rss_bytes >> 20);
    if let Some(p) = dump {
        println!("dump       {}", p.display());
    }
}
