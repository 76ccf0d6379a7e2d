//! The store-backed IPAM service on the real in-memory store backend.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{id, ip, network};
use jdos_ipam::{Ipam, IpamError, Slot, Unavailable};
use jdos_store::{json, MemoryStore, Store};
use jdos_types::{keys, IpAssignment, IpState};

const MIN: u64 = 60_000;

async fn ipam_with(nets: &[jdos_types::Network]) -> (Arc<dyn Store>, Ipam) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ipam = Ipam::new(store.clone());
    for n in nets {
        ipam.create_network(n.clone()).await.unwrap();
    }
    (store, ipam)
}

#[tokio::test]
async fn identity_keeps_its_address() {
    let (_s, ipam) = ipam_with(&[network("prod", 100, "10.1.0.0/24", &[])]).await;
    let a = ipam.allocate("prod", &id(1), None, 1000).await.unwrap();
    assert_eq!(a.ip, ip("10.1.0.2"));
    assert_eq!(a.state, IpState::Assigned);
    let b = ipam.allocate("prod", &id(2), None, 1000).await.unwrap();
    assert_eq!(b.ip, ip("10.1.0.3"));
    // Asking again (restart, migration, failover) returns the same address.
    let again = ipam.allocate("prod", &id(1), None, 5000).await.unwrap();
    assert_eq!(again, a);
    let static_again = ipam
        .allocate("prod", &id(1), Some(a.ip), 5000)
        .await
        .unwrap();
    assert_eq!(static_again, a);
    assert_eq!(ipam.lookup(&id(1)).await.unwrap(), Some(a.clone()));
    assert_eq!(ipam.lookup(&id(9)).await.unwrap(), None);
    let list = ipam.list("prod").await.unwrap();
    assert_eq!(list, vec![a.clone(), b]);
    // Another address for the same identity is refused, naming both.
    let err = ipam
        .allocate("prod", &id(1), Some(ip("10.1.0.50")), 5000)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("10.1.0.2") && msg.contains("10.1.0.50"),
        "{msg}"
    );
}

#[tokio::test]
async fn static_requests_for_unusable_addresses_fail_clearly() {
    let (store, ipam) = ipam_with(&[network(
        "prod",
        100,
        "10.1.0.0/24",
        &[("10.1.0.10", "10.1.0.19")],
    )])
    .await;
    ipam.allocate("prod", &id(1), Some(ip("10.1.0.30")), 0)
        .await
        .unwrap();
    let rev = store.revision().await.unwrap();
    let cases = [
        ("10.1.0.0", "network address"),
        ("10.1.0.255", "broadcast address"),
        ("10.1.0.1", "gateway"),
        ("10.1.0.15", "reserved range 10.1.0.10-10.1.0.19"),
        ("10.9.0.5", "outside the subnet 10.1.0.0/24"),
        ("10.1.0.30", "assigned to shop/production/web/1"),
    ];
    for (addr, why) in cases {
        let err = ipam
            .allocate("prod", &id(2), Some(ip(addr)), 0)
            .await
            .unwrap_err();
        assert!(matches!(err, IpamError::Unavailable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(addr) && msg.contains(why), "{addr}: {msg}");
    }
    // Nothing was written by the refusals.
    assert_eq!(store.revision().await.unwrap(), rev);
    assert_eq!(ipam.lookup(&id(2)).await.unwrap(), None);
}

#[tokio::test]
async fn exhaustion_names_the_network() {
    let (_s, ipam) = ipam_with(&[network(
        "tiny",
        7,
        "10.2.0.0/29",
        &[("10.2.0.5", "10.2.0.6")],
    )])
    .await;
    // .0 network, .1 gateway, .5-.6 reserved, .7 broadcast: .2 .3 .4 remain.
    let mut got = HashSet::new();
    for i in 0..3 {
        got.insert(ipam.allocate("tiny", &id(i), None, 0).await.unwrap().ip);
    }
    assert_eq!(got, [ip("10.2.0.2"), ip("10.2.0.3"), ip("10.2.0.4")].into());
    let err = ipam.allocate("tiny", &id(3), None, 0).await.unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }));
    assert!(err.to_string().contains("\"tiny\""), "{err}");
    let err = ipam.allocate("nope", &id(3), None, 0).await.unwrap_err();
    assert!(matches!(err, IpamError::NetworkNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn released_addresses_wait_in_quarantine() {
    let (store, ipam) = ipam_with(&[network(
        "tiny",
        7,
        "10.2.0.0/29",
        &[("10.2.0.3", "10.2.0.6")],
    )])
    .await;
    // Only 10.2.0.2 is usable.
    let a = ipam.allocate("tiny", &id(1), None, 0).await.unwrap();
    assert_eq!(a.ip, ip("10.2.0.2"));
    let released = ipam.release(&id(1), 10 * MIN).await.unwrap().unwrap();
    assert_eq!(released.state, IpState::Quarantined);
    assert_eq!(released.since_ms, 10 * MIN);
    assert_eq!(ipam.lookup(&id(1)).await.unwrap(), None);
    assert_eq!(
        ipam.release(&id(1), 10 * MIN).await.unwrap(),
        None,
        "idempotent"
    );
    let kv = store.get(&keys::ip("tiny", a.ip)).await.unwrap().unwrap();
    assert_eq!(json::decode::<IpAssignment>(&kv).unwrap(), released);

    // Another identity gets neither the dynamic nor the static address
    // before 5 minutes have passed.
    let err = ipam
        .allocate("tiny", &id(2), None, 14 * MIN)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpamError::Exhausted { quarantined: 1, .. }),
        "{err:?}"
    );
    let err = ipam
        .allocate("tiny", &id(2), Some(a.ip), 14 * MIN)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpamError::Unavailable { reason: Unavailable::Quarantined { until_ms, .. }, .. } if until_ms == 15 * MIN),
        "{err:?}"
    );
    // At the deadline it is free for anyone.
    let b = ipam.allocate("tiny", &id(2), None, 15 * MIN).await.unwrap();
    assert_eq!(b.ip, a.ip);
    assert_eq!(b.identity, id(2));
}

#[tokio::test]
async fn an_identity_takes_its_quarantined_address_back() {
    let (_s, ipam) = ipam_with(&[network("prod", 100, "10.1.0.0/24", &[])]).await;
    let a = ipam.allocate("prod", &id(1), None, 0).await.unwrap();
    ipam.allocate("prod", &id(2), None, 0).await.unwrap();
    ipam.release(&id(1), MIN).await.unwrap();
    // Deleted and recreated within the quarantine: same address back.
    let again = ipam.allocate("prod", &id(1), None, 2 * MIN).await.unwrap();
    assert_eq!(again.ip, a.ip);
    assert_eq!(again.state, IpState::Assigned);
}

#[tokio::test]
async fn release_by_address_and_zero_quarantine() {
    let mut n = network("fast", 5, "10.3.0.0/24", &[]);
    n.quarantine_secs = 0;
    let (store, ipam) = ipam_with(&[n]).await;
    let a = ipam.allocate("fast", &id(1), None, 0).await.unwrap();
    assert_eq!(
        ipam.release_ip("fast", ip("10.3.0.77"), 0).await.unwrap(),
        None
    );
    let r = ipam.release_ip("fast", a.ip, 0).await.unwrap().unwrap();
    assert_eq!(r.identity, id(1));
    // No quarantine: the record is gone and the address is free at once.
    assert!(store.get(&keys::ip("fast", a.ip)).await.unwrap().is_none());
    assert!(store.get(&keys::ip_owner(&id(1))).await.unwrap().is_none());
    assert_eq!(ipam.index_slot("fast", a.ip), Some(Slot::Free));
    let b = ipam.allocate("fast", &id(2), Some(a.ip), 0).await.unwrap();
    assert_eq!(b.ip, a.ip);
}

#[tokio::test]
async fn an_identity_holds_one_address() {
    let (_s, ipam) = ipam_with(&[
        network("a", 10, "10.1.0.0/24", &[]),
        network("b", 11, "10.2.0.0/24", &[]),
    ])
    .await;
    ipam.allocate("a", &id(1), None, 0).await.unwrap();
    let err = ipam.allocate("b", &id(1), None, 0).await.unwrap_err();
    assert!(
        matches!(err, IpamError::IdentityHoldsOther { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("release it"), "{err}");
}

#[tokio::test]
async fn rebuild_restores_the_index() {
    let (store, ipam) = ipam_with(&[
        network("a", 10, "10.1.0.0/24", &[]),
        network("b", 11, "10.2.0.0/24", &[]),
    ])
    .await;
    for i in 0..20 {
        ipam.allocate(if i % 2 == 0 { "a" } else { "b" }, &id(i), None, 0)
            .await
            .unwrap();
    }
    ipam.release(&id(0), 1000).await.unwrap();
    // A fresh instance (a restarted server) rebuilds from the store.
    let fresh = Ipam::new(store.clone());
    assert_eq!(fresh.rebuild().await.unwrap(), 20);
    for i in 1..20 {
        let a = ipam.lookup(&id(i)).await.unwrap().unwrap();
        assert_eq!(fresh.index_slot(&a.network, a.ip), Some(Slot::Assigned));
    }
    let q = fresh.index_slot("a", ip("10.1.0.2"));
    assert_eq!(q, Some(Slot::Quarantined(1000 + 300_000)));
    // Its next allocation does not collide with anything already assigned.
    let rev = store.revision().await.unwrap();
    let n = fresh.allocate("a", &id(100), None, 2000).await.unwrap();
    assert_eq!(n.ip, ip("10.1.0.12"));
    assert_eq!(
        store.revision().await.unwrap(),
        rev + 1,
        "one txn, no conflict"
    );
}

#[tokio::test]
async fn network_rules() {
    let (_s, ipam) = ipam_with(&[network("a", 10, "10.1.0.0/16", &[])]).await;
    let err = ipam
        .create_network(network("b", 11, "10.1.200.0/24", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlaps network \"a\""), "{err}");
    let err = ipam
        .create_network(network("b", 10, "10.2.0.0/24", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vlan 10"), "{err}");
    let err = ipam
        .create_network(network("a", 12, "10.3.0.0/24", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::NetworkExists(_)));
    let mut bad = network("c", 0, "10.4.0.0/24", &[]);
    bad.gateway = ip("10.5.0.1");
    let err = ipam.create_network(bad).await.unwrap_err();
    let IpamError::Invalid(v) = err else {
        panic!("{err:?}")
    };
    assert_eq!(v.errors.len(), 2);
    assert_eq!(ipam.list_networks().await.unwrap().len(), 1);

    // Delete is refused while an address is assigned, allowed after release.
    ipam.allocate("a", &id(1), None, 0).await.unwrap();
    let err = ipam.delete_network("a").await.unwrap_err();
    assert!(
        err.to_string().contains("10.1.0.2 (shop/production/web/1)"),
        "{err}"
    );
    // The refused delete left no marker behind: allocation still works.
    ipam.allocate("a", &id(2), None, 0).await.unwrap();
    ipam.release(&id(1), 0).await.unwrap();
    ipam.release(&id(2), 0).await.unwrap();
    let gone = ipam.delete_network("a").await.unwrap();
    assert_eq!(gone.name, "a");
    assert!(ipam.list_networks().await.unwrap().is_empty());
    assert!(matches!(
        ipam.list("a").await,
        Err(IpamError::NetworkNotFound(_))
    ));
    assert!(matches!(
        ipam.allocate("a", &id(3), None, 0).await,
        Err(IpamError::NetworkNotFound(_))
    ));
    // The quarantined records went with it: a new network of that name starts empty.
    ipam.create_network(network("a", 10, "10.1.0.0/16", &[]))
        .await
        .unwrap();
    assert!(ipam.list("a").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_instance_never_double_assigns() {
    let (store, one) = ipam_with(&[network("tiny", 7, "10.2.0.0/29", &[])]).await;
    let two = Ipam::new(store.clone());
    two.rebuild().await.unwrap();
    // `one` takes every address; `two` has not seen any of it.
    let mut held = HashSet::new();
    for i in 0..5 {
        held.insert(one.allocate("tiny", &id(i), None, 0).await.unwrap().ip);
    }
    let err = two.allocate("tiny", &id(10), None, 0).await.unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err:?}");
    let err = two
        .allocate("tiny", &id(10), Some(ip("10.2.0.4")), 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("assigned to"), "{err}");
    // `one` releases; `two` still believes the address taken, yet finds it
    // once the quarantine is over.
    let r = one.release(&id(3), 0).await.unwrap().unwrap();
    let got = two.allocate("tiny", &id(10), None, 300_000).await.unwrap();
    assert_eq!(got.ip, r.ip);
}

/// Several `Ipam` instances over one store, as several servers, allocating
/// for distinct identities at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocators_never_share_an_address() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let admin = Ipam::new(store.clone());
    admin
        .create_network(network(
            "prod",
            100,
            "10.8.0.0/22",
            &[("10.8.1.0", "10.8.1.255")],
        ))
        .await
        .unwrap();
    const INSTANCES: u32 = 4;
    const PER: u32 = 150;
    let mut tasks = Vec::new();
    for n in 0..INSTANCES {
        let ipam = Arc::new(Ipam::new(store.clone()));
        for t in 0..3 {
            let ipam = ipam.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in (t..PER).step_by(3) {
                    let who = id(n * 1000 + i);
                    let a = ipam.allocate("prod", &who, None, 0).await.unwrap();
                    // Idempotence under contention too.
                    assert_eq!(ipam.allocate("prod", &who, None, 1).await.unwrap(), a);
                    got.push(a);
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), (INSTANCES * PER) as usize);
    let ips: HashSet<_> = all.iter().map(|a| a.ip).collect();
    assert_eq!(ips.len(), all.len(), "an address was handed out twice");
    let idents: HashSet<_> = all.iter().map(|a| a.identity.clone()).collect();
    assert_eq!(idents.len(), all.len());
    // The store agrees: one record per address, each with its owner index.
    let list = admin.list("prod").await.unwrap();
    assert_eq!(list.len(), all.len());
    for rec in &list {
        assert!(!(ip("10.8.1.0")..=ip("10.8.1.255")).contains(&rec.ip));
        assert_eq!(
            admin.lookup(&rec.identity).await.unwrap().as_ref(),
            Some(rec)
        );
    }
}

/// A delete that died between its two steps leaves its marker: allocations
/// refuse the network (no address can slip in) and the next delete finishes.
#[tokio::test]
async fn an_interrupted_delete_blocks_allocation_until_finished() {
    let (store, ipam) = ipam_with(&[network("a", 10, "10.1.0.0/24", &[])]).await;
    ipam.allocate("a", &id(1), None, 0).await.unwrap();
    ipam.release(&id(1), 0).await.unwrap();
    store
        .put(&keys::network_deleting("a"), b"deleting".to_vec(), None)
        .await
        .unwrap();
    let err = ipam.allocate("a", &id(2), None, 0).await.unwrap_err();
    assert!(matches!(err, IpamError::NetworkDeleting(_)), "{err:?}");
    assert!(err.to_string().contains("being deleted"), "{err}");
    assert_eq!(ipam.lookup(&id(2)).await.unwrap(), None);
    ipam.delete_network("a").await.unwrap();
    assert!(store
        .get(&keys::network_deleting("a"))
        .await
        .unwrap()
        .is_none());
    ipam.create_network(network("a", 10, "10.1.0.0/24", &[]))
        .await
        .unwrap();
    assert_eq!(
        ipam.allocate("a", &id(2), None, 0).await.unwrap().ip,
        ip("10.1.0.2")
    );
}

#[tokio::test]
async fn expired_quarantine_records_are_cleaned_up() {
    let (_s, ipam) = ipam_with(&[network("a", 10, "10.1.0.0/24", &[])]).await;
    for i in 0..3 {
        ipam.allocate("a", &id(i), None, 0).await.unwrap();
    }
    ipam.release(&id(0), 0).await.unwrap();
    ipam.release(&id(1), 200_000).await.unwrap();
    // At 300 s only the first release has served its 5 minutes.
    assert_eq!(ipam.expire_quarantine("a", 300_000).await.unwrap(), 1);
    let states: Vec<_> = ipam
        .list("a")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, r.state))
        .collect();
    assert_eq!(
        states,
        [
            (ip("10.1.0.3"), IpState::Quarantined),
            (ip("10.1.0.4"), IpState::Assigned)
        ]
    );
    assert_eq!(ipam.index_slot("a", ip("10.1.0.2")), Some(Slot::Free));
    assert_eq!(ipam.expire_quarantine("a", 300_000).await.unwrap(), 0);
    assert_eq!(ipam.expire_quarantine("a", 500_000).await.unwrap(), 1);
    assert!(matches!(
        ipam.expire_quarantine("nope", 0).await,
        Err(IpamError::NetworkNotFound(_))
    ));
}
