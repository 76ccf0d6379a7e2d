//! `jdos dev`: a simulated topology registered through the same code path
//! as `POST /api/v1/hosts`, and one network per datacenter. Seeded hosts
//! carry driver `simulated` until the in-process agents `jdos dev` starts
//! register them for real (an agent takes over its simulated record).

use std::net::Ipv4Addr;

use jdos_types::api::RegisterHost;
use jdos_types::resources::GIB;
use jdos_types::{Host, Labels, Network, Resources};

use crate::api::{hosts, networks};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::state::AppState;

/// Driver name of hosts with no agent behind them.
pub const SIMULATED_DRIVER: &str = "simulated";

/// Shape of the simulated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTopology {
    /// Datacenters.
    pub datacenters: u32,
    /// Switches per datacenter.
    pub switches_per_dc: u32,
    /// Racks per switch.
    pub racks_per_switch: u32,
    /// Hosts per rack.
    pub hosts_per_rack: u32,
    /// Capacity of every host.
    pub host_capacity: Resources,
    /// Datacenter names, used in order; `dc<N>` past the end.
    pub datacenter_names: Vec<String>,
}

impl Default for DevTopology {
    fn default() -> Self {
        let mut cap = Resources::new(16_000, 64 * GIB);
        cap.disk.l1 = 500 * GIB;
        cap.disk.l2 = 2000 * GIB;
        DevTopology {
            datacenters: 2,
            switches_per_dc: 2,
            racks_per_switch: 2,
            hosts_per_rack: 2,
            host_capacity: cap,
            datacenter_names: vec!["langfang".into(), "suqian".into(), "guangzhou".into()],
        }
    }
}

impl DevTopology {
    /// Number of hosts it describes.
    pub fn host_count(&self) -> u64 {
        u64::from(self.datacenters)
            * u64::from(self.switches_per_dc)
            * u64::from(self.racks_per_switch)
            * u64::from(self.hosts_per_rack)
    }

    /// The registrations, in order. Names are unique across the topology:
    /// `<dc>-s<S>-r<R>-h<H>`, switches `<dc>-s<S>`, racks `<dc>-s<S>-r<R>`.
    pub fn registrations(&self) -> Vec<RegisterHost> {
        let mut out = Vec::new();
        for d in 0..self.datacenters {
            let dc = self
                .datacenter_names
                .get(d as usize)
                .cloned()
                .unwrap_or_else(|| format!("dc{}", d + 1));
            for s in 1..=self.switches_per_dc {
                let switch = format!("{dc}-s{s}");
                for r in 1..=self.racks_per_switch {
                    let rack = format!("{switch}-r{r}");
                    for h in 1..=self.hosts_per_rack {
                        let mut labels = Labels::new();
                        labels.insert("jdos.io/simulated".into(), "true".into());
                        out.push(RegisterHost {
                            name: format!("{rack}-h{h}"),
                            datacenter: dc.clone(),
                            switch: switch.clone(),
                            rack: rack.clone(),
                            capacity: self.host_capacity,
                            resource_zone: None,
                            labels,
                            driver: Some(SIMULATED_DRIVER.into()),
                        });
                    }
                }
            }
        }
        out
    }
}

/// Registers the simulated hosts (idempotently: re-seeding updates them) as
/// actor `system:dev`, recording a `host.register` event for each.
pub async fn seed(state: &AppState, topo: &DevTopology) -> Result<Vec<Host>, HttpError> {
    let caller = Caller::system("system:dev");
    let mut hosts = Vec::new();
    for req in topo.registrations() {
        let (h, _) = hosts::register(state, &caller, req).await?;
        hosts.push(h);
    }
    tracing::info!(hosts = hosts.len(), "seeded the simulated topology");
    Ok(hosts)
}

/// The network of datacenter number `index` (0-based) in `jdos dev`:
/// `dev-<dc>`, VLAN 100 + index, `10.213.<index+1>.0/24` with gateway `.1`,
/// trunked to every switch of the datacenter, so every dev container gets a
/// static address the host can reach (Docker realizes it as a bridge).
pub fn dev_network(topo: &DevTopology, index: u32) -> Network {
    let regs = topo.registrations();
    let dc = topo
        .datacenter_names
        .get(index as usize)
        .cloned()
        .unwrap_or_else(|| format!("dc{}", index + 1));
    let mut switches: Vec<String> = regs
        .iter()
        .filter(|r| r.datacenter == dc)
        .map(|r| r.switch.clone())
        .collect();
    switches.dedup();
    let octet = (index + 1).min(254) as u8;
    Network {
        name: format!("dev-{dc}"),
        vlan: 100 + index as u16,
        subnet: format!("10.213.{octet}.0/24")
            .parse()
            .expect("a /24 is valid"),
        gateway: Ipv4Addr::new(10, 213, octet, 1),
        reserved: Vec::new(),
        zone: "dev".into(),
        switches,
        quarantine_secs: 30,
    }
}

/// Creates the per-datacenter dev networks ([`dev_network`]) that do not
/// exist yet, as actor `system:dev`; answers all of them.
pub async fn seed_networks(
    state: &AppState,
    topo: &DevTopology,
) -> Result<Vec<Network>, HttpError> {
    let caller = Caller::system("system:dev");
    let mut out = Vec::new();
    for i in 0..topo.datacenters {
        let net = dev_network(topo, i);
        match networks::create(state, &caller, net.clone()).await {
            Ok(n) => out.push(n),
            // A kept --data-dir already has it.
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => out.push(net),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
