//! Property tests: the in-memory pool against a set model, and the
//! store-backed service (two instances over one store, as two servers)
//! against a model of what the store must hold.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::{id, network};
use jdos_ipam::{AddressPool, Ipam, IpamError, Unavailable};
use jdos_store::{MemoryStore, Store};
use jdos_types::{IpState, Network};
use proptest::prelude::*;

// ---------------------------------------------------------------- pool ----

#[derive(Debug, Clone)]
enum PoolOp {
    Allocate,
    Release(usize),
    Quarantine(usize, u64),
    Assign(u32),
    Advance(u64),
}

fn pool_op() -> impl Strategy<Value = PoolOp> {
    prop_oneof![
        4 => Just(PoolOp::Allocate),
        2 => any::<usize>().prop_map(PoolOp::Release),
        2 => (any::<usize>(), 0u64..50).prop_map(|(i, d)| PoolOp::Quarantine(i, d)),
        1 => (0u32..64).prop_map(PoolOp::Assign),
        1 => (0u64..30).prop_map(PoolOp::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The pool never hands out a special, assigned or quarantined address,
    /// says "none" only when nothing is free, and counts correctly.
    #[test]
    fn pool_never_double_assigns(ops in prop::collection::vec(pool_op(), 1..300)) {
        let net = network("p", 1, "10.0.0.0/26", &[("10.0.0.20", "10.0.0.29")]);
        let mut pool = AddressPool::new(&net).unwrap();
        let usable: Vec<Ipv4Addr> = (0..64u32)
            .map(|o| Ipv4Addr::from(u32::from(net.subnet.network()) + o))
            .filter(|ip| net.assignable(*ip))
            .collect();
        let mut assigned: Vec<Ipv4Addr> = Vec::new();
        let mut quarantined: HashMap<Ipv4Addr, u64> = HashMap::new();
        let mut now = 0u64;
        for op in ops {
            pool.reclaim(now);
            quarantined.retain(|_, until| *until > now);
            match op {
                PoolOp::Allocate => match pool.allocate() {
                    Some(ip) => {
                        prop_assert!(net.assignable(ip), "special {ip}");
                        prop_assert!(!assigned.contains(&ip), "double {ip}");
                        prop_assert!(!quarantined.contains_key(&ip), "quarantined {ip}");
                        assigned.push(ip);
                    }
                    None => prop_assert_eq!(assigned.len() + quarantined.len(), usable.len()),
                },
                PoolOp::Release(i) if !assigned.is_empty() => {
                    let ip = assigned.swap_remove(i % assigned.len());
                    pool.release(ip);
                }
                PoolOp::Quarantine(i, d) if !assigned.is_empty() => {
                    let ip = assigned.swap_remove(i % assigned.len());
                    pool.quarantine(ip, now + d);
                    if d > 0 {
                        quarantined.insert(ip, now + d);
                    } else {
                        pool.reclaim(now);
                    }
                }
                PoolOp::Assign(off) => {
                    let ip = Ipv4Addr::from(u32::from(net.subnet.network()) + off);
                    let ok = pool.assign(ip);
                    prop_assert_eq!(ok, net.assignable(ip));
                    if ok {
                        quarantined.remove(&ip);
                        if !assigned.contains(&ip) {
                            assigned.push(ip);
                        }
                    }
                }
                PoolOp::Advance(d) => now += d,
                _ => {}
            }
            let free = usable.len() - assigned.len() - quarantined.len();
            prop_assert_eq!(pool.free_count() as usize, free);
        }
    }
}

// ------------------------------------------------------------- service ----

const Q_MS: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    /// Instance, identity, static offset in the /28 (≥ 16: outside it).
    Alloc(bool, u32, Option<u32>),
    Release(bool, u32),
    ReleaseIp(bool, u32),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u32..14, prop::option::weighted(0.3, 0u32..18))
            .prop_map(|(i, w, s)| Op::Alloc(i, w, s)),
        2 => (any::<bool>(), 0u32..14).prop_map(|(i, w)| Op::Release(i, w)),
        1 => (any::<bool>(), 0u32..16).prop_map(|(i, o)| Op::ReleaseIp(i, o)),
        2 => (0u64..6_000).prop_map(Op::Tick),
    ]
}

/// What the store must hold: address → (identity, state, since).
type Model = HashMap<Ipv4Addr, (u32, IpState, u64)>;

fn test_net() -> Network {
    // .0 network, .1 gateway, .5-.6 reserved, .15 broadcast: 11 usable.
    let mut n = network("m", 9, "10.9.0.0/28", &[("10.9.0.5", "10.9.0.6")]);
    n.quarantine_secs = Q_MS / 1000;
    n
}

fn addr(off: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 9, 0, 0)) + off)
}

/// May `who` get `ip` at `now` per the model?
fn takeable(model: &Model, net: &Network, ip: Ipv4Addr, who: u32, now: u64) -> bool {
    net.assignable(ip)
        && match model.get(&ip) {
            None => true,
            Some((_, IpState::Assigned, _)) => false,
            Some((w, IpState::Quarantined, since)) => *w == who || since + Q_MS <= now,
        }
}

fn held(model: &Model, who: u32) -> Option<Ipv4Addr> {
    model
        .iter()
        .find(|(_, (w, s, _))| *w == who && *s == IpState::Assigned)
        .map(|(ip, _)| *ip)
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let net = test_net();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = Ipam::new(store.clone());
    a.create_network(net.clone()).await.unwrap();
    let b = Ipam::new(store.clone());
    b.rebuild().await.unwrap();
    let mut model = Model::new();
    let mut now = 1_000u64;
    for op in ops {
        match op {
            Op::Tick(d) => now += d,
            Op::Alloc(inst, who, off) => {
                let ipam = if inst { &a } else { &b };
                let want = off.map(addr);
                let got = ipam.allocate("m", &id(who), want, now).await;
                match (held(&model, who), want) {
                    (Some(h), w) if w.is_none_or(|w| w == h) => {
                        // Idempotent: the same address, untouched.
                        prop_assert_eq!(got.unwrap().ip, h);
                    }
                    (Some(_), _) => {
                        let is_holds = matches!(got, Err(IpamError::IdentityHoldsOther { .. }));
                        prop_assert!(is_holds, "{:?}", got);
                    }
                    (None, Some(w)) => {
                        if takeable(&model, &net, w, who, now) {
                            prop_assert_eq!(got.unwrap().ip, w);
                            model.insert(w, (who, IpState::Assigned, now));
                        } else {
                            let Err(IpamError::Unavailable { ip, reason, .. }) = got else {
                                return Err(TestCaseError::fail(format!("{w}: {got:?}")));
                            };
                            prop_assert_eq!(ip, w);
                            let conflict = matches!(
                                reason,
                                Unavailable::Assigned(_) | Unavailable::Quarantined { .. }
                            );
                            // Taken or quarantined exactly when the address itself is usable.
                            prop_assert_eq!(conflict, net.assignable(w), "{:?}", reason);
                        }
                    }
                    (None, None) => match got {
                        Ok(rec) => {
                            prop_assert!(
                                takeable(&model, &net, rec.ip, who, now),
                                "{} handed to {} at {}: {:?}",
                                rec.ip,
                                who,
                                now,
                                model.get(&rec.ip)
                            );
                            model.insert(rec.ip, (who, IpState::Assigned, now));
                        }
                        Err(IpamError::Exhausted { .. }) => {
                            let any = (0..16).any(|o| takeable(&model, &net, addr(o), who, now));
                            prop_assert!(!any, "exhausted with a free address");
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                    },
                }
            }
            Op::Release(inst, who) => {
                let ipam = if inst { &a } else { &b };
                let got = ipam.release(&id(who), now).await.unwrap();
                match held(&model, who) {
                    Some(h) => {
                        let rec = got.unwrap();
                        prop_assert_eq!((rec.ip, rec.state), (h, IpState::Quarantined));
                        model.insert(h, (who, IpState::Quarantined, now));
                    }
                    None => prop_assert!(got.is_none()),
                }
            }
            Op::ReleaseIp(inst, off) => {
                let ipam = if inst { &a } else { &b };
                let ip = addr(off);
                let got = ipam.release_ip("m", ip, now).await.unwrap();
                match model.get(&ip).copied() {
                    Some((who, IpState::Assigned, _)) => {
                        prop_assert_eq!(got.unwrap().identity, id(who));
                        model.insert(ip, (who, IpState::Quarantined, now));
                    }
                    _ => prop_assert!(got.is_none()),
                }
            }
        }
        // The store holds exactly the model, and the identity index agrees.
        let list = a.list("m").await.unwrap();
        let stored: Model = list
            .iter()
            .map(|r| (r.ip, (r.identity.index, r.state, r.since_ms)))
            .collect();
        prop_assert_eq!(&stored, &model);
        let mut seen = HashSet::new();
        for who in 0..14 {
            let l = b.lookup(&id(who)).await.unwrap().map(|r| r.ip);
            prop_assert_eq!(l, held(&model, who));
            if let Some(ip) = l {
                prop_assert!(seen.insert(ip), "{} held twice", ip);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Never double-assigns, honours quarantine, rejects static conflicts,
    /// keeps an identity's address, frees after quarantine — with two
    /// instances whose indexes go stale behind each other's backs.
    #[test]
    fn service_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
