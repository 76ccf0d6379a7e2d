//! The in-memory allocator index of one network: a bitmap over the subnet.
//!
//! A set bit means "not free": the network, broadcast and gateway addresses,
//! reserved ranges, assigned and quarantined addresses. `next free` scans
//! 64 addresses per step from a rotating cursor, so a freed address is not
//! handed out again until the cursor has gone round the subnet (a just-released
//! address is the most likely to still be in someone's ARP cache or firewall).
//!
//! The pool knows nothing about identities or the store: the [`crate::Ipam`]
//! service keeps those and uses the pool only to pick candidates quickly.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use jdos_types::{IpRange, Network, UnixMillis};

/// Largest subnet the index accepts (a /8 is 16 Mi addresses, a 2 MiB bitmap).
pub const MIN_PREFIX_LEN: u8 = 8;

/// Why an address cannot be handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Not inside the subnet.
    OutOfSubnet(Ipv4Net),
    /// The subnet's network address.
    NetworkAddress,
    /// The subnet's broadcast address.
    Broadcast,
    /// The gateway.
    Gateway,
    /// Inside a reserved range.
    Reserved(IpRange),
    /// Held by an identity (`app/env/group/index`, when known).
    Assigned(Option<String>),
    /// In quarantine until the given time.
    Quarantined {
        /// The identity that released it, when known.
        identity: Option<String>,
        /// When it becomes free.
        until_ms: UnixMillis,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::OutOfSubnet(net) => write!(f, "it is outside the subnet {net}"),
            Unavailable::NetworkAddress => write!(f, "it is the network address"),
            Unavailable::Broadcast => write!(f, "it is the broadcast address"),
            Unavailable::Gateway => write!(f, "it is the gateway"),
            Unavailable::Reserved(r) => {
                write!(f, "it is in the reserved range {}-{}", r.start, r.end)
            }
            Unavailable::Assigned(Some(id)) => write!(f, "it is assigned to {id}"),
            Unavailable::Assigned(None) => write!(f, "it is assigned"),
            Unavailable::Quarantined { identity, until_ms } => {
                write!(f, "it is in quarantine until {until_ms} ms")?;
                if let Some(id) = identity {
                    write!(
                        f,
                        " (released by {id}, which alone may take it back earlier)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// What the pool holds about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Can be handed out.
    Free,
    /// Never handed out (network, broadcast, gateway, reserved).
    Special,
    /// Handed out.
    Assigned,
    /// Released, free again at the given time.
    Quarantined(UnixMillis),
}

/// The allocator index of one network.
#[derive(Debug, Clone)]
pub struct AddressPool {
    base: u32,
    size: u32,
    /// Bit set = not free.
    used: Vec<u64>,
    /// Bit set = special (never free).
    special: Vec<u64>,
    cursor: u32,
    free: u32,
    /// Quarantined addresses by the time each is free again, soonest first
    /// (a heap, not a queue: records loaded from the store, or released by
    /// other servers, arrive in no particular time order).
    queue: BinaryHeap<Reverse<(UnixMillis, u32)>>,
    /// Current quarantine deadline per address (a queue entry whose deadline
    /// differs is stale: the address was taken back and released again).
    until: HashMap<u32, UnixMillis>,
}

impl AddressPool {
    /// An empty pool for `net` (every host address free except gateway and
    /// reserved ranges). `None` when the subnet is larger than /8.
    pub fn new(net: &Network) -> Option<Self> {
        if net.subnet.prefix_len() < MIN_PREFIX_LEN {
            return None;
        }
        let base = u32::from(net.subnet.network());
        let size = 1u32 << (32 - net.subnet.prefix_len());
        let words = size.div_ceil(64) as usize;
        let mut pool = AddressPool {
            base,
            size,
            used: vec![0; words],
            special: vec![0; words],
            cursor: 0,
            free: size,
            queue: BinaryHeap::new(),
            until: HashMap::new(),
        };
        // Bits past the end of a small subnet (< 64 addresses) are never free.
        for off in size..(words as u32 * 64) {
            pool.set(&off, true);
        }
        pool.mark_special(0);
        pool.mark_special(size - 1);
        if let Some(off) = pool.offset(net.gateway) {
            pool.mark_special(off);
        }
        for r in &net.reserved {
            let lo = u32::from(r.start).max(base);
            let hi = u32::from(r.end).min(base + (size - 1));
            for ip in lo..=hi {
                pool.mark_special(ip - base);
            }
        }
        pool.cursor = 1;
        Some(pool)
    }

    fn set(&mut self, off: &u32, special: bool) {
        let (w, b) = ((off / 64) as usize, off % 64);
        self.used[w] |= 1 << b;
        if special {
            self.special[w] |= 1 << b;
        }
    }

    fn mark_special(&mut self, off: u32) {
        if !self.bit(&self.used, off) {
            self.free -= 1;
        }
        self.set(&off, true);
    }

    fn bit(&self, words: &[u64], off: u32) -> bool {
        words[(off / 64) as usize] & (1 << (off % 64)) != 0
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).wrapping_sub(self.base);
        (off < self.size).then_some(off)
    }

    fn addr(&self, off: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + off)
    }

    /// Addresses that can be handed out now (quarantine not yet reclaimed
    /// counts as not free).
    pub fn free_count(&self) -> u32 {
        self.free
    }

    /// Addresses in quarantine.
    pub fn quarantined_count(&self) -> usize {
        self.until.len()
    }

    /// What the pool holds about `ip` (`None` outside the subnet).
    pub fn slot(&self, ip: Ipv4Addr) -> Option<Slot> {
        let off = self.offset(ip)?;
        Some(if self.bit(&self.special, off) {
            Slot::Special
        } else if let Some(until) = self.until.get(&off) {
            Slot::Quarantined(*until)
        } else if self.bit(&self.used, off) {
            Slot::Assigned
        } else {
            Slot::Free
        })
    }

    /// Moves every address whose quarantine ended at or before `now_ms` back
    /// to free. Cheap when nothing expired.
    pub fn reclaim(&mut self, now_ms: UnixMillis) {
        while let Some(&Reverse((until, off))) = self.queue.peek() {
            if until > now_ms {
                break;
            }
            self.queue.pop();
            if self.until.get(&off) == Some(&until) {
                self.until.remove(&off);
                self.clear(off);
            }
        }
    }

    fn clear(&mut self, off: u32) {
        let (w, b) = ((off / 64) as usize, off % 64);
        if self.used[w] & (1 << b) != 0 {
            self.used[w] &= !(1 << b);
            self.free += 1;
        }
    }

    /// Takes the next free address at or after the cursor (wrapping round),
    /// marks it assigned and moves the cursor past it. `None` when none is
    /// free. Call [`AddressPool::reclaim`] first to let expired quarantine go.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        if self.free == 0 {
            return None;
        }
        let words = self.used.len() as u32;
        let start_word = self.cursor / 64;
        // The first word is looked at twice: from the cursor on, and (after
        // wrapping) below the cursor.
        for step in 0..=words {
            let w = (start_word + step) % words;
            let mut avail = !self.used[w as usize];
            if step == 0 {
                avail &= u64::MAX << (self.cursor % 64);
            }
            if avail != 0 {
                let off = w * 64 + avail.trailing_zeros();
                self.used[w as usize] |= 1 << (off % 64);
                self.free -= 1;
                self.cursor = (off + 1) % self.size;
                return Some(self.addr(off));
            }
        }
        None
    }

    /// Moves the cursor to `position` (taken modulo the subnet size). Used to
    /// spread allocators apart after they collided: two servers walking the
    /// same cursor would otherwise collide on every address.
    pub fn seek(&mut self, position: u64) {
        self.cursor = (position % u64::from(self.size)) as u32;
    }

    /// Marks `ip` assigned. Succeeds when it was free, or when it was in
    /// quarantine (the caller has checked who may take it back), or already
    /// assigned (idempotent); fails on special or out-of-subnet addresses.
    pub fn assign(&mut self, ip: Ipv4Addr) -> bool {
        let Some(off) = self.offset(ip) else {
            return false;
        };
        if self.bit(&self.special, off) {
            return false;
        }
        self.until.remove(&off);
        if !self.bit(&self.used, off) {
            self.set(&off, false);
            self.free -= 1;
        }
        true
    }

    /// Frees `ip` at once (no quarantine). No effect on special addresses.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            if !self.bit(&self.special, off) {
                self.until.remove(&off);
                self.clear(off);
            }
        }
    }

    /// Puts `ip` in quarantine until `until_ms`. No effect on special addresses.
    pub fn quarantine(&mut self, ip: Ipv4Addr, until_ms: UnixMillis) {
        let Some(off) = self.offset(ip) else {
            return;
        };
        if self.bit(&self.special, off) {
            return;
        }
        if !self.bit(&self.used, off) {
            self.set(&off, false);
            self.free -= 1;
        }
        self.until.insert(off, until_ms);
        self.queue.push(Reverse((until_ms, off)));
    }
}

/// Why a static address is never assignable on `net`, regardless of what is
/// assigned (`None` when it is a host address outside every reserved range).
pub fn structural_reason(net: &Network, ip: Ipv4Addr) -> Option<Unavailable> {
    if !net.subnet.contains(&ip) {
        Some(Unavailable::OutOfSubnet(net.subnet))
    } else if ip == net.subnet.network() {
        Some(Unavailable::NetworkAddress)
    } else if ip == net.subnet.broadcast() {
        Some(Unavailable::Broadcast)
    } else if ip == net.gateway {
        Some(Unavailable::Gateway)
    } else {
        net.reserved
            .iter()
            .find(|r| r.contains(ip))
            .map(|r| Unavailable::Reserved(*r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(subnet: &str, gw: &str) -> Network {
        Network {
            name: "n".into(),
            vlan: 10,
            subnet: subnet.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec![],
            quarantine_secs: 300,
        }
    }

    #[test]
    fn slash_30_has_one_usable_address_besides_the_gateway() {
        let mut p = AddressPool::new(&net("10.0.0.0/30", "10.0.0.1")).unwrap();
        assert_eq!(p.free_count(), 1);
        assert_eq!(p.allocate(), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(p.allocate(), None);
    }

    #[test]
    fn cursor_rotates_past_released_addresses() {
        let mut p = AddressPool::new(&net("10.0.0.0/24", "10.0.0.1")).unwrap();
        let a = p.allocate().unwrap();
        assert_eq!(a, "10.0.0.2".parse::<Ipv4Addr>().unwrap());
        p.release(a);
        assert_eq!(p.allocate(), Some("10.0.0.3".parse().unwrap()));
        // Exhaust the rest; the wrap finds the released one last.
        let (mut n, mut last) = (1, None);
        while let Some(ip) = p.allocate() {
            n += 1;
            last = Some(ip);
        }
        // 256 minus network, broadcast and gateway.
        assert_eq!(n, 253);
        assert_eq!(last, Some(a));
        assert_eq!(p.free_count(), 0);
    }

    #[test]
    fn quarantine_blocks_until_deadline() {
        let mut p = AddressPool::new(&net("10.0.0.0/30", "10.0.0.1")).unwrap();
        let a = p.allocate().unwrap();
        p.quarantine(a, 1000);
        p.reclaim(999);
        assert_eq!(p.allocate(), None);
        p.reclaim(1000);
        assert_eq!(p.allocate(), Some(a));
    }

    #[test]
    fn stale_queue_entry_does_not_free_early() {
        let mut p = AddressPool::new(&net("10.0.0.0/30", "10.0.0.1")).unwrap();
        let a = p.allocate().unwrap();
        p.quarantine(a, 100);
        assert!(p.assign(a)); // taken back by its identity
        p.quarantine(a, 500);
        p.reclaim(200);
        assert_eq!(p.slot(a), Some(Slot::Quarantined(500)));
        p.reclaim(500);
        assert_eq!(p.slot(a), Some(Slot::Free));
    }
}
