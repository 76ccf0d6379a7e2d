//! Batch allocation: addresses for many identities of one network in one
//! store transaction, either committed by the IPAM itself
//! ([`Ipam::allocate_batch`]) or handed to a caller that commits them
//! together with its own writes ([`Ipam::prepare_batch`], then
//! [`Ipam::settle_batch`] or [`Ipam::abort_batch`]) — the platform layer puts
//! a group's addresses in the same transaction as its container records.
//!
//! The guarantees are those of [`Ipam::allocate`]: an identity that holds an
//! address keeps it (the batch compares its index key so a concurrent
//! release cannot slip in), a new address is taken only if its record and
//! the identity's index key did not change since they were read, and the
//! network still exists at the revision the index was built from.

use std::net::Ipv4Addr;

use jdos_store::{json, Compare, Revision, Txn, TxnOp};
use jdos_types::{keys, InstanceId, IpAssignment, IpState, UnixMillis};
use tracing::{debug, info_span, Instrument};

use crate::error::{IpamError, Result};
use crate::service::{Ipam, Owner, Pick, Rec};

/// Addresses for a set of identities, ready to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBatch {
    /// The network.
    pub network: String,
    /// One assignment per identity asked for, in the same order: the one it
    /// already held, or the new one this batch writes.
    pub assignments: Vec<IpAssignment>,
    /// Conditions the committing transaction must include.
    pub compares: Vec<Compare>,
    /// Writes the committing transaction must include.
    pub ops: Vec<TxnOp>,
    /// Addresses new in this batch (reserved in the index until settled or
    /// aborted).
    fresh: Vec<Ipv4Addr>,
}

impl IpBatch {
    /// True when every identity already held its address (nothing to write).
    pub fn is_settled(&self) -> bool {
        self.fresh.is_empty()
    }
}

/// Attempts of [`Ipam::allocate_batch`] under contention.
const BATCH_ATTEMPTS: u32 = 32;
/// Loads of a network's index one batch may need because others dropped it
/// meanwhile, before it reports contention.
const MAX_LOADS: u32 = 8;

impl Ipam {
    /// Picks an address on `network` for each of `identities` (the one it
    /// holds, else its recently released one, else a free one) and returns
    /// the writes and conditions that take them, without committing. The new
    /// addresses are reserved in this instance's index: call
    /// [`Ipam::settle_batch`] after the transaction committed, or
    /// [`Ipam::abort_batch`] when it did not.
    pub async fn prepare_batch(
        &self,
        network: &str,
        identities: &[InstanceId],
        now_ms: UnixMillis,
    ) -> Result<IpBatch> {
        let span = info_span!("ipam.prepare_batch", network, n = identities.len());
        self.prepare_inner(network, identities, now_ms)
            .instrument(span)
            .await
    }

    async fn prepare_inner(
        &self,
        network: &str,
        identities: &[InstanceId],
        now_ms: UnixMillis,
    ) -> Result<IpBatch> {
        let mut batch = IpBatch {
            network: network.to_string(),
            assignments: Vec::with_capacity(identities.len()),
            compares: Vec::new(),
            ops: Vec::new(),
            fresh: Vec::new(),
        };
        match self.fill(&mut batch, identities, now_ms).await {
            Ok(()) => Ok(batch),
            Err(e) => {
                self.unreserve(network, &batch.fresh);
                Err(e)
            }
        }
    }

    /// Picks `batch`'s addresses and writes its conditions and operations;
    /// each new address is held from its pick on (the caller drops the holds
    /// on an error).
    async fn fill(
        &self,
        batch: &mut IpBatch,
        identities: &[InstanceId],
        now_ms: UnixMillis,
    ) -> Result<()> {
        let network = batch.network.clone();
        let network = network.as_str();
        // Which identities hold an address already (read before picking, so
        // no candidate is reserved for an identity that needs none).
        let mut held: Vec<Option<(IpAssignment, Revision)>> = Vec::with_capacity(identities.len());
        for id in identities {
            let owner_key = keys::ip_owner(id);
            let Some(kv) = self.store().get(&owner_key).await? else {
                held.push(None);
                continue;
            };
            let owner: Owner = json::decode(&kv)?;
            if owner.network != network {
                return Err(IpamError::IdentityHoldsOther {
                    identity: id.to_string(),
                    network: owner.network,
                    held: owner.ip,
                    requested: format!("an address on {network:?}"),
                });
            }
            let rec = match self.store().get(&keys::ip(network, owner.ip)).await? {
                Some(rkv) => {
                    let rec: IpAssignment = json::decode(&rkv)?;
                    (rec.state == IpState::Assigned && rec.identity == *id).then_some(rec)
                }
                None => None,
            };
            let Some(rec) = rec else {
                return Err(IpamError::Store(jdos_store::StoreError::Backend(format!(
                    "identity index {owner_key} points at {} which is not assigned to {id}",
                    owner.ip
                ))));
            };
            held.push(Some((rec, kv.mod_revision)));
        }
        self.ensure_loaded(network, false).await?;
        let mut reloaded = false;
        let mut net_rev = None;
        for (id, held) in identities.iter().zip(held) {
            if let Some((rec, owner_rev)) = held {
                batch
                    .compares
                    .push(Compare::mod_revision(keys::ip_owner(id), owner_rev));
                batch.assignments.push(rec);
                continue;
            }
            let mut loads = 0;
            let pick = loop {
                let pick = {
                    let mut nets = self.lock();
                    let pick = nets
                        .get_mut(network)
                        .map(|c| c.pick(id, None, now_ms, false, !reloaded));
                    if let Some(Pick::Candidate { ip, .. }) = &pick {
                        // Reserved past any reload of the index until the
                        // batch settles or aborts.
                        nets.hold(network, *ip);
                    }
                    pick
                };
                match pick {
                    // Dropped by a concurrent reload or abort: load again.
                    None if loads < MAX_LOADS => {
                        loads += 1;
                        self.ensure_loaded(network, false).await?;
                    }
                    // Another server may have released addresses: look
                    // again before saying the network is exhausted.
                    Some(Pick::Reload) if !reloaded => {
                        reloaded = true;
                        self.ensure_loaded(network, true).await?;
                    }
                    pick => break pick.unwrap_or(Pick::Reload),
                }
            };
            let (ip, prev_rev, rev) = match pick {
                Pick::Candidate {
                    ip,
                    prev_rev,
                    net_rev,
                } => (ip, prev_rev, net_rev),
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
                Pick::Reload | Pick::Refused(_) | Pick::VerifyStatic(_) => {
                    return Err(IpamError::Contention {
                        network: network.to_string(),
                        attempts: 1,
                    });
                }
            };
            net_rev.get_or_insert(rev);
            batch.fresh.push(ip);
            let rec = IpAssignment {
                network: network.to_string(),
                ip,
                identity: id.clone(),
                state: IpState::Assigned,
                since_ms: now_ms,
            };
            let owner = Owner {
                network: network.to_string(),
                ip,
            };
            let ip_key = keys::ip(network, ip);
            batch.compares.push(Compare::absent(keys::ip_owner(id)));
            batch
                .compares
                .push(Compare::mod_revision(ip_key.clone(), prev_rev));
            batch.ops.push(TxnOp::put(ip_key, json::encode(&rec)?));
            batch
                .ops
                .push(TxnOp::put(keys::ip_owner(id), json::encode(&owner)?));
            batch.assignments.push(rec);
        }
        if let Some(rev) = net_rev {
            batch
                .compares
                .push(Compare::mod_revision(keys::network(network), rev));
            batch
                .compares
                .push(Compare::absent(keys::network_deleting(network)));
        }
        Ok(())
    }

    /// Records in the index that `batch` committed at `revision`.
    pub fn settle_batch(&self, batch: &IpBatch, revision: Revision) {
        let mut nets = self.lock();
        nets.unhold(&batch.network, &batch.fresh);
        for a in &batch.assignments {
            if batch.fresh.contains(&a.ip) {
                nets.apply(&batch.network, a.ip, Some(Rec::of(a, revision)));
            }
        }
        debug!(network = %batch.network, n = batch.fresh.len(), "batch settled");
    }

    /// Undoes `batch`'s reservations after its transaction did not commit,
    /// and re-reads the records it compared so that the next attempt picks
    /// around whatever changed.
    pub async fn abort_batch(&self, batch: &IpBatch) -> Result<()> {
        self.unreserve(&batch.network, &batch.fresh);
        let net = self.store().get(&keys::network(&batch.network)).await?;
        let stale = {
            let nets = self.lock();
            match (nets.get(&batch.network), &net) {
                (Some(c), Some(kv)) => c.rev != kv.mod_revision,
                _ => true,
            }
        };
        if stale {
            self.forget(&batch.network);
            return Ok(());
        }
        for ip in &batch.fresh {
            let fresh = match self.store().get(&keys::ip(&batch.network, *ip)).await? {
                Some(kv) => Some(Rec::decode(&kv)?.1),
                None => None,
            };
            self.lock().apply(&batch.network, *ip, fresh);
        }
        Ok(())
    }

    /// Gives each of `identities` an address on `network` in one store
    /// transaction (retried under contention): what placing a whole group
    /// needs, instead of one transaction per container.
    pub async fn allocate_batch(
        &self,
        network: &str,
        identities: &[InstanceId],
        now_ms: UnixMillis,
    ) -> Result<Vec<IpAssignment>> {
        let span = info_span!("ipam.allocate_batch", network, n = identities.len());
        async {
            for _ in 0..BATCH_ATTEMPTS {
                let batch = self.prepare_inner(network, identities, now_ms).await?;
                if batch.is_settled() {
                    return Ok(batch.assignments);
                }
                let txn = Txn {
                    compares: batch.compares.clone(),
                    success: batch.ops.clone(),
                    failure: Vec::new(),
                };
                let resp = self.store().txn(txn).await?;
                if resp.succeeded {
                    self.settle_batch(&batch, resp.revision);
                    return Ok(batch.assignments);
                }
                self.abort_batch(&batch).await?;
                if self
                    .store()
                    .get(&keys::network_deleting(network))
                    .await?
                    .is_some()
                {
                    return Err(IpamError::NetworkDeleting(network.to_string()));
                }
            }
            Err(IpamError::Contention {
                network: network.to_string(),
                attempts: BATCH_ATTEMPTS,
            })
        }
        .instrument(span)
        .await
    }

    /// Returns reserved-but-uncommitted addresses to the index.
    fn unreserve(&self, network: &str, ips: &[Ipv4Addr]) {
        let mut nets = self.lock();
        nets.unhold(network, ips);
        for ip in ips {
            let rec = nets.get(network).and_then(|c| c.records.get(ip).cloned());
            nets.apply(network, *ip, rec);
        }
    }
}

/// Releases of many identities' addresses, ready to commit with the
/// caller's own writes (the platform deletes a container and quarantines its
/// address in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRelease {
    /// The records as the release writes them (quarantined), one per
    /// identity that held an address.
    pub released: Vec<IpAssignment>,
    /// Conditions the committing transaction must include.
    pub compares: Vec<Compare>,
    /// Writes the committing transaction must include.
    pub ops: Vec<TxnOp>,
    /// Whether each released record is kept in quarantine (else deleted).
    kept: Vec<bool>,
}

impl Ipam {
    /// The writes that release every address `identities` hold into their
    /// networks' quarantine (or free them at once when a network's
    /// quarantine is 0 s). Identities that hold nothing are skipped. Call
    /// [`Ipam::settle_release`] once the transaction committed.
    pub async fn prepare_release(
        &self,
        identities: &[InstanceId],
        now_ms: UnixMillis,
    ) -> Result<IpRelease> {
        let mut out = IpRelease {
            released: Vec::new(),
            compares: Vec::new(),
            ops: Vec::new(),
            kept: Vec::new(),
        };
        for id in identities {
            let owner_key = keys::ip_owner(id);
            let Some(owner_kv) = self.store().get(&owner_key).await? else {
                continue;
            };
            let owner: Owner = json::decode(&owner_kv)?;
            let ip_key = keys::ip(&owner.network, owner.ip);
            let ip_rev = self
                .store()
                .get(&ip_key)
                .await?
                .map_or(0, |kv| kv.mod_revision);
            let quarantine_ms = match self.ensure_loaded(&owner.network, false).await {
                Ok(()) => self
                    .lock()
                    .get(&owner.network)
                    .map_or(0, |c| c.quarantine_ms()),
                Err(IpamError::NetworkNotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            let rec = IpAssignment {
                network: owner.network.clone(),
                ip: owner.ip,
                identity: id.clone(),
                state: IpState::Quarantined,
                since_ms: now_ms,
            };
            out.compares.push(Compare::mod_revision(
                owner_key.clone(),
                owner_kv.mod_revision,
            ));
            out.compares
                .push(Compare::mod_revision(ip_key.clone(), ip_rev));
            out.ops.push(TxnOp::delete(owner_key));
            if quarantine_ms > 0 {
                out.ops.push(TxnOp::put(ip_key, json::encode(&rec)?));
            } else {
                out.ops.push(TxnOp::delete(ip_key));
            }
            out.kept.push(quarantine_ms > 0);
            out.released.push(rec);
        }
        Ok(out)
    }

    /// Records in the index that `release` committed at `revision`.
    pub fn settle_release(&self, release: &IpRelease, revision: Revision) {
        let mut nets = self.lock();
        for (rec, kept) in release.released.iter().zip(&release.kept) {
            nets.apply(&rec.network, rec.ip, kept.then(|| Rec::of(rec, revision)));
        }
    }
}
