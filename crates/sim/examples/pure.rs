//! `cargo run --release -p jdos-sim --example pure -- [hosts] [containers] [seed]`:
//! the pure placement loop alone (no store), to separate scheduling cost
//! from commit cost.

use std::time::Instant;

use jdos_scheduler::{Scheduler, SchedulerConfig, Snapshot, ZonePolicy};
use jdos_sim::{workload, Estate, EstateSpec, WorkloadSpec};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hosts = args.first().copied().unwrap_or(6000);
    let containers = args.get(1).copied().unwrap_or(150_000);
    let seed = args.get(2).copied().unwrap_or(1) as u64;
    let estate = Estate::generate(&EstateSpec { hosts, seed });
    let policy = ZonePolicy::default();
    let groups = workload::generate(
        &WorkloadSpec {
            containers,
            seed,
            max_fill_percent: 65,
            apps: None,
        },
        &estate,
        &policy,
    );
    let mut snap = Snapshot::build(&estate.hosts, [], &estate.networks);
    let mut sched = Scheduler::new(SchedulerConfig {
        zone_policy: policy,
        seed: 1,
    });
    let t = Instant::now();
    let (mut placed, mut unplaced) = (0usize, 0u32);
    for g in &groups {
        let p = sched.place(&mut snap, &g.request);
        placed += p.placements.len();
        if let Some(u) = &p.unplaced {
            unplaced += u.replicas;
            if std::env::var_os("EXPLAIN").is_some() {
                let r = &g.request;
                eprintln!(
                    "{} dc={} n={} level={:?} net={:?} res={}m/{}GiB l2={} caps={:?}: {} unplaced: {}",
                    r.group, r.datacenter, r.replicas, r.business_level, r.network_zone,
                    r.resources.cpu_millis, r.resources.memory_bytes >> 30, r.resources.disk.l2 >> 30,
                    p.caps, u.replicas, u.explanation
                );
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "groups {} placed {placed} unplaced {unplaced} in {s:.3}s = {:.0}/s",
        groups.len(),
        placed as f64 / s
    );
}
