//! The store-backed IPAM service: the store is the truth, the per-network
//! [`AddressPool`] only proposes candidates.
//!
//! Every change is one store transaction that writes the address record at
//! `keys::ip(network, ip)` and the identity index at `keys::ip_owner(identity)`
//! together, guarded by compares on both (and on the network key and its
//! deletion marker). Two `Ipam` instances over one store — two servers — can
//! therefore never hand out one address twice: the loser's compare fails, it
//! learns the current records from the transaction's failure branch, and
//! retries with another candidate.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jdos_store::{for_each_page, json, Compare, KeyValue, OpResponse, Revision, Store, Txn, TxnOp};
use jdos_types::{keys, InstanceId, IpAssignment, IpState, Network, UnixMillis};
use serde::{Deserialize, Serialize};
use tracing::{debug, info_span, Instrument};

use crate::error::{IpamError, Result};
use crate::pool::{structural_reason, AddressPool, Slot, Unavailable};

/// Attempts before an operation gives up under contention.
const MAX_ATTEMPTS: u32 = 64;
/// After this many conflicts in one call, reload the whole network once:
/// another allocator is busy on it and learning one record per conflict is
/// too slow. (Once, because a reload of a big network costs a full read.)
const RELOAD_AFTER_CONFLICTS: u32 = 2;
/// Page size of range reads.
const PAGE: usize = 2_000;
/// How long a reservation outlives reloads of its network's index. A batch
/// commits or aborts within seconds; one whose caller vanished mid-way (a
/// cancelled future) must not keep its addresses out of use for good.
const HOLD_TTL: Duration = Duration::from_secs(60);

/// A hold taken at `at` still keeps its address taken.
fn hold_live(at: &Instant) -> bool {
    at.elapsed() < HOLD_TTL
}

/// The value of the identity index key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) network: String,
    pub(crate) ip: Ipv4Addr,
}

/// What the index keeps of one address record: little, so that a rebuild
/// of 150,000 records allocates little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    /// `app/env/group/index`.
    identity: Box<str>,
    state: IpState,
    since_ms: UnixMillis,
    /// Mod revision of the record's key.
    rev: Revision,
}

/// An address record borrowed from its JSON (no allocation but the index's).
#[derive(Deserialize)]
struct RecordRef<'a> {
    ip: Ipv4Addr,
    #[serde(borrow)]
    identity: IdentityRef<'a>,
    state: IpState,
    since_ms: UnixMillis,
}

#[derive(Deserialize)]
struct IdentityRef<'a> {
    #[serde(borrow)]
    app: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    env: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    group: std::borrow::Cow<'a, str>,
    index: u32,
}

impl Rec {
    pub(crate) fn of(a: &IpAssignment, rev: Revision) -> Self {
        Rec {
            identity: a.identity.to_string().into_boxed_str(),
            state: a.state,
            since_ms: a.since_ms,
            rev,
        }
    }

    /// Decodes a stored record straight into the index's form.
    pub(crate) fn decode(kv: &KeyValue) -> Result<(Ipv4Addr, Rec)> {
        let r: RecordRef<'_> = serde_json::from_slice(&kv.value).map_err(|e| {
            jdos_store::StoreError::Backend(format!("corrupt value at {}: {e}", kv.key))
        })?;
        let i = &r.identity;
        let identity = format!("{}/{}/{}/{}", i.app, i.env, i.group, i.index).into_boxed_str();
        Ok((
            r.ip,
            Rec {
                identity,
                state: r.state,
                since_ms: r.since_ms,
                rev: kv.mod_revision,
            },
        ))
    }
}

/// What one `Ipam` instance knows about a network.
pub(crate) struct NetCache {
    network: Network,
    /// Mod revision of the network key this cache was built from.
    pub(crate) rev: Revision,
    pub(crate) pool: AddressPool,
    /// Store records with their mod revision.
    pub(crate) records: HashMap<Ipv4Addr, Rec>,
    /// Quarantined addresses by their last identity (which may take them back).
    quarantined_by: HashMap<Box<str>, Ipv4Addr>,
}

impl NetCache {
    pub(crate) fn quarantine_ms(&self) -> u64 {
        self.network.quarantine_secs.saturating_mul(1000)
    }

    /// Applies one record as read from the store (`None`: the key is absent).
    pub(crate) fn apply(&mut self, ip: Ipv4Addr, rec: Option<Rec>) {
        if let Some(old) = self.records.remove(&ip) {
            if old.state == IpState::Quarantined
                && self.quarantined_by.get(&old.identity) == Some(&ip)
            {
                self.quarantined_by.remove(&old.identity);
            }
        }
        match rec {
            None => self.pool.release(ip),
            Some(rec) => {
                match rec.state {
                    IpState::Assigned => {
                        self.pool.assign(ip);
                    }
                    IpState::Quarantined => {
                        let until = rec.since_ms.saturating_add(self.quarantine_ms());
                        self.pool.quarantine(ip, until);
                        self.quarantined_by.insert(rec.identity.clone(), ip);
                    }
                }
                self.records.insert(ip, rec);
            }
        }
    }

    /// Picks a candidate for `identity` and marks it taken in the pool.
    pub(crate) fn pick(
        &mut self,
        identity: &InstanceId,
        want: Option<Ipv4Addr>,
        now_ms: UnixMillis,
        may_verify: bool,
        may_reload: bool,
    ) -> Pick {
        self.pool.reclaim(now_ms);
        let me = identity.to_string();
        let ip = match want {
            Some(ip) => {
                if let Some(reason) = structural_reason(&self.network, ip) {
                    return Pick::Refused(reason);
                }
                let until = |r: &Rec| r.since_ms.saturating_add(self.quarantine_ms());
                let blocked = match self.records.get(&ip) {
                    Some(r) if r.state == IpState::Assigned => {
                        Some(Unavailable::Assigned(Some(r.identity.to_string())))
                    }
                    Some(r) if *r.identity != *me && until(r) > now_ms => {
                        Some(Unavailable::Quarantined {
                            identity: Some(r.identity.to_string()),
                            until_ms: until(r),
                        })
                    }
                    _ => None,
                };
                match blocked {
                    Some(_) if may_verify => return Pick::VerifyStatic(ip),
                    Some(reason) => return Pick::Refused(reason),
                    None => {}
                }
                self.pool.assign(ip);
                ip
            }
            None => {
                let own = self.quarantined_by.get(me.as_str()).copied().filter(|ip| {
                    matches!(self.records.get(ip),
                        Some(r) if r.state == IpState::Quarantined && *r.identity == *me)
                });
                match own.or_else(|| self.pool.allocate()) {
                    Some(ip) => {
                        self.pool.assign(ip);
                        ip
                    }
                    None if may_reload => return Pick::Reload,
                    None => {
                        let (assigned, quarantined) = self.counts();
                        return Pick::Exhausted {
                            assigned,
                            quarantined,
                            subnet: self.network.subnet,
                        };
                    }
                }
            }
        };
        Pick::Candidate {
            ip,
            prev_rev: self.records.get(&ip).map_or(0, |r| r.rev),
            net_rev: self.rev,
        }
    }

    fn counts(&self) -> (usize, usize) {
        let q = self
            .records
            .values()
            .filter(|r| r.state == IpState::Quarantined)
            .count();
        (self.records.len() - q, q)
    }
}

/// This instance's knowledge of its networks: one index per loaded network,
/// and the addresses its uncommitted picks reserved. The reservations live
/// apart from the indexes because an index is rebuilt from the store at any
/// time (another pick found it short, a conflict made it stale, a network
/// changed): a rebuilt index gets them back, so no address is handed to two
/// picks in flight — not even twice to one batch.
#[derive(Default)]
pub(crate) struct Index {
    nets: HashMap<String, NetCache>,
    held: HashMap<String, HashMap<Ipv4Addr, Instant>>,
}

impl Index {
    pub(crate) fn get(&self, network: &str) -> Option<&NetCache> {
        self.nets.get(network)
    }

    pub(crate) fn get_mut(&mut self, network: &str) -> Option<&mut NetCache> {
        self.nets.get_mut(network)
    }

    pub(crate) fn contains_key(&self, network: &str) -> bool {
        self.nets.contains_key(network)
    }

    /// Drops the index of `network` (its reservations stay).
    pub(crate) fn remove(&mut self, network: &str) {
        self.nets.remove(network);
    }

    /// Installs a freshly loaded index, with the reservations still in force.
    pub(crate) fn insert(&mut self, mut cache: NetCache) {
        let name = cache.network.name.clone();
        if let Some(held) = self.held.get_mut(&name) {
            held.retain(|_, at| hold_live(at));
            for ip in held.keys() {
                cache.pool.assign(*ip);
            }
        }
        self.nets.insert(name, cache);
    }

    /// Replaces every index (a full rebuild).
    pub(crate) fn replace(&mut self, caches: Vec<NetCache>) {
        self.nets.clear();
        for c in caches {
            self.insert(c);
        }
    }

    /// Reserves `ip` on `network` until [`Index::unhold`].
    pub(crate) fn hold(&mut self, network: &str, ip: Ipv4Addr) {
        self.held
            .entry(network.to_string())
            .or_default()
            .insert(ip, Instant::now());
    }

    pub(crate) fn unhold(&mut self, network: &str, ips: &[Ipv4Addr]) {
        if let Some(held) = self.held.get_mut(network) {
            for ip in ips {
                held.remove(ip);
            }
            if held.is_empty() {
                self.held.remove(network);
            }
        }
    }

    /// Applies one record as read from the store (`None`: the key is absent)
    /// to `network`'s index, if loaded. A reserved address stays taken
    /// whatever the record says: its pick's commit will tell.
    pub(crate) fn apply(&mut self, network: &str, ip: Ipv4Addr, rec: Option<Rec>) {
        let Some(c) = self.nets.get_mut(network) else {
            return;
        };
        c.apply(ip, rec);
        // An expired hold no longer counts, as at a reload.
        let held = self.held.get(network).and_then(|h| h.get(&ip));
        if held.is_some_and(hold_live) {
            c.pool.assign(ip);
        }
    }
}

/// What [`NetCache::pick`] decided.
pub(crate) enum Pick {
    /// Try to commit this address.
    Candidate {
        ip: Ipv4Addr,
        prev_rev: Revision,
        net_rev: Revision,
    },
    /// The static address is refused for this reason.
    Refused(Unavailable),
    /// The static address looks taken: re-read it from the store first.
    VerifyStatic(Ipv4Addr),
    /// No free address in this index: reload it from the store first.
    Reload,
    /// No free address.
    Exhausted {
        assigned: usize,
        quarantined: usize,
        subnet: ipnet::Ipv4Net,
    },
}

/// Decodes an address record read from the store.
fn decode_record(kv: &KeyValue) -> Result<(IpAssignment, Revision)> {
    Ok((json::decode(kv)?, kv.mod_revision))
}

/// The IPAM service over a [`Store`].
pub struct Ipam {
    store: Arc<dyn Store>,
    index: Mutex<Index>,
}

impl Ipam {
    /// A service with an empty index; call [`Ipam::rebuild`] at start-up (or
    /// let each network load on first use).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Ipam {
            store,
            index: Mutex::new(Index::default()),
        }
    }

    /// The store this service writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a cache that may be stale, and
        // stale caches are safe (every write is compared against the store).
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the index of every network from the store. Returns the number
    /// of address records loaded.
    pub async fn rebuild(&self) -> Result<usize> {
        let span = info_span!("ipam.rebuild");
        async {
            let mut fresh = Vec::new();
            let mut total = 0;
            for kv in range_all(&*self.store, keys::NETWORKS).await? {
                let network: Network = json::decode(&kv)?;
                let cache = self.load_records(network, kv.mod_revision).await?;
                total += cache.records.len();
                fresh.push(cache);
            }
            self.lock().replace(fresh);
            debug!(records = total, "ipam index rebuilt");
            Ok(total)
        }
        .instrument(span)
        .await
    }

    async fn load_records(&self, network: Network, rev: Revision) -> Result<NetCache> {
        let pool = AddressPool::new(&network).ok_or_else(|| {
            IpamError::Invalid({
                let mut e = jdos_types::ValidationErrors::new();
                e.add("subnet", "out_of_range", "subnet larger than /8");
                e
            })
        })?;
        let mut cache = NetCache {
            network,
            rev,
            pool,
            records: HashMap::new(),
            quarantined_by: HashMap::new(),
        };
        let prefix = keys::ips_of_network(&cache.network.name);
        for_each_page(&*self.store, &prefix, PAGE, |kvs| {
            cache.records.reserve(kvs.len());
            for kv in kvs {
                let (ip, rec) = Rec::decode(kv)?;
                cache.apply(ip, Some(rec));
            }
            Ok::<_, IpamError>(())
        })
        .await?;
        Ok(cache)
    }

    /// Loads `network` into the cache (from the store) unless it is there.
    /// With `force`, reloads it.
    pub(crate) async fn ensure_loaded(&self, network: &str, force: bool) -> Result<()> {
        if !force && self.lock().contains_key(network) {
            return Ok(());
        }
        let Some(kv) = self.store.get(&keys::network(network)).await? else {
            self.lock().remove(network);
            return Err(IpamError::NetworkNotFound(network.to_string()));
        };
        let net: Network = json::decode(&kv)?;
        let cache = self.load_records(net, kv.mod_revision).await?;
        self.lock().insert(cache);
        Ok(())
    }

    /// Gives `identity` an address on `network`: the one it already holds
    /// (idempotent — this is what keeps an IP across restart, migration and
    /// failover), else `ip` when asked for a static address, else the one it
    /// released recently if still in quarantine, else the next free one.
    pub async fn allocate(
        &self,
        network: &str,
        identity: &InstanceId,
        ip: Option<Ipv4Addr>,
        now_ms: UnixMillis,
    ) -> Result<IpAssignment> {
        let span = info_span!("ipam.allocate", network, identity = %identity, ip = ?ip);
        self.allocate_inner(network, identity, ip, now_ms)
            .instrument(span)
            .await
    }

    async fn allocate_inner(
        &self,
        network: &str,
        identity: &InstanceId,
        want: Option<Ipv4Addr>,
        now_ms: UnixMillis,
    ) -> Result<IpAssignment> {
        let owner_key = keys::ip_owner(identity);
        let deleting_key = keys::network_deleting(network);
        let net_key = keys::network(network);
        let mut conflicts = 0;
        let mut verified_static = false;
        let mut reloaded = false;
        for _ in 0..MAX_ATTEMPTS {
            // 1. An identity keeps what it holds.
            if let Some(kv) = self.store.get(&owner_key).await? {
                let owner: Owner = json::decode(&kv)?;
                if owner.network != network || want.is_some_and(|w| w != owner.ip) {
                    return Err(IpamError::IdentityHoldsOther {
                        identity: identity.to_string(),
                        network: owner.network,
                        held: owner.ip,
                        requested: match want {
                            Some(w) => w.to_string(),
                            None => format!("an address on {network:?}"),
                        },
                    });
                }
                let ip_key = keys::ip(network, owner.ip);
                if let Some(kv) = self.store.get(&ip_key).await? {
                    let (rec, rev) = decode_record(&kv)?;
                    if rec.state == IpState::Assigned && rec.identity == *identity {
                        self.lock()
                            .apply(network, owner.ip, Some(Rec::of(&rec, rev)));
                        return Ok(rec);
                    }
                }
                // The index key points at a record that is not ours. Both are
                // only ever written together, so only a hand edit of the store
                // does that: report it rather than guess.
                return Err(IpamError::Store(jdos_store::StoreError::Backend(format!(
                    "identity index {owner_key} points at {} which is not assigned to {identity}",
                    owner.ip
                ))));
            }

            // 2. Pick a candidate from the index.
            self.ensure_loaded(network, conflicts == RELOAD_AFTER_CONFLICTS)
                .await?;
            let pick = {
                let mut nets = self.lock();
                // Dropped by a concurrent reload: load again.
                let Some(c) = nets.get_mut(network) else {
                    continue;
                };
                let pick = c.pick(identity, want, now_ms, !verified_static, !reloaded);
                if let Pick::Candidate { ip, .. } = &pick {
                    nets.hold(network, *ip);
                }
                pick
            };
            let (ip, prev_rev, net_rev) = match pick {
                Pick::Candidate {
                    ip,
                    prev_rev,
                    net_rev,
                } => (ip, prev_rev, net_rev),
                Pick::Refused(reason) => {
                    return Err(IpamError::Unavailable {
                        network: network.to_string(),
                        ip: want.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        reason,
                    });
                }
                Pick::Exhausted {
                    assigned,
                    quarantined,
                    subnet,
                } => {
                    return Err(IpamError::Exhausted {
                        network: network.to_string(),
                        subnet,
                        assigned,
                        quarantined,
                    });
                }
                Pick::VerifyStatic(ip) => {
                    // The cache may be stale: check the store once.
                    verified_static = true;
                    let fresh = match self.store.get(&keys::ip(network, ip)).await? {
                        Some(kv) => Some(Rec::decode(&kv)?.1),
                        None => None,
                    };
                    self.lock().apply(network, ip, fresh);
                    continue;
                }
                Pick::Reload => {
                    // This instance's index may be stale (another server
                    // released addresses): look again before saying exhausted.
                    reloaded = true;
                    self.ensure_loaded(network, true).await?;
                    continue;
                }
            };

            // 3. Commit it, guarded against every concurrent change.
            let ip_key = keys::ip(network, ip);
            let rec = IpAssignment {
                network: network.to_string(),
                ip,
                identity: identity.clone(),
                state: IpState::Assigned,
                since_ms: now_ms,
            };
            let owner = Owner {
                network: network.to_string(),
                ip,
            };
            let txn = Txn::new()
                .when(Compare::absent(owner_key.clone()))
                .when(Compare::mod_revision(ip_key.clone(), prev_rev))
                .when(Compare::mod_revision(net_key.clone(), net_rev))
                .when(Compare::absent(deleting_key.clone()))
                .and_then(TxnOp::put(ip_key.clone(), json::encode(&rec)?))
                .and_then(TxnOp::put(owner_key.clone(), json::encode(&owner)?))
                .or_else(TxnOp::Get {
                    key: ip_key.clone(),
                })
                .or_else(TxnOp::Get {
                    key: net_key.clone(),
                })
                .or_else(TxnOp::Get {
                    key: deleting_key.clone(),
                });
            let resp = self.store.txn(txn).await;
            let resp = {
                let mut nets = self.lock();
                nets.unhold(network, &[ip]);
                let resp = resp?;
                if resp.succeeded {
                    nets.apply(network, ip, Some(Rec::of(&rec, resp.revision)));
                    drop(nets);
                    debug!(%ip, "address assigned");
                    return Ok(rec);
                }
                resp
            };

            // 4. Learn what changed, then retry.
            conflicts += 1;
            let got = |i: usize| match resp.responses.get(i) {
                Some(OpResponse::Get { kv }) => kv.clone(),
                _ => None,
            };
            let (ip_kv, net_kv, deleting_kv) = (got(0), got(1), got(2));
            if deleting_kv.is_some() {
                return Err(IpamError::NetworkDeleting(network.to_string()));
            }
            let fresh = match ip_kv {
                Some(kv) => Some(Rec::decode(&kv)?.1),
                None => None,
            };
            let mut nets = self.lock();
            match net_kv {
                None => {
                    nets.remove(network);
                    return Err(IpamError::NetworkNotFound(network.to_string()));
                }
                Some(kv) if kv.mod_revision != net_rev => {
                    nets.remove(network);
                }
                Some(_) => {
                    nets.apply(network, ip, fresh);
                    if let Some(c) = nets.get_mut(network) {
                        if want.is_none() {
                            // Another allocator walks the same addresses: jump
                            // to a spot of our own rather than trail it.
                            c.pool.seek(spread(identity, conflicts));
                        }
                    }
                }
            }
            debug!(%ip, conflicts, "allocation conflicted; retrying");
        }
        Err(IpamError::Contention {
            network: network.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Releases the address `identity` holds into the network's quarantine
    /// (or frees it at once when the quarantine is 0 s). Returns the
    /// resulting record, or `None` when the identity held nothing.
    pub async fn release(
        &self,
        identity: &InstanceId,
        now_ms: UnixMillis,
    ) -> Result<Option<IpAssignment>> {
        let span = info_span!("ipam.release", identity = %identity);
        self.release_inner(identity, None, now_ms)
            .instrument(span)
            .await
    }

    /// Releases `ip` on `network` whoever holds it. Returns the resulting
    /// record, or `None` when it was not assigned.
    pub async fn release_ip(
        &self,
        network: &str,
        ip: Ipv4Addr,
        now_ms: UnixMillis,
    ) -> Result<Option<IpAssignment>> {
        let span = info_span!("ipam.release_ip", network, %ip);
        async {
            let Some(kv) = self.store.get(&keys::ip(network, ip)).await? else {
                return Ok(None);
            };
            let (rec, _) = decode_record(&kv)?;
            if rec.state != IpState::Assigned {
                return Ok(None);
            }
            self.release_inner(&rec.identity, Some((network, ip)), now_ms)
                .await
        }
        .instrument(span)
        .await
    }

    async fn release_inner(
        &self,
        identity: &InstanceId,
        expect: Option<(&str, Ipv4Addr)>,
        now_ms: UnixMillis,
    ) -> Result<Option<IpAssignment>> {
        let owner_key = keys::ip_owner(identity);
        for _ in 0..MAX_ATTEMPTS {
            let Some(owner_kv) = self.store.get(&owner_key).await? else {
                return Ok(None);
            };
            let owner: Owner = json::decode(&owner_kv)?;
            if expect.is_some_and(|(n, ip)| n != owner.network || ip != owner.ip) {
                // The address changed hands since it was read.
                return Ok(None);
            }
            let ip_key = keys::ip(&owner.network, owner.ip);
            let ip_rev = self
                .store
                .get(&ip_key)
                .await?
                .map_or(0, |kv| kv.mod_revision);
            let quarantine_ms = match self.ensure_loaded(&owner.network, false).await {
                Ok(()) => self
                    .lock()
                    .get(&owner.network)
                    .map_or(0, NetCache::quarantine_ms),
                // A network cannot be deleted while it has assigned
                // addresses; if the store says otherwise, just drop the
                // dangling records.
                Err(IpamError::NetworkNotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            let rec = IpAssignment {
                network: owner.network.clone(),
                ip: owner.ip,
                identity: identity.clone(),
                state: IpState::Quarantined,
                since_ms: now_ms,
            };
            let mut txn = Txn::new()
                .when(Compare::mod_revision(
                    owner_key.clone(),
                    owner_kv.mod_revision,
                ))
                .when(Compare::mod_revision(ip_key.clone(), ip_rev))
                .and_then(TxnOp::delete(owner_key.clone()));
            txn = if quarantine_ms > 0 {
                txn.and_then(TxnOp::put(ip_key.clone(), json::encode(&rec)?))
            } else {
                txn.and_then(TxnOp::delete(ip_key.clone()))
            };
            let resp = self.store.txn(txn).await?;
            if !resp.succeeded {
                continue;
            }
            let kept = (quarantine_ms > 0).then(|| Rec::of(&rec, resp.revision));
            self.lock().apply(&owner.network, owner.ip, kept);
            debug!(network = %owner.network, ip = %owner.ip, "address released");
            return Ok(Some(rec));
        }
        Err(IpamError::Contention {
            network: expect.map_or_else(String::new, |(n, _)| n.to_string()),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The address `identity` holds, if any.
    pub async fn lookup(&self, identity: &InstanceId) -> Result<Option<IpAssignment>> {
        let Some(kv) = self.store.get(&keys::ip_owner(identity)).await? else {
            return Ok(None);
        };
        let owner: Owner = json::decode(&kv)?;
        match self.store.get(&keys::ip(&owner.network, owner.ip)).await? {
            Some(kv) => {
                let (rec, _) = decode_record(&kv)?;
                Ok((rec.identity == *identity && rec.state == IpState::Assigned).then_some(rec))
            }
            None => Ok(None),
        }
    }

    /// Every address record of `network` (assigned and quarantined), in
    /// address order.
    pub async fn list(&self, network: &str) -> Result<Vec<IpAssignment>> {
        if self.store.get(&keys::network(network)).await?.is_none() {
            return Err(IpamError::NetworkNotFound(network.to_string()));
        }
        let mut out = range_all(&*self.store, &keys::ips_of_network(network))
            .await?
            .iter()
            .map(|kv| json::decode::<IpAssignment>(kv).map_err(IpamError::from))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|r| r.ip);
        Ok(out)
    }

    /// Deletes the records of `network` whose quarantine has ended by
    /// `now_ms`: those addresses are free either way, this keeps listings
    /// short (the periodic IPAM clean-up). Returns how many were removed.
    pub async fn expire_quarantine(&self, network: &str, now_ms: UnixMillis) -> Result<usize> {
        let span = info_span!("ipam.expire_quarantine", network);
        async {
            let Some(kv) = self.store.get(&keys::network(network)).await? else {
                return Err(IpamError::NetworkNotFound(network.to_string()));
            };
            let net: Network = json::decode(&kv)?;
            let quarantine_ms = net.quarantine_secs.saturating_mul(1000);
            let mut removed = 0;
            for kv in range_all(&*self.store, &keys::ips_of_network(network)).await? {
                let (ip, rec) = Rec::decode(&kv)?;
                if rec.state != IpState::Quarantined
                    || rec.since_ms.saturating_add(quarantine_ms) > now_ms
                {
                    continue;
                }
                // Only if nobody took it meanwhile.
                let txn = Txn::new()
                    .when(Compare::mod_revision(kv.key.clone(), kv.mod_revision))
                    .and_then(TxnOp::delete(kv.key.clone()));
                if self.store.txn(txn).await?.succeeded {
                    removed += 1;
                    self.lock().apply(network, ip, None);
                }
            }
            debug!(removed, "expired quarantine records removed");
            Ok(removed)
        }
        .instrument(span)
        .await
    }

    /// What this instance's index holds about `ip` on `network` (`None` when
    /// the network is not loaded or `ip` is outside it). For diagnostics.
    pub fn index_slot(&self, network: &str, ip: Ipv4Addr) -> Option<Slot> {
        self.lock().get(network).and_then(|c| c.pool.slot(ip))
    }

    /// Forgets the cached index of `network` (after it was deleted or
    /// changed by a caller that committed a [`crate::NetworkChange`] itself).
    pub fn forget(&self, network: &str) {
        self.lock().remove(network);
    }
}

/// A deterministic, well-mixed position for `identity`'s `attempt`-th retry
/// (FNV-1a then a finalizer: no randomness, no per-process hash seed).
fn spread(identity: &InstanceId, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.to_string().bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Every key-value under `prefix`, read page by page.
pub(crate) async fn range_all(store: &dyn Store, prefix: &str) -> Result<Vec<KeyValue>> {
    let mut out = Vec::new();
    for_each_page(store, prefix, PAGE, |kvs| {
        out.extend_from_slice(kvs);
        Ok::<_, IpamError>(())
    })
    .await?;
    Ok(out)
}
