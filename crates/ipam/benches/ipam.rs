//! IPAM benchmarks: the in-memory index and the start-up rebuild.
//!
//! `cargo bench -p jdos-ipam --bench ipam`; figures in docs/BENCHMARKS.md (IPAM).

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use divan::counter::ItemsCount;
use divan::Bencher;
use jdos_ipam::{AddressPool, Ipam};
use jdos_store::{json, MemoryStore, RedbStore, Store, Txn, TxnOp};
use jdos_types::{keys, GroupKey, InstanceId, IpAssignment, IpState, Network};

fn main() {
    divan::main();
}

fn network(name: &str, vlan: u16, subnet: &str) -> Network {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
    Network {
        name: name.into(),
        vlan,
        subnet,
        gateway: subnet.hosts().next().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

/// A /16 pool with `fill` percent of its addresses already assigned.
fn pool(fill: u32) -> AddressPool {
    let mut p = AddressPool::new(&network("bench", 1, "10.0.0.0/16")).unwrap();
    let n = 65_533 * fill / 100;
    for _ in 0..n {
        p.allocate().unwrap();
    }
    p
}

/// One allocate + one release (straight back to free) in the in-memory index.
#[divan::bench(args = [0, 50, 90, 99])]
fn pool_allocate_release(bencher: Bencher, fill_percent: u32) {
    let mut p = pool(fill_percent);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let ip = p.allocate().unwrap();
        p.release(divan::black_box(ip));
    });
}

/// One allocate + one release into a 5-minute quarantine, the clock moving
/// 1 ms per pair so that expired addresses are reclaimed as it goes.
#[divan::bench(args = [0, 50, 90])]
fn pool_allocate_quarantine(bencher: Bencher, fill_percent: u32) {
    let mut p = pool(fill_percent);
    let mut now = 0u64;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        now += 1;
        p.reclaim(now);
        let ip = p.allocate().unwrap();
        p.quarantine(divan::black_box(ip), now + 300_000);
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn identity(i: u32) -> InstanceId {
    let g = GroupKey::new(&format!("app{}", i % 500), "production", "web");
    InstanceId::new(&g, i)
}

/// A store holding `n` assigned addresses spread over /16 networks, written
/// in the exact format `Ipam::allocate` writes (record + owner index), in
/// batches so that the setup is quick.
fn store_with(store: Arc<dyn Store>, n: u32) -> Arc<dyn Store> {
    let rt = runtime();
    rt.block_on(async {
        let ipam = Ipam::new(store.clone());
        let nets = n.div_ceil(60_000);
        for k in 0..nets {
            ipam.create_network(network(
                &format!("net{k}"),
                100 + k as u16,
                &format!("10.{k}.0.0/16"),
            ))
            .await
            .unwrap();
        }
        let mut txn = Txn::new();
        for i in 0..n {
            let k = i / 60_000;
            let off = i % 60_000 + 2;
            let net = format!("net{k}");
            let ip = Ipv4Addr::new(10, k as u8, (off >> 8) as u8, off as u8);
            let id = identity(i);
            let rec = IpAssignment {
                network: net.clone(),
                ip,
                identity: id.clone(),
                state: IpState::Assigned,
                since_ms: 1_700_000_000_000,
            };
            txn = txn
                .and_then(TxnOp::put(keys::ip(&net, ip), json::encode(&rec).unwrap()))
                .and_then(TxnOp::put(
                    keys::ip_owner(&id),
                    format!(r#"{{"network":"{net}","ip":"{ip}"}}"#).into_bytes(),
                ));
            if txn.success.len() >= 2_000 {
                store.txn(std::mem::take(&mut txn)).await.unwrap();
            }
        }
        if !txn.success.is_empty() {
            store.txn(txn).await.unwrap();
        }
        // The setup wrote what allocate writes: a lookup through the service
        // finds a record.
        assert!(ipam.lookup(&identity(n - 1)).await.unwrap().is_some());
        store
    })
}

fn memory_150k() -> Arc<dyn Store> {
    static STORE: OnceLock<Arc<dyn Store>> = OnceLock::new();
    STORE
        .get_or_init(|| store_with(Arc::new(MemoryStore::new()), 150_000))
        .clone()
}

/// The redb file (the server's default backend), reopened for every sample so
/// that the rebuild reads from a cold store handle.
fn redb_150k() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("jdos.redb")).unwrap();
        drop(store_with(Arc::new(store), 150_000));
        dir
    })
    .path()
}

/// Cold start from a redb file holding 150,000 assigned addresses (300,000
/// keys with the identity index): open the store (which loads it), then
/// rebuild the index. The store's own share is the open.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn open_and_rebuild_150k_redb_store(bencher: Bencher) {
    let path = redb_150k().join("jdos.redb");
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(150_000usize))
        .bench_local(|| {
            let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
            let ipam = Ipam::new(store);
            assert_eq!(rt.block_on(ipam.rebuild()).unwrap(), 150_000);
            // Dropped inside the timed section (conservative): the redb file
            // must be closed before the next sample opens it again.
            drop(ipam);
        });
}

/// The IPAM part of a start-up on redb: the store is open (the server opens
/// it first for everything else), the index is rebuilt from it.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn rebuild_150k_redb_store(bencher: Bencher) {
    let path = redb_150k().join("jdos.redb");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(150_000usize))
        .bench_local(|| {
            let ipam = Ipam::new(store.clone());
            assert_eq!(rt.block_on(ipam.rebuild()).unwrap(), 150_000);
            ipam
        });
}

/// Start-up rebuild of the index from 150,000 assigned addresses in the
/// in-memory store backend.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn rebuild_150k_memory_store(bencher: Bencher) {
    let store = memory_150k();
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(150_000usize))
        .bench_local(|| {
            let ipam = Ipam::new(store.clone());
            assert_eq!(rt.block_on(ipam.rebuild()).unwrap(), 150_000);
            // Returned so that divan drops it outside the timed section: a
            // server does not free its index at start-up.
            ipam
        });
}

/// Store-backed allocate + release (to quarantine) through the service: two
/// store transactions and three reads per pair.
#[divan::bench(sample_count = 20)]
fn service_allocate_release(bencher: Bencher) {
    let rt = runtime();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ipam = Ipam::new(store);
    rt.block_on(ipam.create_network(network("svc", 2, "10.50.0.0/16")))
        .unwrap();
    let mut i = 0u32;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        i += 1;
        let id = identity(i);
        rt.block_on(async {
            ipam.allocate("svc", &id, None, u64::from(i) * 1000)
                .await
                .unwrap();
            ipam.release(&id, u64::from(i) * 1000).await.unwrap();
        });
    });
}
