//! Persistence of the redb backend across close and reopen.

use std::path::Path;
use std::time::Duration;

use jdos_store::{EventKind, RangeOptions, RedbStore, Store, StoreError, StoreOptions, Txn, TxnOp};

/// Copies the store file and its write-ahead log under `to`: what a crash
/// at this moment would leave (every acknowledged write is fsynced).
fn crash_image(path: &Path, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).expect("mkdir");
    let copy = to.join(path.file_name().expect("name"));
    std::fs::copy(path, &copy).expect("copy file");
    let log = wal_dir(path);
    let log_copy = wal_dir(&copy);
    std::fs::create_dir_all(&log_copy).expect("mkdir");
    for e in std::fs::read_dir(&log).expect("log dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), log_copy.join(e.file_name())).expect("copy segment");
    }
    copy
}

fn wal_dir(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().expect("name").to_os_string();
    name.push(".wal");
    path.with_file_name(name)
}

/// Bytes in the write-ahead log's segments.
fn log_bytes(path: &Path) -> u64 {
    std::fs::read_dir(wal_dir(path))
        .expect("log dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum()
}

/// A clean stop checkpoints the log into the file: the file alone holds
/// everything, and the log is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_revision_leases_and_history_survive_reopen() {
    survive_reopen(false).await;
}

/// After a crash (an image of the files taken while the store runs, with no
/// checkpoint since the writes), the log alone brings everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_alone_restores_data_leases_and_history_after_a_crash() {
    survive_reopen(true).await;
}

async fn survive_reopen(crash: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut path = dir.path().join("nested/dir/store.redb");
    let opts = StoreOptions {
        // No checkpoint during the writes of the crash case.
        checkpoint_every: Duration::from_secs(if crash { 3600 } else { 1 }),
        ..StoreOptions::default()
    };
    let (lease, short_lease, rev) = {
        let s = RedbStore::open_with(&path, opts).expect("open");
        for i in 0..100u32 {
            s.put(&format!("/p/{i:03}"), i.to_be_bytes().to_vec(), None)
                .await
                .expect("put");
        }
        s.put("/p/000", b"again".to_vec(), None).await.expect("put");
        s.delete("/p/099").await.expect("delete");
        let lease = s.lease_grant(Duration::from_secs(60)).await.expect("grant");
        let short = s.lease_grant(Duration::from_secs(1)).await.expect("grant");
        s.put("/lease/long", b"l".to_vec(), Some(lease))
            .await
            .expect("put");
        s.put("/lease/short", b"s".to_vec(), Some(short))
            .await
            .expect("put");
        s.compact(50).await.expect("compact");
        let rev = s.revision().await.expect("revision");
        if crash {
            assert!(log_bytes(&path) > 0);
            let image = crash_image(&path, &dir.path().join("image"));
            // The file alone has none of it: the log is what restores it.
            let bare = dir.path().join("bare/store.redb");
            std::fs::create_dir_all(bare.parent().expect("dir")).expect("mkdir");
            std::fs::copy(&image, &bare).expect("copy");
            let b = RedbStore::open(&bare).expect("open the file alone");
            assert_eq!(b.revision().await.expect("revision"), 0);
            path = image;
        }
        (lease, short, rev)
    };
    assert_eq!(rev, 104);
    if !crash {
        assert_eq!(log_bytes(&path), 0, "a clean stop leaves no log");
    }

    let s = RedbStore::open(&path).expect("reopen");
    assert_eq!(s.revision().await.expect("revision"), rev);
    let page = s
        .range("/p/", RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(page.kvs.len(), 99);
    let first = &page.kvs[0];
    assert_eq!(first.value, b"again");
    assert_eq!(
        (first.create_revision, first.mod_revision, first.version),
        (1, 101, 2)
    );
    assert_eq!(page.kvs[5].value, 5u32.to_be_bytes());
    assert!(s.get("/p/099").await.expect("get").is_none());

    // History from the compaction point on is replayed from disk.
    assert!(matches!(
        s.watch("/p/", 49).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/p/", 100).await.expect("watch");
    let b = w.next().await.expect("batch").expect("ok");
    assert_eq!(b[0].kv.key, "/p/099");
    assert_eq!(b[0].kv.mod_revision, 100);
    let b = w.next().await.expect("batch").expect("ok");
    assert_eq!(b[0].kv.key, "/p/000");
    assert_eq!(b[0].prev.as_ref().expect("prev").version, 1);
    let b = w.next().await.expect("batch").expect("ok");
    assert_eq!(b[0].kind, EventKind::Delete);
    assert_eq!(b[0].kv.key, "/p/099");

    // Leases survive; the TTL restarts from the open.
    assert_eq!(
        s.get("/lease/long").await.expect("get").expect("kv").lease,
        Some(lease)
    );
    s.lease_keep_alive(lease).await.expect("lease survived");
    let mut lw = s.watch("/lease/", 0).await.expect("watch");
    let b = tokio::time::timeout(Duration::from_secs(10), lw.next())
        .await
        .expect("short lease expires")
        .expect("batch")
        .expect("ok");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].kv.key, "/lease/short");
    assert_eq!(b[0].kind, EventKind::Delete);
    assert_eq!(
        s.lease_keep_alive(short_lease).await,
        Err(StoreError::LeaseNotFound(short_lease))
    );

    // New writes continue the revision sequence; new leases get new ids.
    let r = s
        .txn(Txn::new().and_then(TxnOp::put("/p/new", "n")))
        .await
        .expect("txn");
    assert_eq!(r.revision, rev + 2);
    let l2 = s.lease_grant(Duration::from_secs(5)).await.expect("grant");
    assert!(l2 > short_lease);
    drop(s);

    let s = jdos_store::open(&format!("redb://{}", path.display()))
        .await
        .expect("open by url");
    assert_eq!(s.revision().await.expect("revision"), rev + 2);
    assert!(s.get("/lease/short").await.expect("get").is_none());
    assert!(s.get("/lease/long").await.expect("get").is_some());
}

#[tokio::test]
async fn open_rejects_bad_urls() {
    for url in ["etcd2://x", "memory://x", "redb://"] {
        assert!(
            matches!(jdos_store::open(url).await, Err(StoreError::Invalid(_))),
            "{url}"
        );
    }
}

#[tokio::test]
async fn open_reports_unusable_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where the file should be.
    let err = jdos_store::open(dir.path().to_str().expect("utf8"))
        .await
        .err()
        .expect("a directory is not a store file");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

/// Dropping the last handle releases the file at once, even while the lease
/// ticker is busy expiring leases, so an immediate reopen succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_releases_the_file_immediately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    for i in 0..30u64 {
        let s = RedbStore::open(&path).expect("reopen right after drop");
        assert_eq!(s.revision().await.expect("revision"), 2 * i);
        let l = s
            .lease_grant(Duration::from_millis(1))
            .await
            .expect("grant");
        s.put("/k", b"v".to_vec(), Some(l)).await.expect("put");
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Possibly expired by now (a delete at revision 2i + 2), possibly not.
        let _ = s.delete("/k").await.expect("delete");
        drop(s);
    }
}

/// Only the newest `disk_history` revisions are kept on disk; older ones
/// count as compacted after a restart.
#[tokio::test]
async fn disk_history_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.redb");
    let opts = jdos_store::StoreOptions {
        disk_history: 5,
        ..Default::default()
    };
    {
        let s = RedbStore::open_with(&path, opts).expect("open");
        // One big transaction, then single writes.
        let mut txn = Txn::new();
        for i in 0..3 {
            txn = txn.and_then(TxnOp::put(format!("/h/{i}"), "x"));
        }
        s.txn(txn).await.expect("txn");
        for i in 0..19u8 {
            s.put("/h/n", vec![i], None).await.expect("put");
        }
        // In memory the whole history is still there.
        assert!(s.watch("/h/", 1).await.is_ok());
    }
    let s = RedbStore::open_with(&path, opts).expect("reopen");
    assert_eq!(s.revision().await.expect("revision"), 20);
    assert!(matches!(
        s.watch("/h/", 15).await,
        Err(StoreError::Compacted {
            requested: 15,
            compacted: 16
        })
    ));
    let mut w = s.watch("/h/", 16).await.expect("watch");
    for rev in 16..=20 {
        let b = w.next().await.expect("batch").expect("ok");
        assert_eq!(b[0].kv.mod_revision, rev);
        assert_eq!(b[0].kv.value, vec![(rev - 2) as u8]);
    }
}
