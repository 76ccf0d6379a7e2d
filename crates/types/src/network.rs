//! VLAN networks. Every container gets its own address on one of them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::name::check_name;
use crate::{InstanceId, UnixMillis, Validate, ValidationErrors};

/// An inclusive range of addresses kept out of allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpRange {
    /// First address, inclusive.
    pub start: Ipv4Addr,
    /// Last address, inclusive.
    pub end: Ipv4Addr,
}

impl IpRange {
    /// True when `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
}

/// A VLAN network with an IPv4 subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Unique name.
    pub name: String,
    /// 802.1Q VLAN id, 1–4094.
    pub vlan: u16,
    /// IPv4 subnet, e.g. `10.20.0.0/16`.
    pub subnet: Ipv4Net,
    /// Gateway address inside the subnet.
    pub gateway: Ipv4Addr,
    /// Ranges never handed out (routers, VIPs, legacy hosts).
    #[serde(default)]
    pub reserved: Vec<IpRange>,
    /// Network zone by isolation (e.g. `prod`, `dmz`, `office`).
    #[serde(default = "default_network_zone")]
    pub zone: String,
    /// Switches that trunk this VLAN: only hosts behind them can use it.
    #[serde(default)]
    pub switches: Vec<String>,
    /// Seconds a released address waits in quarantine before reuse.
    #[serde(default = "default_quarantine")]
    pub quarantine_secs: u64,
}

fn default_network_zone() -> String {
    "default".to_string()
}

fn default_quarantine() -> u64 {
    300
}

impl Network {
    /// The network as an agent needs it to attach a container: without the
    /// switches that trunk it (a placement concern; on a big estate that
    /// list made every work order carry thousands of bytes).
    pub fn for_agent(&self) -> Network {
        Network {
            switches: Vec::new(),
            ..self.clone()
        }
    }

    /// True when a host behind `switch` can reach this VLAN.
    pub fn reachable_from(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    /// True when `ip` is in the subnet and is neither the network address, the
    /// broadcast address, the gateway, nor reserved.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
            && !self.reserved.iter().any(|r| r.contains(ip))
    }
}

/// State of an address record in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpState {
    /// Held by its identity.
    Assigned,
    /// Released; not handed to another identity before the network's
    /// quarantine has passed (its last identity may take it back earlier).
    Quarantined,
}

impl IpState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            IpState::Assigned => "assigned",
            IpState::Quarantined => "quarantined",
        }
    }
}

/// One address record, stored at `keys::ip(network, ip)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAssignment {
    /// Network name.
    pub network: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// The container identity holding (or, in quarantine, last holding) it.
    pub identity: InstanceId,
    /// Assigned or quarantined.
    pub state: IpState,
    /// When it entered its current state.
    pub since_ms: UnixMillis,
}

impl Validate for Network {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        check_name(&mut e, "zone", &self.zone);
        if !(1..=4094).contains(&self.vlan) {
            e.add(
                "vlan",
                "out_of_range",
                format!("vlan {} must be 1-4094", self.vlan),
            );
        }
        if self.subnet.prefix_len() > 30 {
            e.add(
                "subnet",
                "out_of_range",
                format!(
                    "subnet {} is too small: use a prefix of /30 or shorter",
                    self.subnet
                ),
            );
        }
        if self.subnet.network() != self.subnet.addr() {
            e.add(
                "subnet",
                "invalid_subnet",
                format!(
                    "subnet {} has host bits set: did you mean {}?",
                    self.subnet,
                    self.subnet.trunc()
                ),
            );
        }
        if !self.subnet.contains(&self.gateway)
            || self.gateway == self.subnet.network()
            || self.gateway == self.subnet.broadcast()
        {
            e.add(
                "gateway",
                "invalid_gateway",
                format!(
                    "gateway {} is not a host address of {}",
                    self.gateway, self.subnet
                ),
            );
        }
        for (i, r) in self.reserved.iter().enumerate() {
            if r.start > r.end {
                e.add(
                    format!("reserved[{i}]"),
                    "invalid_range",
                    "start is after end",
                );
            } else if !self.subnet.contains(&r.start) || !self.subnet.contains(&r.end) {
                e.add(
                    format!("reserved[{i}]"),
                    "invalid_range",
                    format!("{}-{} is outside {}", r.start, r.end, self.subnet),
                );
            }
        }
        for (i, s) in self.switches.iter().enumerate() {
            check_name(&mut e, &format!("switches[{i}]"), s);
        }
        e.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network {
            name: "prod-a".into(),
            vlan: 100,
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            reserved: vec![IpRange {
                start: "10.1.0.2".parse().unwrap(),
                end: "10.1.0.9".parse().unwrap(),
            }],
            zone: "prod".into(),
            switches: vec!["sw1".into()],
            quarantine_secs: 300,
        }
    }

    #[test]
    fn assignable_excludes_special_addresses() {
        let n = net();
        assert!(n.validate().is_ok());
        for bad in ["10.1.0.0", "10.1.0.255", "10.1.0.1", "10.1.0.5", "10.2.0.5"] {
            assert!(!n.assignable(bad.parse().unwrap()), "{bad}");
        }
        assert!(n.assignable("10.1.0.10".parse().unwrap()));
    }

    #[test]
    fn invalid_network_reports_all_fields() {
        let mut n = net();
        n.vlan = 0;
        n.gateway = "10.9.0.1".parse().unwrap();
        n.subnet = "10.1.0.7/24".parse().unwrap();
        let err = n.validate().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["vlan", "subnet", "gateway"]);
    }
}
