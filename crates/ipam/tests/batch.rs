//! Batch allocation: addresses prepared for many identities, committed in
//! the caller's transaction, while other batches of the same instance are in
//! flight and its index is reloaded underneath them.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::{id, network};
use jdos_ipam::{IpBatch, Ipam, IpamError};
use jdos_store::{MemoryStore, Store, Txn};

async fn ipam_with(net: jdos_types::Network) -> (Arc<dyn Store>, Arc<Ipam>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ipam = Arc::new(Ipam::new(store.clone()));
    ipam.create_network(net).await.unwrap();
    (store, ipam)
}

fn ips(b: &IpBatch) -> Vec<Ipv4Addr> {
    b.assignments.iter().map(|a| a.ip).collect()
}

/// Commits `b` as the platform does (its writes in one transaction), then
/// settles it.
async fn commit(store: &dyn Store, ipam: &Ipam, b: &IpBatch) -> bool {
    let resp = store
        .txn(Txn {
            compares: b.compares.clone(),
            success: b.ops.clone(),
            failure: Vec::new(),
        })
        .await
        .unwrap();
    if resp.succeeded {
        ipam.settle_batch(b, resp.revision);
    } else {
        ipam.abort_batch(b).await.unwrap();
    }
    resp.succeeded
}

/// A reload of the index (another batch found it short, or an aborted one
/// dropped it) keeps what batches in flight reserved: the next batch picks
/// around them and both commit.
#[tokio::test]
async fn a_reload_keeps_what_batches_in_flight_reserved() {
    let (store, ipam) = ipam_with(network("net", 5, "10.5.0.0/24", &[])).await;
    let a = ipam.prepare_batch("net", &[id(0), id(1)], 0).await.unwrap();
    ipam.forget("net");
    let b = ipam.prepare_batch("net", &[id(2), id(3)], 0).await.unwrap();
    ipam.rebuild().await.unwrap();
    let c = ipam.prepare_batch("net", &[id(4)], 0).await.unwrap();
    let picked = [ips(&a), ips(&b), ips(&c)].concat();
    let all: HashSet<_> = picked.iter().collect();
    assert_eq!(all.len(), 5, "{picked:?}");
    for batch in [&b, &a, &c] {
        assert!(commit(store.as_ref(), &ipam, batch).await);
    }
    assert_eq!(ipam.list("net").await.unwrap().len(), 5);
}

/// A batch that runs the index dry reloads it once; that reload must not
/// free its own picks (it would name one address twice in one transaction)
/// nor another batch's. It then fails as exhausted and frees its picks.
#[tokio::test]
async fn a_batch_that_runs_the_index_dry_names_no_address_twice() {
    // A /29: six usable addresses, the gateway takes one: five.
    let (store, ipam) = ipam_with(network("tiny", 6, "10.6.0.0/29", &[])).await;
    let a = ipam
        .prepare_batch("tiny", &[id(0), id(1)], 0)
        .await
        .unwrap();
    let err = ipam
        .prepare_batch("tiny", &[id(2), id(3), id(4), id(5)], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err:?}");
    // The failed batch's picks are free again; the first batch's are not.
    let b = ipam
        .prepare_batch("tiny", &[id(2), id(3), id(4)], 0)
        .await
        .unwrap();
    let all: HashSet<_> = [ips(&a), ips(&b)].concat().into_iter().collect();
    assert_eq!(all.len(), 5);
    assert!(commit(store.as_ref(), &ipam, &a).await);
    assert!(commit(store.as_ref(), &ipam, &b).await);
}

/// Many batches of one instance at once on a network barely big enough,
/// with its index dropped now and then: every batch commits (conflicts are
/// retried), no transaction names an address twice, no address is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_of_one_instance_share_no_address() {
    // A /26: 62 usable addresses, 61 after the gateway; 12 batches of 5.
    let (store, ipam) = ipam_with(network("net", 7, "10.7.0.0/26", &[])).await;
    let mut tasks = Vec::new();
    for t in 0..12u32 {
        let (store, ipam) = (store.clone(), ipam.clone());
        tasks.push(tokio::spawn(async move {
            let ids: Vec<_> = (0..5).map(|i| id(t * 10 + i)).collect();
            for attempt in 0..64 {
                if attempt % 3 == 2 {
                    ipam.forget("net");
                }
                let b = match ipam.prepare_batch("net", &ids, 0).await {
                    Ok(b) => b,
                    // Short while others hold the rest: they settle or abort.
                    Err(IpamError::Exhausted { .. } | IpamError::Contention { .. }) => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) => panic!("batch {t}: {e}"),
                };
                let distinct: HashSet<_> = ips(&b).into_iter().collect();
                assert_eq!(distinct.len(), 5, "batch {t} names an address twice");
                if commit(store.as_ref(), &ipam, &b).await {
                    return ips(&b);
                }
            }
            panic!("batch {t} never committed");
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 60);
    assert_eq!(ipam.list("net").await.unwrap().len(), 60);
}
