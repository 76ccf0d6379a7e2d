//! `jdos sim`: the real scheduler and store commit against a generated
//! estate of fake hosts. The simulation lives in `jdos_sim`; this file only
//! parses flags and prints.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use jdos_scheduler::ZonePolicy;
use jdos_sim::{SimConfig, SimReport};

/// Flags of `jdos sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hosts in the generated estate (3 datacenters, ~40 hosts per switch).
    #[arg(long, default_value_t = 6000)]
    pub hosts: usize,
    /// Containers to place, over heavy-tailed groups.
    #[arg(long, default_value_t = 150_000)]
    pub containers: usize,
    /// Seed of the estate, the workload and the scheduler's tie-breaks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent schedulers committing through the store.
    #[arg(long, default_value_t = 1)]
    pub schedulers: usize,
    /// Store to commit to: `memory://` or `redb:///path/file.redb` (must be empty).
    #[arg(long, default_value = "memory://")]
    pub store: String,
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
    rt.block_on(async {
        let store = jdos_store::open(&args.store)
            .await
            .with_context(|| format!("cannot open store {}", args.store))?;
        if store.revision().await? != 0 {
            bail!(
                "store {} is not empty: the simulation needs a fresh store",
                args.store
            );
        }
        let config = SimConfig {
            hosts: args.hosts,
            containers: args.containers,
            seed: args.seed,
            schedulers: args.schedulers,
            store_url: args.store.clone(),
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
