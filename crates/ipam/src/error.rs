//! IPAM errors.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use jdos_store::StoreError;
use jdos_types::ValidationErrors;

use crate::pool::Unavailable;

/// Everything an IPAM operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The network does not exist.
    #[error("network {0:?} not found")]
    NetworkNotFound(String),
    /// The network is being deleted.
    #[error("network {0:?} is being deleted: no addresses are handed out on it")]
    NetworkDeleting(String),
    /// No free address remains.
    #[error(
        "network {network:?} ({subnet}) is exhausted: {assigned} addresses assigned, \
         {quarantined} in quarantine; add a network or wait for the quarantine to pass"
    )]
    Exhausted {
        /// Network name.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
        /// Addresses assigned.
        assigned: usize,
        /// Addresses in quarantine.
        quarantined: usize,
    },
    /// A static address cannot be handed out.
    #[error("address {ip} cannot be assigned on network {network:?}: {reason}")]
    Unavailable {
        /// Network name.
        network: String,
        /// The requested address.
        ip: Ipv4Addr,
        /// Why not.
        reason: Unavailable,
    },
    /// The identity already holds a different address.
    #[error(
        "{identity} already holds {held} on network {network:?}; release it before asking for {requested}"
    )]
    IdentityHoldsOther {
        /// The identity, `app/env/group/index`.
        identity: String,
        /// Network of the held address.
        network: String,
        /// The held address.
        held: Ipv4Addr,
        /// What was asked for (an address, or a network for a dynamic request).
        requested: String,
    },
    /// The network's description is invalid.
    #[error("invalid network: {0}")]
    Invalid(#[from] ValidationErrors),
    /// A network of that name exists.
    #[error("network {0:?} already exists")]
    NetworkExists(String),
    /// The subnet overlaps another network's.
    #[error("subnet {subnet} overlaps network {other:?} ({other_subnet})")]
    SubnetOverlap {
        /// Requested subnet.
        subnet: Ipv4Net,
        /// The other network.
        other: String,
        /// Its subnet.
        other_subnet: Ipv4Net,
    },
    /// The VLAN id is used by another network.
    #[error("vlan {vlan} is already used by network {other:?}")]
    VlanInUse {
        /// VLAN id.
        vlan: u16,
        /// The other network.
        other: String,
    },
    /// The network still has assigned addresses.
    #[error(
        "network {network:?} still has {assigned} assigned addresses (e.g. {example}); \
         delete those containers first"
    )]
    NetworkInUse {
        /// Network name.
        network: String,
        /// Addresses assigned.
        assigned: usize,
        /// One holder, as `ip (identity)`.
        example: String,
    },
    /// Too many concurrent writers changed the same records.
    #[error("gave up after {attempts} conflicting attempts on network {network:?}; retry")]
    Contention {
        /// Network name.
        network: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IpamError {
    /// A stable machine-readable code (`not_found`, `conflict`,
    /// `validation_failed`, `internal`) for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            IpamError::NetworkNotFound(_) => "not_found",
            IpamError::Invalid(_) => "validation_failed",
            IpamError::Unavailable { reason, .. }
                if !matches!(
                    reason,
                    Unavailable::Assigned(_) | Unavailable::Quarantined { .. }
                ) =>
            {
                "validation_failed"
            }
            IpamError::Store(_) => "internal",
            IpamError::NetworkDeleting(_)
            | IpamError::Exhausted { .. }
            | IpamError::Unavailable { .. }
            | IpamError::IdentityHoldsOther { .. }
            | IpamError::NetworkExists(_)
            | IpamError::SubnetOverlap { .. }
            | IpamError::VlanInUse { .. }
            | IpamError::NetworkInUse { .. }
            | IpamError::Contention { .. } => "conflict",
        }
    }
}

/// Result alias.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;
