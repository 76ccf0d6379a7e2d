//! A generated estate: datacenters of switches of racks of hosts, resource
//! zones by business level, and a VLAN per network zone per datacenter.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use jdos_scheduler::rng::SeededRng;
use jdos_types::resources::GIB;
use jdos_types::{Host, HostState, Labels, Network, Resources};
use serde::{Deserialize, Serialize};

/// Hosts behind one switch.
pub const HOSTS_PER_SWITCH: usize = 40;
/// Hosts in one rack (two racks per switch).
pub const HOSTS_PER_RACK: usize = 20;

/// Datacenters and their share of the hosts.
pub const DATACENTERS: [(&str, f64); 3] =
    [("langfang", 0.40), ("suqian", 0.35), ("guangzhou", 0.25)];

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstateSpec {
    /// Number of hosts.
    pub hosts: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// A generated estate.
#[derive(Debug, Clone, Default)]
pub struct Estate {
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Networks (one VLAN per network zone per datacenter).
    pub networks: Vec<Network>,
}

/// Host models: (share, cores, memory GiB, L1 SSD GiB, L2 SAS GiB).
const MODELS: [(f64, u64, u64, u64, u64); 4] = [
    (0.30, 40, 192, 1920, 4000),
    (0.40, 56, 256, 1920, 8000),
    (0.20, 64, 384, 3840, 0),
    (0.10, 96, 768, 3840, 8000),
];

/// The resource zone of a switch: whole switches belong to a zone, about 20%
/// `core`, 10% `test`, the rest `general`.
pub fn zone_of_switch(i: usize) -> &'static str {
    match i % 10 {
        0 | 5 => "core",
        9 => "test",
        _ => "general",
    }
}

impl Estate {
    /// Generates an estate.
    pub fn generate(spec: &EstateSpec) -> Estate {
        let _span = tracing::info_span!("generate_estate", hosts = spec.hosts).entered();
        let mut rng = SeededRng::new(spec.seed ^ 0xE57A_7E00);
        let mut hosts = Vec::with_capacity(spec.hosts);
        let mut networks = Vec::new();
        let mut assigned = 0usize;
        for (d, (dc, share)) in DATACENTERS.iter().enumerate() {
            let n = if d == DATACENTERS.len() - 1 {
                spec.hosts - assigned
            } else {
                (spec.hosts as f64 * share).round() as usize
            };
            assigned += n;
            let short = &dc[..2];
            let switches = n.div_ceil(HOSTS_PER_SWITCH);
            let mut prod_switches = Vec::new();
            let mut dmz_switches = Vec::new();
            for s in 0..switches {
                let sw = format!("{short}-sw{s:03}");
                // A network zone is an isolation boundary: one switch in ten
                // carries only the DMZ VLAN, the others the prod VLAN.
                if s % 10 == 7 {
                    dmz_switches.push(sw.clone());
                } else {
                    prod_switches.push(sw.clone());
                }
                let zone = zone_of_switch(s);
                for r in 0..HOSTS_PER_SWITCH / HOSTS_PER_RACK {
                    let rack = format!("{short}-sw{s:03}-r{r}");
                    let x = rng.unit();
                    let mut acc = 0.0;
                    let model = MODELS
                        .iter()
                        .find(|m| {
                            acc += m.0;
                            x < acc
                        })
                        .unwrap_or(&MODELS[0]);
                    let kernel = if rng.unit() < 0.6 { "5.10" } else { "4.19" };
                    for k in 0..HOSTS_PER_RACK {
                        let idx = s * HOSTS_PER_SWITCH + r * HOSTS_PER_RACK + k;
                        if idx >= n {
                            break;
                        }
                        let mut capacity = Resources::new(model.1 * 1000, model.2 * GIB);
                        capacity.disk.l0 = 16 * GIB;
                        capacity.disk.l1 = model.3 * GIB;
                        capacity.disk.l2 = model.4 * GIB;
                        let u = rng.unit();
                        let (state, cordoned) = if u < 0.004 {
                            (HostState::Suspect, false)
                        } else if u < 0.006 {
                            (HostState::Degraded, false)
                        } else if u < 0.01 {
                            (HostState::Ready, true)
                        } else {
                            (HostState::Ready, false)
                        };
                        hosts.push(Host {
                            name: format!("{short}-h{idx:05}"),
                            datacenter: dc.to_string(),
                            switch: format!("{short}-sw{s:03}"),
                            rack: rack.clone(),
                            capacity,
                            resource_zone: zone.to_string(),
                            labels: Labels::from([("kernel".to_string(), kernel.to_string())]),
                            state,
                            cordoned,
                            epoch: 1,
                            last_heartbeat_ms: 0,
                            registered_at_ms: 0,
                            driver: "simulated".into(),
                        });
                    }
                }
            }
            for (z, (zone, sws)) in [("prod", prod_switches), ("dmz", dmz_switches)]
                .into_iter()
                .enumerate()
            {
                let vlan = 100 + (d as u16) * 10 + z as u16;
                let subnet =
                    ipnet::Ipv4Net::new(Ipv4Addr::new(10, (d * 16 + z * 8) as u8, 0, 0), 13)
                        .expect("valid prefix");
                networks.push(Network {
                    name: format!("{short}-{zone}"),
                    vlan,
                    subnet,
                    gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
                    reserved: Vec::new(),
                    zone: zone.to_string(),
                    switches: sws,
                    quarantine_secs: 300,
                });
            }
        }
        Estate { hosts, networks }
    }

    /// Summed cpu capacity of ready, uncordoned hosts per `(datacenter, zone)`.
    pub fn cpu_by_zone(&self) -> BTreeMap<(String, String), u64> {
        let mut m = BTreeMap::new();
        for h in self.hosts.iter().filter(|h| h.schedulable()) {
            *m.entry((h.datacenter.clone(), h.resource_zone.clone()))
                .or_default() += h.capacity.cpu_millis;
        }
        m
    }

    /// Schedulable hosts per `(datacenter, zone)`.
    pub fn hosts_by_zone(&self) -> BTreeMap<(String, String), u32> {
        let mut m = BTreeMap::new();
        for h in self.hosts.iter().filter(|h| h.schedulable()) {
            *m.entry((h.datacenter.clone(), h.resource_zone.clone()))
                .or_default() += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::Validate;

    #[test]
    fn estate_shape_is_realistic_and_valid() {
        let e = Estate::generate(&EstateSpec {
            hosts: 1000,
            seed: 1,
        });
        assert_eq!(e.hosts.len(), 1000);
        for h in &e.hosts {
            h.validate().unwrap();
        }
        for n in &e.networks {
            n.validate().unwrap();
        }
        assert_eq!(e.networks.len(), 6);
        let dcs: std::collections::BTreeSet<_> = e.hosts.iter().map(|h| &h.datacenter).collect();
        assert_eq!(dcs.len(), 3);
        let zones: std::collections::BTreeSet<_> =
            e.hosts.iter().map(|h| &h.resource_zone).collect();
        assert_eq!(zones.len(), 3);
        let again = Estate::generate(&EstateSpec {
            hosts: 1000,
            seed: 1,
        });
        assert_eq!(again.hosts, e.hosts);
    }
}
