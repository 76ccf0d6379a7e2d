//! Topology: datacenter → switch → rack → host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{check_label, check_name};
use crate::{Resources, UnixMillis, Validate, ValidationErrors};

/// Free-form labels (resource zone by hardware, GPU, kernel …).
pub type Labels = BTreeMap<String, String>;

/// Health of a host as the server sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Heartbeating and schedulable (unless cordoned).
    #[default]
    Ready,
    /// Heartbeats missed for the suspect interval; not schedulable, not yet evacuated.
    Suspect,
    /// Confirmed down: its containers are re-placed elsewhere.
    Down,
    /// Being drained by an operator.
    Draining,
    /// Hardware checks failed (NIC / disk errors, temperature): not schedulable.
    Degraded,
}

impl HostState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Ready => "ready",
            HostState::Suspect => "suspect",
            HostState::Down => "down",
            HostState::Draining => "draining",
            HostState::Degraded => "degraded",
        }
    }
}

/// A physical host (or an agent standing for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Unique host name.
    pub name: String,
    /// Datacenter (availability zone) name.
    pub datacenter: String,
    /// Top-of-rack / access switch name, unique within the datacenter.
    pub switch: String,
    /// Rack name, unique within the datacenter.
    pub rack: String,
    /// Schedulable capacity.
    pub capacity: Resources,
    /// Resource zone by business level / hardware (e.g. `core`, `general`).
    #[serde(default = "default_zone")]
    pub resource_zone: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: Labels,
    /// Health state.
    #[serde(default)]
    pub state: HostState,
    /// Cordoned hosts take no new containers.
    #[serde(default)]
    pub cordoned: bool,
    /// Fencing epoch: bumped when the host is declared down, so that a stale
    /// agent coming back cannot keep running containers that were moved.
    #[serde(default)]
    pub epoch: u64,
    /// Last heartbeat seen, in unix ms (0 = never).
    #[serde(default)]
    pub last_heartbeat_ms: UnixMillis,
    /// When the host was first registered.
    #[serde(default)]
    pub registered_at_ms: UnixMillis,
    /// The driver its agent runs (`docker`, `fake`, or `simulated` for hosts
    /// with no agent, as `jdos dev` registers before agents exist).
    #[serde(default)]
    pub driver: String,
}

fn default_zone() -> String {
    "general".to_string()
}

impl Host {
    /// True when the scheduler may place new containers here.
    pub fn schedulable(&self) -> bool {
        self.state == HostState::Ready && !self.cordoned
    }
}

impl Validate for Host {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        check_name(&mut e, "datacenter", &self.datacenter);
        check_name(&mut e, "switch", &self.switch);
        check_name(&mut e, "rack", &self.rack);
        check_name(&mut e, "resource_zone", &self.resource_zone);
        if self.capacity.cpu_millis == 0 {
            e.add(
                "capacity.cpu_millis",
                "out_of_range",
                "must be greater than 0",
            );
        }
        if self.capacity.memory_bytes == 0 {
            e.add(
                "capacity.memory_bytes",
                "out_of_range",
                "must be greater than 0",
            );
        }
        for (k, v) in &self.labels {
            check_label(&mut e, "labels", k, v);
        }
        e.into_result()
    }
}

/// What is allocated on one host. Kept under its own key so that the
/// scheduler's compare-and-swap on it does not race with heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAllocation {
    /// Host name.
    pub host: String,
    /// Sum of the requests of the containers placed here.
    pub allocated: Resources,
    /// Number of containers placed here.
    pub containers: u32,
}

/// One level of the topology tree with its capacity and allocation summed,
/// as `jdos get datacenters` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// `datacenter`, `switch`, `rack` or `host`.
    pub level: String,
    /// Name at that level.
    pub name: String,
    /// Number of hosts below (1 for a host).
    pub hosts: u32,
    /// Hosts below that are schedulable.
    pub ready_hosts: u32,
    /// Capacity summed over hosts below.
    pub capacity: Resources,
    /// Allocation summed over hosts below.
    pub allocated: Resources,
    /// Containers below.
    pub containers: u32,
    /// Children, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TopologyNode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation_reports_every_field() {
        let h = Host {
            name: "Bad Name".into(),
            datacenter: "".into(),
            switch: "sw1".into(),
            rack: "r1".into(),
            capacity: Resources::new(0, 0),
            resource_zone: "general".into(),
            labels: Labels::new(),
            state: HostState::Ready,
            cordoned: false,
            epoch: 0,
            last_heartbeat_ms: 0,
            registered_at_ms: 0,
            driver: String::new(),
        };
        let err = h.validate().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "datacenter",
                "capacity.cpu_millis",
                "capacity.memory_bytes"
            ]
        );
    }
}
