//! Why a replica could not be placed, in Nomad's style: how many hosts were
//! evaluated and how many each constraint filtered out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The constraint that filtered a host out. Filters run in this order and a
/// host is counted under the first one it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// In another datacenter.
    Datacenter,
    /// Not in the `ready` state.
    NotReady,
    /// Cordoned by an operator.
    Cordoned,
    /// Excluded by the request (a relocation away from it).
    Avoided,
    /// Resource zone not allowed for the app's business level.
    ResourceZone,
    /// The group's network (VLAN) is not trunked to the host's switch.
    NetworkUnreachable,
    /// A required label is missing or different.
    Labels,
    /// The group already has its cap on this switch.
    CapSwitch,
    /// The group already has its cap on this rack.
    CapRack,
    /// The group already has its cap on this host.
    CapHost,
    /// Not enough free cpu.
    Cpu,
    /// Not enough free memory.
    Memory,
    /// Not enough free L0 (tmpfs).
    DiskL0,
    /// Not enough free L1 (SSD).
    DiskL1,
    /// Not enough free L2 (SAS).
    DiskL2,
    /// Not enough free L3 (block).
    DiskL3,
}

impl Reason {
    /// Stable name, as shown to users and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Datacenter => "datacenter",
            Reason::NotReady => "host.not_ready",
            Reason::Cordoned => "host.cordoned",
            Reason::Avoided => "host.avoided",
            Reason::ResourceZone => "resource_zone",
            Reason::NetworkUnreachable => "network_unreachable",
            Reason::Labels => "labels",
            Reason::CapSwitch => "cap.switch",
            Reason::CapRack => "cap.rack",
            Reason::CapHost => "cap.host",
            Reason::Cpu => "resources.cpu",
            Reason::Memory => "resources.memory",
            Reason::DiskL0 => "resources.disk.l0",
            Reason::DiskL1 => "resources.disk.l1",
            Reason::DiskL2 => "resources.disk.l2",
            Reason::DiskL3 => "resources.disk.l3",
        }
    }

    /// Maps `Resources::first_exceeding` names to reasons.
    pub(crate) fn from_dimension(d: &str) -> Reason {
        match d {
            "cpu" => Reason::Cpu,
            "memory" => Reason::Memory,
            "disk.l0" => Reason::DiskL0,
            "disk.l1" => Reason::DiskL1,
            "disk.l2" => Reason::DiskL2,
            _ => Reason::DiskL3,
        }
    }
}

/// The explanation of a failed placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Hosts looked at (every host of the snapshot).
    pub hosts_evaluated: u32,
    /// Hosts filtered out, by constraint name (`resources.cpu`, `cap.switch` …).
    pub filtered: BTreeMap<String, u32>,
}

impl Explanation {
    /// Counts one host under `reason`.
    pub(crate) fn add(&mut self, reason: Reason) {
        *self
            .filtered
            .entry(reason.as_str().to_string())
            .or_default() += 1;
    }

    /// Hosts filtered by `reason`.
    pub fn count(&self, reason: Reason) -> u32 {
        self.filtered.get(reason.as_str()).copied().unwrap_or(0)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} hosts fit", self.hosts_evaluated)?;
        let mut v: Vec<_> = self.filtered.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (i, (k, n)) in v.iter().enumerate() {
            write!(f, "{} {n} {k}", if i == 0 { ":" } else { "," })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_sorts_by_count() {
        let mut e = Explanation {
            hosts_evaluated: 4,
            ..Default::default()
        };
        e.add(Reason::Cpu);
        e.add(Reason::Datacenter);
        e.add(Reason::Datacenter);
        e.add(Reason::CapHost);
        assert_eq!(
            e.to_string(),
            "0/4 hosts fit: 2 datacenter, 1 cap.host, 1 resources.cpu"
        );
        assert_eq!(e.count(Reason::Datacenter), 2);
    }
}
