//! The platform path of one deploy step: `place_missing` + `publish` of a
//! 30-replica group (scheduler on the kept-fresh snapshot, one IPAM batch,
//! records + work orders + allocations + placement record + event in one
//! transaction, then the work orders in a second), on the in-memory store
//! and on redb (fsync per commit). 600 hosts in one datacenter (5 switches
//! × 10 racks × 12 hosts), one /16 network; every iteration places a new
//! group. `cargo bench -p jdos-server --bench platform`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use divan::Bencher;
use jdos_server::AppState;
use jdos_store::{json, Store};
use jdos_types::api::RegisterHost;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::GIB;
use jdos_types::{keys, App, BusinessLevel, Group, InstanceId, Network, Resources};

fn main() {
    divan::main();
}

const REPLICAS: u32 = 30;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn setup(store: Arc<dyn Store>) -> AppState {
    let st = AppState::new(store.clone());
    let caller = jdos_server::auth::Caller::system("bench");
    let mut switches = Vec::new();
    for s in 0..5 {
        let sw = format!("sw{s}");
        switches.push(sw.clone());
        for r in 0..10 {
            for h in 0..12 {
                let req = RegisterHost {
                    name: format!("h-{s}-{r}-{h}"),
                    datacenter: "dc1".into(),
                    switch: sw.clone(),
                    rack: format!("{sw}-r{r}"),
                    capacity: Resources::new(64_000, 256 * GIB),
                    resource_zone: None,
                    labels: Default::default(),
                    driver: Some("fake".into()),
                };
                jdos_server::api::hosts::register(&st, &caller, req)
                    .await
                    .unwrap();
            }
        }
    }
    st.ipam()
        .create_network(Network {
            name: "net1".into(),
            vlan: 100,
            subnet: "10.64.0.0/16".parse().unwrap(),
            gateway: "10.64.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches,
            quarantine_secs: 300,
        })
        .await
        .unwrap();
    let app = App {
        name: "shop".into(),
        owner: "alice".into(),
        department: "retail".into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: Default::default(),
        created_at_ms: 0,
    };
    store
        .put(&keys::app("shop"), json::encode(&app).unwrap(), None)
        .await
        .unwrap();
    st
}

fn group(n: u64) -> Group {
    Group {
        app: "shop".into(),
        env: "production".into(),
        name: format!("g{n}"),
        datacenter: "dc1".into(),
        replicas: REPLICAS,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(100, GIB / 8),
            ..Default::default()
        },
        placement: Default::default(),
        autoscaling: None,
    }
}

fn run(bencher: Bencher, url: &str) {
    let rt = rt();
    let store = rt.block_on(jdos_store::open(url)).unwrap();
    let st = rt.block_on(setup(store));
    let next = AtomicU64::new(0);
    // Warm the snapshot (first use loads it).
    rt.block_on(st.platform().place_missing(&group(u64::MAX), 1))
        .unwrap();
    bencher.bench_local(|| {
        let g = group(next.fetch_add(1, Ordering::Relaxed));
        rt.block_on(async {
            let cs = st.platform().place_missing(&g, REPLICAS).await.unwrap();
            let ids: Vec<InstanceId> = cs.iter().map(|c| c.id.clone()).collect();
            st.platform().publish(&g, &ids).await.unwrap();
        })
    });
}

#[divan::bench(sample_count = 30, sample_size = 1)]
fn place_and_publish_30_memory(bencher: Bencher) {
    run(bencher, "memory://");
}

#[divan::bench(sample_count = 30, sample_size = 1)]
fn place_and_publish_30_redb(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("bench.redb").display());
    run(bencher, &url);
}

/// Eight groups placed and published at once (as the workflow engine runs
/// tasks of different apps in parallel): placements plan on separate
/// snapshots and their commits share the store's group commit.
fn run_concurrent(bencher: Bencher, url: &str) {
    let rt = rt();
    let store = rt.block_on(jdos_store::open(url)).unwrap();
    let st = rt.block_on(setup(store));
    let next = Arc::new(AtomicU64::new(0));
    rt.block_on(st.platform().place_missing(&group(u64::MAX), 1))
        .unwrap();
    bencher.bench_local(|| {
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let st = st.clone();
                let g = group(next.fetch_add(1, Ordering::Relaxed));
                set.spawn(async move {
                    let cs = st.platform().place_missing(&g, REPLICAS).await.unwrap();
                    let ids: Vec<InstanceId> = cs.iter().map(|c| c.id.clone()).collect();
                    st.platform().publish(&g, &ids).await.unwrap();
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        })
    });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn place_and_publish_30x8_concurrent_memory(bencher: Bencher) {
    run_concurrent(bencher, "memory://");
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn place_and_publish_30x8_concurrent_redb(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("bench.redb").display());
    run_concurrent(bencher, &url);
}
