//! Store benchmarks: put (sequential and a 150,000-write concurrent burst),
//! CAS transactions, and listing 150,000 records (whole and paginated).
//!
//! Run: `cargo bench -p jdos-store --bench store`. Figures go to
//! docs/BENCHMARKS.md (state store).

use std::sync::{Arc, LazyLock};

use jdos_store::{Compare, MemoryStore, RangeOptions, RedbStore, Store, Txn, TxnOp};
use tempfile::TempDir;
use tokio::runtime::Runtime;

fn main() {
    divan::main();
}

const BURST: usize = 150_000;
const RECORDS: usize = 150_000;

static RT: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

/// A record about the size of a serialized host or container (~300 bytes).
fn value(i: usize) -> Vec<u8> {
    format!(
        r#"{{"name":"host-{i:06}","datacenter":"dc1","switch":"sw-{}","rack":"rack-{}","capacity":{{"cpu_millis":64000,"memory_bytes":274877906944,"disk":{{"l1":1920000000000,"l2":8000000000000}}}},"labels":{{"zone":"a","gpu":"none"}},"state":"ready","allocated":{{"cpu_millis":{},"memory_bytes":{}}}}}"#,
        i % 16,
        i % 256,
        i % 64000,
        i * 4096
    )
    .into_bytes()
}

fn fresh_redb() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("bench.redb")).expect("open");
    (dir, Arc::new(store))
}

fn fresh_memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// `n` concurrent puts, one task each; returns when all were acknowledged.
async fn burst(store: &Arc<dyn Store>, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.put(&format!("/bench/burst/{i:07}"), value(i), None)
                    .await
                    .expect("put");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

async fn fill(store: &Arc<dyn Store>, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut txn = Txn::new();
        for &i in chunk {
            txn = txn.and_then(TxnOp::put(format!("/bench/list/{i:07}"), value(i)));
        }
        store.txn(txn).await.expect("txn");
    }
}

mod put_sequential {
    use super::*;

    /// One put at a time: each waits for its own commit (an fsync on redb).
    #[divan::bench(sample_count = 20, sample_size = 10)]
    fn redb(b: divan::Bencher) {
        let (_dir, s) = fresh_redb();
        let mut i = 0;
        b.counter(divan::counter::ItemsCount::new(1usize))
            .bench_local(|| {
                i += 1;
                RT.block_on(s.put(&format!("/bench/seq/{i:07}"), value(i), None))
                    .expect("put")
            });
    }

    /// One put at a time, in memory.
    #[divan::bench]
    fn memory(b: divan::Bencher) {
        let s = fresh_memory();
        let mut i = 0;
        b.counter(divan::counter::ItemsCount::new(1usize))
            .bench_local(|| {
                i += 1;
                RT.block_on(s.put(&format!("/bench/seq/{i:07}"), value(i), None))
                    .expect("put")
            });
    }
}

mod put_burst_150k {
    use super::*;

    /// 150,000 concurrent puts into a fresh redb file (group commit).
    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn redb(b: divan::Bencher) {
        b.counter(divan::counter::ItemsCount::new(BURST))
            .with_inputs(fresh_redb)
            .bench_local_values(|(dir, s)| {
                RT.block_on(burst(&s, BURST));
                (dir, s)
            });
    }

    /// 150,000 concurrent puts into a fresh memory store.
    #[divan::bench(sample_count = 3, sample_size = 1)]
    fn memory(b: divan::Bencher) {
        b.counter(divan::counter::ItemsCount::new(BURST))
            .with_inputs(fresh_memory)
            .bench_local_values(|s| {
                RT.block_on(burst(&s, BURST));
                s
            });
    }
}

async fn cas_increment(s: &Arc<dyn Store>, key: &str) {
    loop {
        let kv = s.get(key).await.expect("get");
        let (n, rev) = kv
            .map(|kv| {
                let n: u64 = std::str::from_utf8(&kv.value)
                    .expect("utf8")
                    .parse()
                    .expect("n");
                (n, kv.mod_revision)
            })
            .unwrap_or((0, 0));
        let r = s
            .txn(
                Txn::new()
                    .when(Compare::mod_revision(key, rev))
                    .and_then(TxnOp::put(key, (n + 1).to_string())),
            )
            .await
            .expect("txn");
        if r.succeeded {
            return;
        }
    }
}

/// 64 tasks × 100 get-then-CAS increments, each task on its own key.
async fn cas_parallel(s: &Arc<dyn Store>) {
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = format!("/bench/cas/{t}");
                for _ in 0..100 {
                    cas_increment(&s, &key).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

mod cas {
    use super::*;

    /// One get + CAS txn at a time on one counter (redb: one fsync each).
    #[divan::bench(sample_count = 20, sample_size = 10)]
    fn redb_sequential(b: divan::Bencher) {
        let (_dir, s) = fresh_redb();
        b.counter(divan::counter::ItemsCount::new(1usize))
            .bench_local(|| RT.block_on(cas_increment(&s, "/bench/cas")));
    }

    /// One get + CAS txn at a time on one counter, in memory.
    #[divan::bench]
    fn memory_sequential(b: divan::Bencher) {
        let s = fresh_memory();
        b.counter(divan::counter::ItemsCount::new(1usize))
            .bench_local(|| RT.block_on(cas_increment(&s, "/bench/cas")));
    }

    /// 6,400 CAS increments from 64 concurrent tasks (group commit).
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn redb_64_tasks(b: divan::Bencher) {
        let (_dir, s) = fresh_redb();
        b.counter(divan::counter::ItemsCount::new(6400usize))
            .bench_local(|| RT.block_on(cas_parallel(&s)));
    }

    /// 6,400 CAS increments from 64 concurrent tasks, in memory.
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_64_tasks(b: divan::Bencher) {
        let s = fresh_memory();
        b.counter(divan::counter::ItemsCount::new(6400usize))
            .bench_local(|| RT.block_on(cas_parallel(&s)));
    }
}

static LIST_MEMORY: LazyLock<Arc<dyn Store>> = LazyLock::new(|| {
    let s = fresh_memory();
    RT.block_on(fill(&s, RECORDS));
    s
});

static LIST_REDB: LazyLock<(TempDir, Arc<dyn Store>)> = LazyLock::new(|| {
    let (d, s) = fresh_redb();
    RT.block_on(fill(&s, RECORDS));
    (d, s)
});

async fn list_all(s: &Arc<dyn Store>) -> usize {
    let page = s
        .range("/bench/list/", RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(page.kvs.len(), RECORDS);
    page.kvs.len()
}

async fn list_paged(s: &Arc<dyn Store>, limit: usize) -> usize {
    let mut n = 0;
    let mut after = None;
    loop {
        let page = s
            .range(
                "/bench/list/",
                RangeOptions {
                    start_after: after,
                    limit,
                    keys_only: false,
                },
            )
            .await
            .expect("range");
        n += page.kvs.len();
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(n, RECORDS);
    n
}

mod list_150k {
    use super::*;

    /// All 150,000 records in one range read (memory backend).
    #[divan::bench(sample_count = 10)]
    fn memory_full(b: divan::Bencher) {
        let s = &*LIST_MEMORY;
        b.counter(divan::counter::ItemsCount::new(RECORDS))
            .bench(|| RT.block_on(list_all(s)));
    }

    /// All 150,000 records in pages of 1,000 (memory backend).
    #[divan::bench(sample_count = 10)]
    fn memory_pages_of_1000(b: divan::Bencher) {
        let s = &*LIST_MEMORY;
        b.counter(divan::counter::ItemsCount::new(RECORDS))
            .bench(|| RT.block_on(list_paged(s, 1000)));
    }

    /// All 150,000 records in one range read (redb backend).
    #[divan::bench(sample_count = 10)]
    fn redb_full(b: divan::Bencher) {
        let s = &LIST_REDB.1;
        b.counter(divan::counter::ItemsCount::new(RECORDS))
            .bench(|| RT.block_on(list_all(s)));
    }

    /// All 150,000 records in pages of 1,000 (redb backend).
    #[divan::bench(sample_count = 10)]
    fn redb_pages_of_1000(b: divan::Bencher) {
        let s = &LIST_REDB.1;
        b.counter(divan::counter::ItemsCount::new(RECORDS))
            .bench(|| RT.block_on(list_paged(s, 1000)));
    }

    /// Keys only, in pages of 1,000 (memory backend).
    #[divan::bench(sample_count = 10)]
    fn memory_keys_only_pages_of_1000(b: divan::Bencher) {
        let s = &*LIST_MEMORY;
        b.counter(divan::counter::ItemsCount::new(RECORDS))
            .bench(|| {
                RT.block_on(async {
                    let mut after = None;
                    let mut n = 0;
                    loop {
                        let page = s
                            .range(
                                "/bench/list/",
                                RangeOptions {
                                    start_after: after,
                                    limit: 1000,
                                    keys_only: true,
                                },
                            )
                            .await
                            .expect("range");
                        n += page.kvs.len();
                        after = page.kvs.last().map(|kv| kv.key.clone());
                        if !page.more {
                            break n;
                        }
                    }
                })
            });
    }
}

/// Reopening a redb file with 150,000 records (loads them into memory).
#[divan::bench(sample_count = 3, sample_size = 1)]
fn redb_open_150k(b: divan::Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("open.redb");
    {
        let s: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
        RT.block_on(fill(&s, RECORDS));
    }
    b.counter(divan::counter::ItemsCount::new(RECORDS))
        .bench_local(|| RedbStore::open(&path).expect("reopen"));
}

mod watch {
    use super::*;

    /// A put while 6,000 agents each watch their host's assignment prefix
    /// (`/jdos/assign/<host>/`) and the put lands under one of them: the
    /// fan-out must not scan every watcher.
    #[divan::bench(args = [0, 6000])]
    fn memory_put_with_host_watchers(b: divan::Bencher, watchers: usize) {
        let s = fresh_memory();
        let ws: Vec<_> = (0..watchers)
            .map(|h| {
                RT.block_on(s.watch(&format!("/jdos/assign/h{h:05}/"), 0))
                    .expect("watch")
            })
            .collect();
        let mut i = 0usize;
        b.counter(divan::counter::ItemsCount::new(1usize))
            .bench_local(|| {
                i += 1;
                // Outside every watched prefix, so no channel fills up.
                RT.block_on(s.put(&format!("/jdos/assign-x/{}", i % 1000), value(i), None))
                    .expect("put");
            });
        drop(ws);
    }
}
