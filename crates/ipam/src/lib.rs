//! jdos-ipam: VLAN networks and IP address management.
//!
//! Every container gets its own IPv4 address, and the address belongs to the
//! container's identity `app/env/group/index`, not to a host: allocating
//! again for the same identity returns the same address, which is what keeps
//! an IP across restart, migration and failover. Released addresses wait in a
//! quarantine (the network's `quarantine_secs`, 5 minutes by default) before
//! another identity may get them.
//!
//! - [`AddressPool`]: the in-memory index of one network (a bitmap with a
//!   rotating cursor), pure and synchronous.
//! - [`Ipam`]: the store-backed service. Every change is one store
//!   transaction, so several `Ipam` instances over one store (several
//!   servers) never hand out one address twice. Time is always an argument.

mod batch;
mod error;
mod networks;
pub mod pool;
mod service;

pub use batch::{IpBatch, IpRelease};
pub use error::{IpamError, Result};
pub use networks::{validate_network, NetworkChange};
pub use pool::{AddressPool, Slot, Unavailable};
pub use service::Ipam;
