//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use jdos_types::{GroupKey, InstanceId, IpRange, Network};

/// A network with a /24-style layout: gateway .1, `reserved` as given.
pub fn network(name: &str, vlan: u16, subnet: &str, reserved: &[(&str, &str)]) -> Network {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
    Network {
        name: name.into(),
        vlan,
        subnet,
        gateway: subnet.hosts().next().unwrap(),
        reserved: reserved
            .iter()
            .map(|(a, b)| IpRange {
                start: a.parse().unwrap(),
                end: b.parse().unwrap(),
            })
            .collect(),
        zone: "default".into(),
        switches: vec!["sw1".into()],
        quarantine_secs: 300,
    }
}

/// Identity `shop/production/web/<i>`.
pub fn id(i: u32) -> InstanceId {
    InstanceId::new(&GroupKey::new("shop", "production", "web"), i)
}

/// Parses an address.
pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
