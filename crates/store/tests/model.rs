//! Property test: random operation sequences give the same results on
//! `MemoryStore` as on a plain model of etcd's semantics, and the watch
//! history replays to the final state.

use std::collections::BTreeMap;

use jdos_store::{
    CmpOp, CmpTarget, Compare, EventKind, KeyValue, MemoryStore, OpResponse, RangeOptions, Store,
    Txn, TxnOp,
};
use proptest::prelude::*;

const KEYS: &[&str] = &["/a/1", "/a/2", "/a/3", "/b/1", "/b/2", "/c"];
const PREFIXES: &[&str] = &["/a/", "/b/", "/", "/c", "/z/"];

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    DeletePrefix(usize),
    /// CAS on the key's mod revision (offset from the true one: 0 = match).
    Cas(usize, u64, u8),
    CmpVersion(usize, CmpOp, u64, u8),
    CmpValue(usize, CmpOp, u8, u8),
    Range(usize, Option<usize>, usize),
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Equal),
        Just(CmpOp::NotEqual),
        Just(CmpOp::Less),
        Just(CmpOp::Greater)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    prop_oneof![
        4 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => k.clone().prop_map(Op::Delete),
        1 => (0..PREFIXES.len()).prop_map(Op::DeletePrefix),
        3 => (k.clone(), 0..2u64, any::<u8>()).prop_map(|(k, o, v)| Op::Cas(k, o, v)),
        2 => (k.clone(), cmp_op(), 0..4u64, any::<u8>()).prop_map(|(k, c, n, v)| Op::CmpVersion(k, c, n, v)),
        2 => (k.clone(), cmp_op(), any::<u8>(), any::<u8>()).prop_map(|(k, c, n, v)| Op::CmpValue(k, c, n, v)),
        2 => (0..PREFIXES.len(), proptest::option::of(k), 0..4usize).prop_map(|(p, a, l)| Op::Range(p, a, l)),
    ]
}

#[derive(Default)]
struct Model {
    kvs: BTreeMap<String, KeyValue>,
    rev: u64,
}

impl Model {
    fn put(&mut self, key: &str, v: u8) -> Option<KeyValue> {
        self.rev += 1;
        let prev = self.kvs.get(key).cloned();
        let kv = KeyValue {
            key: key.into(),
            value: vec![v],
            create_revision: prev.as_ref().map_or(self.rev, |p| p.create_revision),
            mod_revision: self.rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease: None,
        };
        self.kvs.insert(key.into(), kv);
        prev
    }

    fn compare(&self, key: &str, op: CmpOp, t: &CmpTarget) -> bool {
        let kv = self.kvs.get(key);
        let ord = match t {
            CmpTarget::Version(n) => kv.map_or(0, |k| k.version).cmp(n),
            CmpTarget::ModRevision(n) => kv.map_or(0, |k| k.mod_revision).cmp(n),
            CmpTarget::CreateRevision(n) => kv.map_or(0, |k| k.create_revision).cmp(n),
            CmpTarget::Value(v) => match kv {
                None => return false,
                Some(k) => k.value.cmp(v),
            },
        };
        match op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Less => ord.is_lt(),
            CmpOp::Greater => ord.is_gt(),
        }
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let s = MemoryStore::new();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let r = s.put(KEYS[k], vec![v], None).await.expect("put");
                m.put(KEYS[k], v);
                prop_assert_eq!(r, m.rev);
            }
            Op::Delete(k) => {
                let r = s.delete(KEYS[k]).await.expect("delete");
                let want = m.kvs.remove(KEYS[k]).map(|_| {
                    m.rev += 1;
                    m.rev
                });
                prop_assert_eq!(r, want);
            }
            Op::DeletePrefix(p) => {
                let r = s
                    .txn(Txn::new().and_then(TxnOp::DeletePrefix {
                        prefix: PREFIXES[p].into(),
                    }))
                    .await
                    .expect("txn");
                let before = m.kvs.len();
                m.kvs.retain(|k, _| !k.starts_with(PREFIXES[p]));
                let deleted = (before - m.kvs.len()) as u64;
                if deleted > 0 {
                    m.rev += 1;
                }
                prop_assert_eq!(&r.responses, &vec![OpResponse::Delete { deleted }]);
                prop_assert_eq!(r.revision, m.rev);
            }
            Op::Cas(k, off, v) => {
                let cur = m.kvs.get(KEYS[k]).map_or(0, |kv| kv.mod_revision);
                let c = Compare::mod_revision(KEYS[k], cur + off);
                let ok = m.compare(KEYS[k], CmpOp::Equal, &c.target);
                check_txn(&s, &mut m, c, ok, k, v).await?;
            }
            Op::CmpVersion(k, op, n, v) => {
                let c = Compare {
                    key: KEYS[k].into(),
                    op,
                    target: CmpTarget::Version(n),
                };
                let ok = m.compare(KEYS[k], op, &c.target);
                check_txn(&s, &mut m, c, ok, k, v).await?;
            }
            Op::CmpValue(k, op, n, v) => {
                let c = Compare {
                    key: KEYS[k].into(),
                    op,
                    target: CmpTarget::Value(vec![n]),
                };
                let ok = m.compare(KEYS[k], op, &c.target);
                check_txn(&s, &mut m, c, ok, k, v).await?;
            }
            Op::Range(p, after, limit) => {
                let opts = RangeOptions {
                    start_after: after.map(|a| KEYS[a].to_string()),
                    limit,
                    keys_only: false,
                };
                let page = s.range(PREFIXES[p], opts.clone()).await.expect("range");
                let all: Vec<&KeyValue> = m
                    .kvs
                    .values()
                    .filter(|kv| kv.key.starts_with(PREFIXES[p]))
                    .filter(|kv| opts.start_after.as_ref().is_none_or(|a| kv.key > *a))
                    .collect();
                let n = if limit == 0 {
                    all.len()
                } else {
                    limit.min(all.len())
                };
                let want: Vec<KeyValue> = all[..n].iter().map(|kv| (*kv).clone()).collect();
                prop_assert_eq!(&page.kvs, &want);
                prop_assert_eq!(page.more, n < all.len());
                prop_assert_eq!(page.revision, m.rev);
            }
        }
    }
    prop_assert_eq!(s.revision().await.expect("revision"), m.rev);
    let all = s.range("", RangeOptions::default()).await.expect("range");
    let want: Vec<KeyValue> = m.kvs.values().cloned().collect();
    prop_assert_eq!(&all.kvs, &want);

    // Replaying the whole history rebuilds the final state, revision by revision.
    if m.rev > 0 {
        let mut w = s.watch("", 1).await.expect("watch");
        let mut replay: BTreeMap<String, KeyValue> = BTreeMap::new();
        let mut rev = 0;
        while rev < m.rev {
            let batch = w.next().await.expect("batch").expect("ok");
            let r = batch[0].kv.mod_revision;
            prop_assert_eq!(r, rev + 1, "gap or duplicate in history");
            rev = r;
            for ev in batch {
                prop_assert_eq!(ev.kv.mod_revision, r);
                prop_assert_eq!(ev.prev.as_ref(), replay.get(&ev.kv.key));
                match ev.kind {
                    EventKind::Put => {
                        replay.insert(ev.kv.key.clone(), ev.kv);
                    }
                    EventKind::Delete => {
                        replay.remove(&ev.kv.key);
                    }
                }
            }
        }
        prop_assert_eq!(replay, m.kvs);
    }
    Ok(())
}

/// A txn: on success put `v` into key k, on failure get it.
async fn check_txn(
    s: &MemoryStore,
    m: &mut Model,
    c: Compare,
    ok: bool,
    k: usize,
    v: u8,
) -> Result<(), TestCaseError> {
    let r = s
        .txn(
            Txn::new()
                .when(c)
                .and_then(TxnOp::put(KEYS[k], vec![v]))
                .or_else(TxnOp::Get {
                    key: KEYS[k].into(),
                }),
        )
        .await
        .expect("txn");
    prop_assert_eq!(r.succeeded, ok);
    if ok {
        let prev = m.put(KEYS[k], v);
        prop_assert_eq!(&r.responses, &vec![OpResponse::Put { prev }]);
    } else {
        let kv = m.kvs.get(KEYS[k]).cloned();
        prop_assert_eq!(&r.responses, &vec![OpResponse::Get { kv }]);
    }
    prop_assert_eq!(r.revision, m.rev);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn memory_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(run(ops))?;
    }
}
