//! The conformance suite every [`Store`] backend must pass.
//!
//! Each case is an async function taking a fresh, empty store and panicking
//! on a violation, so it can run under any test harness. The cases test only
//! what the [`Store`] trait documents (etcd's semantics), so the same suite
//! runs against the embedded backends and against etcd.
//!
//! Use [`conformance_tests!`](crate::conformance_tests) to get one
//! `#[tokio::test]` per case:
//!
//! ```ignore
//! jdos_store::conformance_tests!(|| async {
//!     jdos_store::open("memory://").await.expect("open")
//! });
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::{
    CmpOp, CmpTarget, Compare, EventKind, KeyValue, OpResponse, RangeOptions, Store, StoreError,
    Txn, TxnOp, WatchEvent,
};

/// Every case, by name, for [`conformance_tests!`](crate::conformance_tests).
pub const CASES: &[&str] = &[
    "put_get_revisions",
    "delete_semantics",
    "range_prefix_pagination",
    "txn_compare_targets",
    "txn_branches_and_responses",
    "txn_atomicity",
    "txn_failed_write_leaves_nothing",
    "cas_counter_concurrency",
    "watch_replay_then_live",
    "watch_from_now_and_prefix",
    "watch_one_batch_per_txn",
    "list_then_watch_no_gap",
    "compaction",
    "leases_attach_and_revoke",
    "lease_expiry",
    "lease_keep_alive",
    "invalid_input",
    "watch_many_prefixes",
];

/// Generates one `#[tokio::test]` per conformance case. The argument is an
/// expression callable as `factory().await -> Arc<dyn Store>` returning a
/// fresh, empty store each time. The calling crate needs `tokio` (with the
/// `macros` and `rt-multi-thread` features) as a (dev-)dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            put_get_revisions, delete_semantics, range_prefix_pagination,
            txn_compare_targets, txn_branches_and_responses, txn_atomicity,
            txn_failed_write_leaves_nothing, cas_counter_concurrency,
            watch_replay_then_live, watch_from_now_and_prefix, watch_one_batch_per_txn,
            list_then_watch_no_gap,
            compaction, leases_attach_and_revoke, lease_expiry, lease_keep_alive,
            invalid_input, watch_many_prefixes);
    };
    (@cases $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::Store> = ($factory)().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(15);

async fn next_batch(w: &mut crate::Watch) -> Vec<WatchEvent> {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(b))) => b,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended unexpectedly"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

async fn no_batch(w: &mut crate::Watch, within: Duration) {
    if let Ok(Some(b)) = tokio::time::timeout(within, w.next()).await {
        panic!("unexpected watch batch: {b:?}");
    }
}

async fn must_get(s: &dyn Store, key: &str) -> KeyValue {
    s.get(key)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{key} should exist"))
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// Put and get: global revision +1 per write; create/mod revision and
/// version per key; a missing key reads as `None`.
pub async fn put_get_revisions(s: Arc<dyn Store>) {
    let r0 = s.revision().await.expect("revision");
    assert!(s.get("/c/a").await.expect("get").is_none());
    let r1 = s.put("/c/a", b"1".to_vec(), None).await.expect("put");
    assert_eq!(r1, r0 + 1);
    let r2 = s.put("/c/b", b"x".to_vec(), None).await.expect("put");
    assert_eq!(r2, r1 + 1);
    let r3 = s.put("/c/a", b"2".to_vec(), None).await.expect("put");
    assert_eq!(r3, r2 + 1);
    let a = must_get(&*s, "/c/a").await;
    assert_eq!(a.value, b"2");
    assert_eq!(a.create_revision, r1);
    assert_eq!(a.mod_revision, r3);
    assert_eq!(a.version, 2);
    assert_eq!(a.lease, None);
    let b = must_get(&*s, "/c/b").await;
    assert_eq!((b.create_revision, b.mod_revision, b.version), (r2, r2, 1));
    assert_eq!(s.revision().await.expect("revision"), r3);
    // An empty value is a value.
    let r4 = s.put("/c/empty", Vec::new(), None).await.expect("put");
    let e = must_get(&*s, "/c/empty").await;
    assert!(e.value.is_empty());
    assert_eq!(e.mod_revision, r4);
}

/// Delete: a missing key writes nothing; a delete bumps the revision; a
/// re-created key starts a new life (new create revision, version 1).
pub async fn delete_semantics(s: Arc<dyn Store>) {
    let r1 = s.put("/d/a", b"1".to_vec(), None).await.expect("put");
    s.put("/d/a", b"2".to_vec(), None).await.expect("put");
    let before = s.revision().await.expect("revision");
    assert_eq!(s.delete("/d/missing").await.expect("delete"), None);
    assert_eq!(s.revision().await.expect("revision"), before);
    let rd = s.delete("/d/a").await.expect("delete");
    assert_eq!(rd, Some(before + 1));
    assert!(s.get("/d/a").await.expect("get").is_none());
    assert_eq!(s.delete("/d/a").await.expect("delete"), None);
    let r3 = s.put("/d/a", b"3".to_vec(), None).await.expect("put");
    let a = must_get(&*s, "/d/a").await;
    assert_ne!(a.create_revision, r1);
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r3, r3, 1));
}

/// Range: by prefix, ascending, paginated with `start_after`/`limit`/`more`,
/// `keys_only`, and the revision of the read.
pub async fn range_prefix_pagination(s: Arc<dyn Store>) {
    let mut expect = Vec::new();
    for i in (0..25).rev() {
        let k = format!("/r/items/{i:03}");
        s.put(&k, format!("v{i}").into_bytes(), None)
            .await
            .expect("put");
        expect.push(k);
    }
    expect.sort();
    s.put("/r/items", b"not under the prefix /r/items/".to_vec(), None)
        .await
        .expect("put");
    s.put("/r/itemsX", b"x".to_vec(), None).await.expect("put");
    s.put("/r/other/1", b"o".to_vec(), None).await.expect("put");
    let rev = s.revision().await.expect("revision");

    let all = s
        .range("/r/items/", RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(keys(&all.kvs), expect);
    assert!(!all.more);
    assert_eq!(all.revision, rev);
    assert_eq!(all.kvs[3].value, b"v3");

    // Pages of 10: 10 + 10 + 5.
    let mut got = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = s
            .range(
                "/r/items/",
                RangeOptions {
                    start_after: after.clone(),
                    limit: 10,
                    keys_only: false,
                },
            )
            .await
            .expect("range");
        pages += 1;
        assert!(page.kvs.len() <= 10);
        got.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(pages, 3);
    assert_eq!(got, expect);

    // Exactly `limit` keys left: more must be false.
    let last5 = s
        .range(
            "/r/items/",
            RangeOptions {
                start_after: Some(expect[19].clone()),
                limit: 5,
                keys_only: false,
            },
        )
        .await
        .expect("range");
    assert_eq!(last5.kvs.len(), 5);
    assert!(!last5.more);

    let ko = s
        .range(
            "/r/items/",
            RangeOptions {
                limit: 2,
                keys_only: true,
                ..RangeOptions::default()
            },
        )
        .await
        .expect("range");
    assert_eq!(keys(&ko.kvs), &expect[..2]);
    assert!(ko.more);
    assert!(ko.kvs.iter().all(|kv| kv.value.is_empty()));
    assert!(ko
        .kvs
        .iter()
        .all(|kv| kv.mod_revision > 0 && kv.version == 1));

    let none = s
        .range("/r/nothing/", RangeOptions::default())
        .await
        .expect("range");
    assert!(none.kvs.is_empty() && !none.more);

    let whole = s
        .range("/r/", RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(whole.kvs.len(), 28);
}

fn cmp(key: &str, op: CmpOp, target: CmpTarget) -> Compare {
    Compare {
        key: key.into(),
        op,
        target,
    }
}

async fn holds(s: &dyn Store, c: Compare) -> bool {
    let r = s
        .txn(
            Txn::new()
                .when(c)
                .and_then(TxnOp::Get { key: "/t/x".into() }),
        )
        .await
        .expect("txn");
    r.succeeded
}

/// Every compare target with every operator, including on a missing key
/// (revisions and version 0; a value compare is always false).
pub async fn txn_compare_targets(s: Arc<dyn Store>) {
    let r1 = s.put("/t/k", b"b".to_vec(), None).await.expect("put");
    let r2 = s.put("/t/k", b"b".to_vec(), None).await.expect("put");
    let s = &*s;
    use CmpOp::*;
    use CmpTarget::*;
    let cases: Vec<(Compare, bool)> = vec![
        (cmp("/t/k", Equal, Version(2)), true),
        (cmp("/t/k", NotEqual, Version(2)), false),
        (cmp("/t/k", Less, Version(3)), true),
        (cmp("/t/k", Greater, Version(1)), true),
        (cmp("/t/k", Greater, Version(2)), false),
        (cmp("/t/k", Equal, CreateRevision(r1)), true),
        (cmp("/t/k", Less, CreateRevision(r1)), false),
        (cmp("/t/k", Greater, CreateRevision(0)), true),
        (cmp("/t/k", Equal, ModRevision(r2)), true),
        (cmp("/t/k", Equal, ModRevision(r1)), false),
        (cmp("/t/k", Less, ModRevision(r2 + 1)), true),
        (cmp("/t/k", Greater, ModRevision(r2)), false),
        (cmp("/t/k", Equal, Value(b"b".to_vec())), true),
        (cmp("/t/k", NotEqual, Value(b"b".to_vec())), false),
        (cmp("/t/k", Less, Value(b"c".to_vec())), true),
        (cmp("/t/k", Greater, Value(b"a".to_vec())), true),
        (cmp("/t/k", Greater, Value(b"b".to_vec())), false),
        (cmp("/t/k", Greater, Value(Vec::new())), true),
        // A missing key: revisions and version are 0.
        (cmp("/t/missing", Equal, Version(0)), true),
        (cmp("/t/missing", Equal, CreateRevision(0)), true),
        (cmp("/t/missing", Equal, ModRevision(0)), true),
        (cmp("/t/missing", Less, Version(1)), true),
        (cmp("/t/missing", Greater, ModRevision(0)), false),
        // ... and a value compare on it is false whatever the operator.
        (cmp("/t/missing", Equal, Value(Vec::new())), false),
        (cmp("/t/missing", NotEqual, Value(b"x".to_vec())), false),
        (cmp("/t/missing", Less, Value(b"x".to_vec())), false),
        (cmp("/t/missing", Greater, Value(Vec::new())), false),
    ];
    for (c, want) in cases {
        assert_eq!(holds(s, c.clone()).await, want, "compare {c:?}");
    }
    // Helpers.
    assert!(holds(s, Compare::absent("/t/missing")).await);
    assert!(!holds(s, Compare::absent("/t/k")).await);
    assert!(holds(s, Compare::mod_revision("/t/k", r2)).await);
    assert!(holds(s, Compare::value("/t/k", "b")).await);
    // All compares must hold.
    let r = s
        .txn(
            Txn::new()
                .when(Compare::value("/t/k", "b"))
                .when(Compare::absent("/t/k")),
        )
        .await
        .expect("txn");
    assert!(!r.succeeded);
    // No compare at all: success.
    assert!(s.txn(Txn::new()).await.expect("txn").succeeded);
}

/// The chosen branch runs, all its writes share one revision, responses
/// come one per op (prev values, delete counts, gets that see earlier ops
/// of the same txn), and a txn that writes nothing keeps the revision.
pub async fn txn_branches_and_responses(s: Arc<dyn Store>) {
    let r1 = s.put("/b/a", b"1".to_vec(), None).await.expect("put");
    s.put("/b/p/1", b"x".to_vec(), None).await.expect("put");
    s.put("/b/p/2", b"y".to_vec(), None).await.expect("put");
    let before = s.revision().await.expect("revision");

    let r = s
        .txn(
            Txn::new()
                .when(Compare::mod_revision("/b/a", r1))
                .and_then(TxnOp::put("/b/a", "2"))
                .and_then(TxnOp::put("/b/new", "n"))
                .and_then(TxnOp::Get {
                    key: "/b/new".into(),
                })
                .and_then(TxnOp::DeletePrefix {
                    prefix: "/b/p/".into(),
                })
                .and_then(TxnOp::delete("/b/none"))
                .or_else(TxnOp::put("/b/failed", "f")),
        )
        .await
        .expect("txn");
    assert!(r.succeeded);
    assert_eq!(r.revision, before + 1);
    assert_eq!(r.responses.len(), 5);
    match &r.responses[0] {
        OpResponse::Put { prev: Some(p) } => assert_eq!(p.value, b"1"),
        other => panic!("put response {other:?}"),
    }
    assert!(matches!(&r.responses[1], OpResponse::Put { prev: None }));
    match &r.responses[2] {
        OpResponse::Get { kv: Some(kv) } => {
            assert_eq!(kv.value, b"n");
            assert_eq!(kv.mod_revision, before + 1);
        }
        other => panic!("get response {other:?}"),
    }
    assert_eq!(r.responses[3], OpResponse::Delete { deleted: 2 });
    assert_eq!(r.responses[4], OpResponse::Delete { deleted: 0 });
    assert_eq!(must_get(&*s, "/b/a").await.mod_revision, before + 1);
    assert_eq!(must_get(&*s, "/b/new").await.mod_revision, before + 1);
    assert!(s.get("/b/p/1").await.expect("get").is_none());
    assert!(s.get("/b/failed").await.expect("get").is_none());

    // The failure branch.
    let r = s
        .txn(
            Txn::new()
                .when(Compare::mod_revision("/b/a", r1))
                .and_then(TxnOp::put("/b/a", "3"))
                .or_else(TxnOp::Get { key: "/b/a".into() })
                .or_else(TxnOp::put("/b/failed", "f")),
        )
        .await
        .expect("txn");
    assert!(!r.succeeded);
    assert_eq!(r.revision, before + 2);
    match &r.responses[0] {
        OpResponse::Get { kv: Some(kv) } => assert_eq!(kv.value, b"2"),
        other => panic!("get response {other:?}"),
    }
    assert_eq!(must_get(&*s, "/b/a").await.value, b"2");
    assert_eq!(must_get(&*s, "/b/failed").await.value, b"f");

    // Reads only, or a failed compare with an empty branch: no new revision.
    let r = s
        .txn(Txn::new().and_then(TxnOp::Get { key: "/b/a".into() }))
        .await
        .expect("txn");
    assert_eq!(r.revision, before + 2);
    let r = s
        .txn(Txn::new().when(Compare::absent("/b/a")))
        .await
        .expect("txn");
    assert!(!r.succeeded && r.responses.is_empty());
    assert_eq!(r.revision, before + 2);
    assert_eq!(s.revision().await.expect("revision"), before + 2);
}

/// Concurrent CAS transfers between two keys never break their sum, as seen
/// by concurrent transactional reads and by a watch (one batch, one revision
/// per transfer).
pub async fn txn_atomicity(s: Arc<dyn Store>) {
    const TOTAL: i64 = 1000;
    s.txn(
        Txn::new()
            .and_then(TxnOp::put("/x/a", TOTAL.to_string()))
            .and_then(TxnOp::put("/x/b", "0")),
    )
    .await
    .expect("txn");
    let start = s.revision().await.expect("revision");
    let mut w = s.watch("/x/", start + 1).await.expect("watch");

    let writers: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while done < 25 {
                    let a = must_get(&*s, "/x/a").await;
                    let b = must_get(&*s, "/x/b").await;
                    let av: i64 = parse(&a.value);
                    let bv: i64 = parse(&b.value);
                    let amount = if t % 2 == 0 { 7 } else { -5 };
                    let r = s
                        .txn(
                            Txn::new()
                                .when(Compare::mod_revision("/x/a", a.mod_revision))
                                .when(Compare::mod_revision("/x/b", b.mod_revision))
                                .and_then(TxnOp::put("/x/a", (av - amount).to_string()))
                                .and_then(TxnOp::put("/x/b", (bv + amount).to_string())),
                        )
                        .await
                        .expect("txn");
                    if r.succeeded {
                        done += 1;
                    }
                }
            })
        })
        .collect();
    let reader = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let r = s
                    .txn(
                        Txn::new()
                            .and_then(TxnOp::Get { key: "/x/a".into() })
                            .and_then(TxnOp::Get { key: "/x/b".into() }),
                    )
                    .await
                    .expect("txn");
                let v: Vec<i64> = r
                    .responses
                    .iter()
                    .map(|o| match o {
                        OpResponse::Get { kv: Some(kv) } => parse(&kv.value),
                        other => panic!("get response {other:?}"),
                    })
                    .collect();
                assert_eq!(v[0] + v[1], TOTAL, "torn read");
                tokio::task::yield_now().await;
            }
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    reader.await.expect("reader");

    let end = s.revision().await.expect("revision");
    assert_eq!(end, start + 200, "one revision per successful transfer");
    let mut rev = start;
    while rev < end {
        let batch = next_batch(&mut w).await;
        assert_eq!(batch.len(), 2, "a transfer is one batch of two events");
        rev += 1;
        assert!(batch.iter().all(|e| e.kv.mod_revision == rev));
        let sum: i64 = batch.iter().map(|e| parse::<i64>(&e.kv.value)).sum();
        assert_eq!(sum, TOTAL);
    }
    let a: i64 = parse(&must_get(&*s, "/x/a").await.value);
    let b: i64 = parse(&must_get(&*s, "/x/b").await.value);
    assert_eq!(a + b, TOTAL);
    assert_eq!(b, 4 * 25 * 7 - 4 * 25 * 5);
}

fn parse<T: std::str::FromStr>(v: &[u8]) -> T {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

/// A txn whose chosen branch cannot be applied (unknown lease) fails as a
/// whole: nothing of it is written and the revision does not move.
pub async fn txn_failed_write_leaves_nothing(s: Arc<dyn Store>) {
    s.put("/f/a", b"1".to_vec(), None).await.expect("put");
    let before = s.revision().await.expect("revision");
    let bogus = 0x7fff_0000_0000_0001;
    let err = s
        .txn(
            Txn::new()
                .and_then(TxnOp::put("/f/a", "2"))
                .and_then(TxnOp::Put {
                    key: "/f/b".into(),
                    value: b"x".to_vec(),
                    lease: Some(bogus),
                }),
        )
        .await
        .expect_err("unknown lease");
    assert_eq!(err, StoreError::LeaseNotFound(bogus));
    assert_eq!(must_get(&*s, "/f/a").await.value, b"1");
    assert!(s.get("/f/b").await.expect("get").is_none());
    assert_eq!(s.revision().await.expect("revision"), before);
}

/// 16 tasks × 200 compare-and-swap increments of one counter: exactly 3200,
/// no lost update.
pub async fn cas_counter_concurrency(s: Arc<dyn Store>) {
    s.put("/cnt", b"0".to_vec(), None).await.expect("put");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..200 {
                    loop {
                        let kv = must_get(&*s, "/cnt").await;
                        let n: u64 = parse(&kv.value);
                        let r = s
                            .txn(
                                Txn::new()
                                    .when(Compare::mod_revision("/cnt", kv.mod_revision))
                                    .and_then(TxnOp::put("/cnt", (n + 1).to_string())),
                            )
                            .await
                            .expect("txn");
                        if r.succeeded {
                            break;
                        }
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let kv = must_get(&*s, "/cnt").await;
    assert_eq!(parse::<u64>(&kv.value), 3200);
    assert_eq!(kv.version, 3201);
}

/// A watch from a past revision replays history from it, in order, then
/// streams live writes, with no gap and no duplicate.
pub async fn watch_replay_then_live(s: Arc<dyn Store>) {
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(
            s.put(&format!("/w/{}", i % 3), vec![i], None)
                .await
                .expect("put"),
        );
    }
    let from = revs[4];
    let mut w = s.watch("/w/", from).await.expect("watch");
    // Interleave live writes with the replay being consumed.
    for i in 10..20 {
        revs.push(
            s.put(&format!("/w/{}", i % 3), vec![i], None)
                .await
                .expect("put"),
        );
    }
    revs.push(s.delete("/w/0").await.expect("delete").expect("existed"));
    let mut seen = Vec::new();
    while seen.len() < revs.len() - 4 {
        for ev in next_batch(&mut w).await {
            seen.push(ev);
        }
    }
    let seen_revs: Vec<_> = seen.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(seen_revs, revs[4..]);
    for (n, ev) in seen.iter().enumerate() {
        let i = (n + 4) as u8;
        if i < 20 {
            assert_eq!(ev.kind, EventKind::Put);
            assert_eq!(ev.kv.key, format!("/w/{}", i % 3));
            assert_eq!(ev.kv.value, vec![i]);
            // Put after a put: prev holds the old value.
            let prev = ev.prev.as_ref().expect("prev");
            assert_eq!(prev.value, vec![i - 3]);
            assert_eq!(ev.kv.version, prev.version + 1);
        }
    }
    let del = seen.last().expect("delete event");
    assert_eq!(del.kind, EventKind::Delete);
    assert_eq!(del.kv.key, "/w/0");
    assert!(del.kv.value.is_empty());
    assert_eq!(del.prev.as_ref().expect("prev").value, vec![18]);
    no_batch(&mut w, Duration::from_millis(200)).await;
}

/// `from = 0` streams only future writes; the prefix filters keys.
pub async fn watch_from_now_and_prefix(s: Arc<dyn Store>) {
    s.put("/n/a/old", b"1".to_vec(), None).await.expect("put");
    let mut w = s.watch("/n/a/", 0).await.expect("watch");
    s.put("/n/b/x", b"other prefix".to_vec(), None)
        .await
        .expect("put");
    s.put("/n/a", b"not under /n/a/".to_vec(), None)
        .await
        .expect("put");
    let r = s.put("/n/a/new", b"2".to_vec(), None).await.expect("put");
    let b = next_batch(&mut w).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kv.key, "/n/a/new");
    assert_eq!(b[0].kv.mod_revision, r);
    assert_eq!(b[0].kv.create_revision, r);
    assert!(b[0].prev.is_none());
    no_batch(&mut w, Duration::from_millis(200)).await;

    // Watching the next revision explicitly is the same as from now on.
    let next = s.revision().await.expect("revision") + 1;
    let mut w2 = s.watch("/n/", next).await.expect("watch");
    let r = s.put("/n/b/y", b"3".to_vec(), None).await.expect("put");
    assert_eq!(next_batch(&mut w2).await[0].kv.mod_revision, r);
}

/// Many watchers with nested, sibling and non-directory prefixes: each gets
/// exactly the events under its prefix, in order, one batch per txn.
pub async fn watch_many_prefixes(s: Arc<dyn Store>) {
    let mut hosts = Vec::new();
    for h in 0..50 {
        hosts.push(
            s.watch(&format!("/m/assign/h{h}/"), 0)
                .await
                .expect("watch"),
        );
    }
    let mut all = s.watch("/m/", 0).await.expect("watch");
    let mut root = s.watch("", 0).await.expect("watch");
    let mut exact = s.watch("/m/assign/h7/x", 0).await.expect("watch");
    let mut partial = s.watch("/m/assign/h1", 0).await.expect("watch");
    // One txn touching h3 twice and h7 once.
    let mut t = Txn::new();
    for k in ["/m/assign/h3/a", "/m/assign/h3/b", "/m/assign/h7/x"] {
        t = t.and_then(TxnOp::put(k, b"v".to_vec()));
    }
    let r = s.txn(t).await.expect("txn").revision;
    let b = next_batch(&mut hosts[3]).await;
    assert_eq!(keys_of(&b), ["/m/assign/h3/a", "/m/assign/h3/b"]);
    assert!(b.iter().all(|e| e.kv.mod_revision == r));
    assert_eq!(
        keys_of(&next_batch(&mut hosts[7]).await),
        ["/m/assign/h7/x"]
    );
    assert_eq!(next_batch(&mut all).await.len(), 3);
    assert_eq!(next_batch(&mut root).await.len(), 3);
    assert_eq!(keys_of(&next_batch(&mut exact).await), ["/m/assign/h7/x"]);
    // `/m/assign/h1` is a plain prefix: it matches h1… and h10…, not h3.
    s.put("/m/assign/h10/z", b"v".to_vec(), None)
        .await
        .expect("put");
    assert_eq!(
        keys_of(&next_batch(&mut partial).await),
        ["/m/assign/h10/z"]
    );
    assert_eq!(
        keys_of(&next_batch(&mut hosts[10]).await),
        ["/m/assign/h10/z"]
    );
    no_batch(&mut hosts[1], Duration::from_millis(100)).await;
    no_batch(&mut hosts[0], Duration::from_millis(10)).await;
    // A dropped watcher does not disturb the others of its prefix.
    let again = s.watch("/m/assign/h3/", 0).await.expect("watch");
    drop(again);
    s.put("/m/assign/h3/c", b"v".to_vec(), None)
        .await
        .expect("put");
    assert_eq!(
        keys_of(&next_batch(&mut hosts[3]).await),
        ["/m/assign/h3/c"]
    );
}

fn keys_of(b: &[WatchEvent]) -> Vec<&str> {
    b.iter().map(|e| e.kv.key.as_str()).collect()
}

/// The events of one transaction arrive together in one batch.
pub async fn watch_one_batch_per_txn(s: Arc<dyn Store>) {
    s.put("/o/gone", b"g".to_vec(), None).await.expect("put");
    let mut w = s.watch("/o/", 0).await.expect("watch");
    let r = s
        .txn(
            Txn::new()
                .and_then(TxnOp::put("/o/1", "a"))
                .and_then(TxnOp::put("/o/2", "b"))
                .and_then(TxnOp::delete("/o/gone"))
                .and_then(TxnOp::put("/elsewhere", "c")),
        )
        .await
        .expect("txn");
    let b = next_batch(&mut w).await;
    assert_eq!(b.len(), 3, "{b:?}");
    assert!(b.iter().all(|e| e.kv.mod_revision == r.revision));
    assert_eq!(
        b.iter()
            .map(|e| (e.kind, e.kv.key.as_str()))
            .collect::<Vec<_>>(),
        [
            (EventKind::Put, "/o/1"),
            (EventKind::Put, "/o/2"),
            (EventKind::Delete, "/o/gone")
        ]
    );
}

/// The controller pattern: list, then watch from the list's revision + 1,
/// while writers keep going. The list plus the events rebuild exactly the
/// final state: nothing missed, nothing seen twice.
pub async fn list_then_watch_no_gap(s: Arc<dyn Store>) {
    const WRITES: u32 = 600;
    let r0 = s.revision().await.expect("revision");
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                let key = format!("/lw/{}", i % 37);
                if i % 5 == 4 {
                    s.delete(&key).await.expect("delete");
                } else {
                    s.put(&key, i.to_string().into_bytes(), None)
                        .await
                        .expect("put");
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Let some writes land first.
    while s.revision().await.expect("revision") < r0 + 50 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let page = s
        .range("/lw/", RangeOptions::default())
        .await
        .expect("range");
    let mut state: std::collections::BTreeMap<String, KeyValue> = page
        .kvs
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    let mut w = s.watch("/lw/", page.revision + 1).await.expect("watch");
    writer.await.expect("writer");
    let end = s.revision().await.expect("revision");
    let mut rev = page.revision;
    while rev < end {
        let batch = next_batch(&mut w).await;
        let r = batch[0].kv.mod_revision;
        assert!(
            r > rev,
            "revision {r} seen after {rev}: duplicate or out of order"
        );
        rev = r;
        for ev in batch {
            assert_eq!(ev.kv.mod_revision, r, "a batch spans revisions");
            match ev.kind {
                EventKind::Put => {
                    state.insert(ev.kv.key.clone(), ev.kv);
                }
                EventKind::Delete => {
                    assert!(
                        state.remove(&ev.kv.key).is_some(),
                        "delete of {} which the list + events never had",
                        ev.kv.key
                    );
                }
            }
        }
    }
    assert_eq!(rev, end);
    let fin = s
        .range("/lw/", RangeOptions::default())
        .await
        .expect("range");
    let want: std::collections::BTreeMap<String, KeyValue> =
        fin.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    assert_eq!(state, want);
}

/// After `compact(rev)`, watching from before `rev` fails with `Compacted`;
/// from `rev` on it still works; compacting the future is refused.
pub async fn compaction(s: Arc<dyn Store>) {
    let mut revs = Vec::new();
    for i in 0..6u8 {
        revs.push(s.put("/k/a", vec![i], None).await.expect("put"));
    }
    let cut = revs[3];
    s.compact(cut).await.expect("compact");
    match s.watch("/k/", revs[1]).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, revs[1]),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }
    let mut w = s
        .watch("/k/", cut)
        .await
        .expect("watch at the compaction point");
    let first = next_batch(&mut w).await;
    assert_eq!(first[0].kv.mod_revision, cut);
    // Compaction drops history, not data.
    assert_eq!(must_get(&*s, "/k/a").await.value, vec![5]);
    let cur = s.revision().await.expect("revision");
    assert!(matches!(
        s.compact(cur + 10).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

/// Keys attached to a lease carry it; revoking deletes them all in one
/// revision (delete events in one batch); an unknown lease is refused and
/// nothing is written.
pub async fn leases_attach_and_revoke(s: Arc<dyn Store>) {
    let l = s.lease_grant(Duration::from_secs(60)).await.expect("grant");
    assert_ne!(l, 0);
    s.put("/l/a", b"1".to_vec(), Some(l)).await.expect("put");
    s.put("/l/b", b"2".to_vec(), Some(l)).await.expect("put");
    s.put("/l/c", b"3".to_vec(), None).await.expect("put");
    // Re-putting without the lease detaches the key.
    s.put("/l/d", b"4".to_vec(), Some(l)).await.expect("put");
    s.put("/l/d", b"5".to_vec(), None).await.expect("put");
    assert_eq!(must_get(&*s, "/l/a").await.lease, Some(l));
    assert_eq!(must_get(&*s, "/l/d").await.lease, None);

    let before = s.revision().await.expect("revision");
    let bogus = l + 1_000_000;
    assert_eq!(
        s.put("/l/x", b"x".to_vec(), Some(bogus)).await,
        Err(StoreError::LeaseNotFound(bogus))
    );
    assert!(s.get("/l/x").await.expect("get").is_none());
    assert_eq!(s.revision().await.expect("revision"), before);
    assert_eq!(
        s.lease_keep_alive(bogus).await,
        Err(StoreError::LeaseNotFound(bogus))
    );

    let mut w = s.watch("/l/", 0).await.expect("watch");
    s.lease_revoke(l).await.expect("revoke");
    let b = next_batch(&mut w).await;
    let mut deleted: Vec<_> = b.iter().map(|e| e.kv.key.as_str()).collect();
    deleted.sort();
    assert_eq!(deleted, ["/l/a", "/l/b"]);
    assert!(b.iter().all(|e| e.kind == EventKind::Delete));
    assert!(b.iter().all(|e| e.kv.mod_revision == before + 1));
    assert_eq!(s.revision().await.expect("revision"), before + 1);
    assert!(s.get("/l/a").await.expect("get").is_none());
    assert!(s.get("/l/c").await.expect("get").is_some());
    assert!(s.get("/l/d").await.expect("get").is_some());
    assert_eq!(s.lease_revoke(l).await, Err(StoreError::LeaseNotFound(l)));
    assert_eq!(
        s.put("/l/y", b"y".to_vec(), Some(l)).await,
        Err(StoreError::LeaseNotFound(l))
    );
    assert_eq!(
        s.lease_keep_alive(l).await,
        Err(StoreError::LeaseNotFound(l))
    );
}

/// A lease that is not kept alive expires: its keys are deleted in one
/// revision, with delete events, and the lease is gone.
pub async fn lease_expiry(s: Arc<dyn Store>) {
    let l = s.lease_grant(Duration::from_secs(1)).await.expect("grant");
    s.put("/e/a", b"1".to_vec(), Some(l)).await.expect("put");
    s.put("/e/b", b"2".to_vec(), Some(l)).await.expect("put");
    s.put("/e/keep", b"3".to_vec(), None).await.expect("put");
    let mut w = s.watch("/e/", 0).await.expect("watch");
    let b = next_batch(&mut w).await;
    let mut deleted: Vec<_> = b.iter().map(|e| e.kv.key.as_str()).collect();
    deleted.sort();
    assert_eq!(deleted, ["/e/a", "/e/b"]);
    assert!(b.iter().all(|e| e.kind == EventKind::Delete));
    assert_eq!(b[0].kv.mod_revision, b[1].kv.mod_revision);
    assert!(s.get("/e/a").await.expect("get").is_none());
    assert!(s.get("/e/keep").await.expect("get").is_some());
    assert_eq!(
        s.put("/e/c", b"x".to_vec(), Some(l)).await,
        Err(StoreError::LeaseNotFound(l))
    );
}

/// Keep-alive renews a lease beyond its TTL; once it stops, the lease
/// expires.
pub async fn lease_keep_alive(s: Arc<dyn Store>) {
    let ttl = Duration::from_secs(2);
    let l = s.lease_grant(ttl).await.expect("grant");
    s.put("/ka/a", b"1".to_vec(), Some(l)).await.expect("put");
    let started = tokio::time::Instant::now();
    while started.elapsed() < ttl * 2 {
        tokio::time::sleep(ttl / 8).await;
        s.lease_keep_alive(l).await.expect("keep alive");
        assert!(
            s.get("/ka/a").await.expect("get").is_some(),
            "a kept-alive lease expired"
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.get("/ka/a").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease did not expire after keep-alives stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bad input is refused with `Invalid` and writes nothing.
pub async fn invalid_input(s: Arc<dyn Store>) {
    let before = s.revision().await.expect("revision");
    assert!(matches!(
        s.put("", b"x".to_vec(), None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.txn(
            Txn::new()
                .and_then(TxnOp::put("/i/ok", "1"))
                .and_then(TxnOp::put("", "2"))
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(s.get("/i/ok").await.expect("get").is_none());
    // One branch writing a key twice is refused, as etcd does ("duplicate
    // key given in txn request"), whichever branch would run.
    for (a, b) in [
        (TxnOp::put("/i/k", "1"), TxnOp::put("/i/k", "2")),
        (TxnOp::put("/i/k", "1"), TxnOp::delete("/i/k")),
        (
            TxnOp::DeletePrefix {
                prefix: "/i/".into(),
            },
            TxnOp::put("/i/k", "1"),
        ),
    ] {
        assert!(matches!(
            s.txn(Txn::new().and_then(a.clone()).and_then(b.clone()))
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.txn(
                Txn::new()
                    .when(Compare::absent("/i/never"))
                    .and_then(TxnOp::put("/i/other", "1"))
                    .or_else(a)
                    .or_else(b)
            )
            .await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert!(s.get("/i/k").await.expect("get").is_none());
    assert!(s.get("/i/other").await.expect("get").is_none());
    assert!(matches!(
        s.lease_grant(Duration::ZERO).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.revision().await.expect("revision"), before);
}
