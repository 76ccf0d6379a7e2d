//! Network create / get / list / delete with the checks that span networks:
//! names and VLAN ids are unique and subnets never overlap.

use jdos_store::{json, Compare, Txn, TxnOp};
use jdos_types::{keys, IpAssignment, IpState, Network, Validate, ValidationErrors};
use tracing::{debug, info_span, Instrument};

use crate::error::{IpamError, Result};
use crate::pool::MIN_PREFIX_LEN;
use crate::service::range_all;
use crate::Ipam;

/// Attempts before a network change gives up under contention.
const MAX_ATTEMPTS: u32 = 32;

/// Validates a network on its own (fields, and what the index supports).
pub fn validate_network(net: &Network) -> Result<(), ValidationErrors> {
    let mut errs = match net.validate() {
        Ok(()) => ValidationErrors::new(),
        Err(e) => e,
    };
    if net.subnet.prefix_len() < MIN_PREFIX_LEN {
        errs.add(
            "subnet",
            "out_of_range",
            format!(
                "subnet {} is too large: use a prefix of /{MIN_PREFIX_LEN} or longer",
                net.subnet
            ),
        );
    }
    errs.into_result()
}

/// Checks `net` against the existing networks.
fn check_against(net: &Network, existing: &[Network]) -> Result<()> {
    for other in existing {
        if other.name == net.name {
            return Err(IpamError::NetworkExists(net.name.clone()));
        }
    }
    for other in existing {
        if other.subnet.contains(&net.subnet.network())
            || net.subnet.contains(&other.subnet.network())
        {
            return Err(IpamError::SubnetOverlap {
                subnet: net.subnet,
                other: other.name.clone(),
                other_subnet: other.subnet,
            });
        }
        if other.vlan == net.vlan {
            return Err(IpamError::VlanInUse {
                vlan: net.vlan,
                other: other.name.clone(),
            });
        }
    }
    Ok(())
}

/// The writes of a network change and the conditions under which they are
/// still right, for callers that commit them together with something else
/// (the API server adds its audit event to the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkChange {
    /// The network created or deleted.
    pub network: Network,
    /// Conditions on what was read to plan the change.
    pub compares: Vec<Compare>,
    /// The writes.
    pub ops: Vec<TxnOp>,
}

impl NetworkChange {
    /// The change as one transaction.
    pub fn into_txn(self) -> Txn {
        Txn {
            compares: self.compares,
            success: self.ops,
            failure: Vec::new(),
        }
    }
}

impl Ipam {
    /// Creates a network after validating it and checking that its name and
    /// VLAN id are unused and its subnet overlaps no other network's. Nothing
    /// is written when a check fails.
    pub async fn create_network(&self, net: Network) -> Result<Network> {
        let span = info_span!("ipam.create_network", network = %net.name, vlan = net.vlan, subnet = %net.subnet);
        async {
            for _ in 0..MAX_ATTEMPTS {
                let change = self.plan_create_network(&net).await?;
                if self.store().txn(change.into_txn()).await?.succeeded {
                    debug!("network created");
                    return Ok(net);
                }
            }
            Err(IpamError::Contention {
                network: net.name.clone(),
                attempts: MAX_ATTEMPTS,
            })
        }
        .instrument(span)
        .await
    }

    /// Checks `net` and plans its creation, writing nothing. The compares
    /// fail if any network was created meanwhile: plan again then.
    pub async fn plan_create_network(&self, net: &Network) -> Result<NetworkChange> {
        validate_network(net)?;
        let catalog = keys::networks_catalog();
        // Read the catalog revision first: any creation after it bumps it
        // and makes the compare fail, so the checks are made against a list
        // nobody changed in between.
        let catalog_rev = self
            .store()
            .get(&catalog)
            .await?
            .map_or(0, |kv| kv.mod_revision);
        let existing = self.list_networks().await?;
        check_against(net, &existing)?;
        let key = keys::network(&net.name);
        Ok(NetworkChange {
            network: net.clone(),
            compares: vec![
                Compare::mod_revision(catalog.clone(), catalog_rev),
                Compare::absent(key.clone()),
            ],
            ops: vec![
                TxnOp::put(key, json::encode(net)?),
                TxnOp::put(catalog, net.name.clone().into_bytes()),
            ],
        })
    }

    /// One network.
    pub async fn get_network(&self, name: &str) -> Result<Option<Network>> {
        match self.store().get(&keys::network(name)).await? {
            Some(kv) => Ok(Some(json::decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Every network, by name.
    pub async fn list_networks(&self) -> Result<Vec<Network>> {
        range_all(&**self.store(), keys::NETWORKS)
            .await?
            .iter()
            .map(|kv| json::decode(kv).map_err(IpamError::from))
            .collect()
    }

    /// Deletes a network and its quarantined records. Refused while any
    /// address on it is assigned.
    pub async fn delete_network(&self, name: &str) -> Result<Network> {
        let span = info_span!("ipam.delete_network", network = name);
        async {
            for _ in 0..MAX_ATTEMPTS {
                let Some(change) = self.plan_delete_network(name).await? else {
                    continue;
                };
                let net = change.network.clone();
                if self.store().txn(change.into_txn()).await?.succeeded {
                    self.forget(name);
                    debug!("network deleted");
                    return Ok(net);
                }
            }
            Err(IpamError::Contention {
                network: name.to_string(),
                attempts: MAX_ATTEMPTS,
            })
        }
        .instrument(span)
        .await
    }

    /// Plans the deletion of a network. Unlike a creation this writes one
    /// thing: a deletion marker (which every allocation compares absent), so
    /// that no allocation can slip in between the check for assigned
    /// addresses and the delete. Refused (marker taken back) while an address
    /// is assigned. `Ok(None)`: the network changed meanwhile, plan again.
    /// If the delete is never committed, the marker stays and blocks
    /// allocations until a later delete of that network finishes the job.
    pub async fn plan_delete_network(&self, name: &str) -> Result<Option<NetworkChange>> {
        let key = keys::network(name);
        let marker = keys::network_deleting(name);
        let Some(kv) = self.store().get(&key).await? else {
            return Err(IpamError::NetworkNotFound(name.to_string()));
        };
        let net: Network = json::decode(&kv)?;
        let mark = Txn::new()
            .when(Compare::mod_revision(key.clone(), kv.mod_revision))
            .and_then(TxnOp::put(marker.clone(), b"deleting".to_vec()));
        let resp = self.store().txn(mark).await?;
        if !resp.succeeded {
            return Ok(None);
        }
        let marker_rev = resp.revision;
        let records = range_all(&**self.store(), &keys::ips_of_network(name)).await?;
        let mut assigned = Vec::new();
        for kv in &records {
            let rec: IpAssignment = json::decode(kv)?;
            if rec.state == IpState::Assigned {
                assigned.push(rec);
            }
        }
        if let Some(first) = assigned.first() {
            // Take the marker back (only if it is still ours).
            self.store()
                .txn(
                    Txn::new()
                        .when(Compare::mod_revision(marker.clone(), marker_rev))
                        .and_then(TxnOp::delete(marker.clone())),
                )
                .await?;
            return Err(IpamError::NetworkInUse {
                network: name.to_string(),
                assigned: assigned.len(),
                example: format!("{} ({})", first.ip, first.identity),
            });
        }
        Ok(Some(NetworkChange {
            network: net,
            compares: vec![
                Compare::mod_revision(key.clone(), kv.mod_revision),
                Compare::mod_revision(marker.clone(), marker_rev),
            ],
            ops: vec![
                TxnOp::delete(key),
                TxnOp::DeletePrefix {
                    prefix: keys::ips_of_network(name),
                },
                TxnOp::delete(marker),
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, vlan: u16, subnet: &str) -> Network {
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

    #[test]
    fn overlap_and_vlan_and_name_are_checked() {
        let existing = vec![net("a", 10, "10.1.0.0/16")];
        assert!(matches!(
            check_against(&net("b", 11, "10.1.4.0/24"), &existing),
            Err(IpamError::SubnetOverlap { .. })
        ));
        assert!(matches!(
            check_against(&net("b", 11, "10.0.0.0/8"), &existing),
            Err(IpamError::SubnetOverlap { .. })
        ));
        assert!(matches!(
            check_against(&net("b", 10, "10.2.0.0/16"), &existing),
            Err(IpamError::VlanInUse { vlan: 10, .. })
        ));
        assert!(matches!(
            check_against(&net("a", 12, "10.3.0.0/16"), &existing),
            Err(IpamError::NetworkExists(_))
        ));
        assert!(check_against(&net("b", 11, "10.2.0.0/16"), &existing).is_ok());
    }

    #[test]
    fn huge_subnets_are_rejected() {
        let n = net("a", 10, "10.0.0.0/7");
        let e = validate_network(&n).unwrap_err();
        assert!(e.errors.iter().any(|f| f.field == "subnet"));
    }
}
