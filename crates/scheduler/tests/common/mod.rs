//! Helpers shared by the integration tests.
#![allow(dead_code)]

use jdos_scheduler::GroupRequest;
use jdos_types::group::Placement;
use jdos_types::resources::GIB;
use jdos_types::{BusinessLevel, GroupKey, Host, HostState, Labels, Network, Resources};

/// A ready general-zone host.
pub fn host(name: &str, dc: &str, sw: &str, rack: &str, cpu: u64, mem_gib: u64) -> Host {
    Host {
        name: name.into(),
        datacenter: dc.into(),
        switch: sw.into(),
        rack: rack.into(),
        capacity: Resources::new(cpu, mem_gib * GIB),
        resource_zone: "general".into(),
        labels: Labels::new(),
        state: HostState::Ready,
        cordoned: false,
        epoch: 1,
        last_heartbeat_ms: 0,
        registered_at_ms: 0,
        driver: "fake".into(),
    }
}

/// `switches` switches × `racks` racks × `hosts` hosts in `dc`, each host
/// 8 cores / 32 GiB.
pub fn estate(dc: &str, switches: usize, racks: usize, hosts: usize) -> Vec<Host> {
    let mut v = Vec::new();
    for s in 0..switches {
        for r in 0..racks {
            for h in 0..hosts {
                v.push(host(
                    &format!("{dc}-s{s}-r{r}-h{h}"),
                    dc,
                    &format!("{dc}-s{s}"),
                    &format!("{dc}-s{s}-r{r}"),
                    8000,
                    32,
                ));
            }
        }
    }
    v
}

/// A normal-level request with default placement.
pub fn request(group: &str, dc: &str, replicas: u32, cpu: u64, mem_gib: u64) -> GroupRequest {
    GroupRequest {
        group: GroupKey::new(group, "production", "web"),
        datacenter: dc.into(),
        replicas,
        resources: Resources::new(cpu, mem_gib * GIB),
        business_level: BusinessLevel::Normal,
        network_zone: None,
        network: None,
        placement: Placement::default(),
        existing: Vec::new(),
    }
}

/// A VLAN network trunked to `switches`.
pub fn network(name: &str, zone: &str, switches: &[&str]) -> Network {
    Network {
        name: name.into(),
        vlan: 100,
        subnet: "10.0.0.0/16".parse().unwrap(),
        gateway: "10.0.0.1".parse().unwrap(),
        reserved: Vec::new(),
        zone: zone.into(),
        switches: switches.iter().map(|s| s.to_string()).collect(),
        quarantine_secs: 300,
    }
}
