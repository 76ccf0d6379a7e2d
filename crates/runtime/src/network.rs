//! How a jdos network becomes a Docker network on a host: one Docker network
//! per jdos network, with the same subnet and gateway. `bridge` for dev and
//! tests (a Linux bridge on the host), `macvlan` on `<iface>.<vlan>` in
//! production (containers sit directly on the VLAN, reachable from the
//! existing systems, as the seeds require).
//!
//! Caveat of macvlan, by design of the kernel: a host cannot reach its own
//! macvlan containers through the parent interface. The agent's tcp/http
//! health probes then need a host-side macvlan "shim" on the same
//! sub-interface (`ip link add jdos-shim link bond0.120 type macvlan mode
//! bridge`, with an address and a route for the subnet), or exec probes,
//! which do not use the network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Which Docker network driver realizes jdos networks on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "driver")]
pub enum NetworkMode {
    /// A Linux bridge per network (dev and tests: one host, no VLAN trunk).
    #[default]
    Bridge,
    /// macvlan on the 802.1Q sub-interface `<parent>.<vlan>` (Docker creates
    /// the sub-interface when it is missing).
    Macvlan {
        /// The trunk interface, e.g. `bond0`.
        parent: String,
    },
}

/// Host configuration of network realization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRealization {
    /// Driver choice.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Prefix of Docker network names (`jdos-` by default), so jdos networks
    /// never collide with `bridge`, `host`, `none` or the operator's own.
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
}

fn default_prefix() -> String {
    "jdos-".to_string()
}

impl Default for NetworkRealization {
    fn default() -> Self {
        NetworkRealization {
            mode: NetworkMode::Bridge,
            name_prefix: default_prefix(),
        }
    }
}

impl NetworkRealization {
    /// Bridge networks (dev, tests).
    pub fn bridge() -> Self {
        Self::default()
    }

    /// macvlan networks on `parent.<vlan>`.
    pub fn macvlan(parent: &str) -> Self {
        NetworkRealization {
            mode: NetworkMode::Macvlan {
                parent: parent.to_string(),
            },
            ..Self::default()
        }
    }

    /// The Docker network name of jdos network `name`.
    pub fn docker_name(&self, name: &str) -> String {
        format!("{}{name}", self.name_prefix)
    }

    /// What the Docker network for `network` must look like.
    pub fn desired(&self, network: &jdos_types::Network) -> DockerNetworkShape {
        let (driver, options) = match &self.mode {
            NetworkMode::Bridge => ("bridge".to_string(), BTreeMap::new()),
            NetworkMode::Macvlan { parent } => (
                "macvlan".to_string(),
                [("parent".to_string(), format!("{parent}.{}", network.vlan))]
                    .into_iter()
                    .collect(),
            ),
        };
        DockerNetworkShape {
            name: self.docker_name(&network.name),
            driver,
            subnet: network.subnet.trunc(),
            gateway: network.gateway,
            options,
        }
    }
}

/// The parts of a Docker network that must match for it to be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetworkShape {
    /// Docker network name.
    pub name: String,
    /// Docker driver.
    pub driver: String,
    /// IPv4 subnet.
    pub subnet: Ipv4Net,
    /// IPv4 gateway.
    pub gateway: Ipv4Addr,
    /// Driver options that must match (`parent` for macvlan).
    pub options: BTreeMap<String, String>,
}

impl DockerNetworkShape {
    /// Every difference between `self` (wanted) and `actual`, in words; empty
    /// when `actual` can be reused as it is.
    pub fn differences(&self, actual: &ObservedNetwork) -> Vec<String> {
        let mut d = Vec::new();
        if actual.driver != self.driver {
            d.push(format!("driver {} (want {})", actual.driver, self.driver));
        }
        if !actual.subnets.contains(&self.subnet) {
            d.push(format!(
                "subnets [{}] (want {})",
                join(&actual.subnets),
                self.subnet
            ));
        }
        if !actual.gateways.contains(&self.gateway) {
            d.push(format!(
                "gateways [{}] (want {})",
                join(&actual.gateways),
                self.gateway
            ));
        }
        for (k, v) in &self.options {
            match actual.options.get(k) {
                Some(a) if a == v => {}
                Some(a) => d.push(format!("option {k}={a} (want {v})")),
                None => d.push(format!("no option {k} (want {v})")),
            }
        }
        d
    }
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A network as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedNetwork {
    /// Engine id.
    pub id: String,
    /// Docker driver.
    pub driver: String,
    /// IPv4 subnets of its IPAM config.
    pub subnets: Vec<Ipv4Net>,
    /// IPv4 gateways of its IPAM config.
    pub gateways: Vec<Ipv4Addr>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// The realized network, as `ensure_network` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Docker network name.
    pub name: String,
    /// Engine id.
    pub id: String,
    /// True when this call created it, false when an existing one was reused.
    pub created: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> jdos_types::Network {
        jdos_types::Network {
            name: "prod-a".into(),
            vlan: 120,
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "prod".into(),
            switches: vec![],
            quarantine_secs: 300,
        }
    }

    #[test]
    fn macvlan_uses_the_vlan_sub_interface() {
        let s = NetworkRealization::macvlan("bond0").desired(&net());
        assert_eq!(s.name, "jdos-prod-a");
        assert_eq!(s.driver, "macvlan");
        assert_eq!(s.options["parent"], "bond0.120");
    }

    #[test]
    fn differences_name_every_mismatch() {
        let want = NetworkRealization::bridge().desired(&net());
        let same = ObservedNetwork {
            id: "x".into(),
            driver: "bridge".into(),
            subnets: vec!["10.1.0.0/24".parse().unwrap()],
            gateways: vec!["10.1.0.1".parse().unwrap()],
            options: BTreeMap::new(),
        };
        assert!(want.differences(&same).is_empty());
        let other = ObservedNetwork {
            driver: "macvlan".into(),
            subnets: vec!["10.2.0.0/24".parse().unwrap()],
            gateways: vec![],
            ..same
        };
        assert_eq!(want.differences(&other).len(), 3);
    }
}
