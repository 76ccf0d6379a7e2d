//! The core placement loop: one request of N replicas against an estate of
//! H hosts (40 per switch, 20 per rack, three datacenters), spread policy,
//! default caps. `cargo bench -p jdos-scheduler --bench place`.

use divan::Bencher;
use jdos_scheduler::{GroupRequest, Scheduler, SchedulerConfig, Snapshot};
use jdos_types::group::Placement;
use jdos_types::resources::GIB;
use jdos_types::{BusinessLevel, GroupKey, Host, HostState, Labels, Resources};

fn main() {
    divan::main();
}

fn estate(n: usize) -> Snapshot {
    let hosts: Vec<Host> = (0..n)
        .map(|i| {
            let dc = i % 3;
            let sw = i / 3 / 40;
            let rack = i / 3 / 20;
            Host {
                name: format!("h{i:05}"),
                datacenter: format!("dc{dc}"),
                switch: format!("dc{dc}-sw{sw}"),
                rack: format!("dc{dc}-r{rack}"),
                capacity: Resources::new(48_000, 256 * GIB),
                resource_zone: "general".into(),
                labels: Labels::new(),
                state: HostState::Ready,
                cordoned: false,
                epoch: 1,
                last_heartbeat_ms: 0,
                registered_at_ms: 0,
                driver: "simulated".into(),
            }
        })
        .collect();
    let mut s = Snapshot::build(&hosts, [], &[]);
    // Half-full hosts, unevenly, so the fit scores differ.
    for i in 0..n as u32 {
        let k = (i as u64 * 7919) % 24;
        s.reserve(i, &Resources::new(k * 1000, k * 4 * GIB));
    }
    s
}

fn request(replicas: u32) -> GroupRequest {
    GroupRequest {
        group: GroupKey::new("bench", "production", "web"),
        datacenter: "dc1".into(),
        replicas,
        resources: Resources::new(1000, 4 * GIB),
        business_level: BusinessLevel::Normal,
        network_zone: None,
        network: None,
        placement: Placement::default(),
        existing: Vec::new(),
    }
}

#[divan::bench(args = [1000, 6000, 12000], consts = [1, 25, 500])]
fn place<const N: u32>(bencher: Bencher, hosts: usize) {
    let snap = estate(hosts);
    let req = request(N);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    bencher
        .counter(divan::counter::ItemsCount::new(N))
        .with_inputs(|| snap.clone())
        .bench_local_refs(|s| sched.place(s, &req));
}
