//! What the scheduler is asked to do, and the policy that maps an app's
//! business level to the resource zones it may use.

use std::collections::BTreeMap;

use jdos_types::group::Placement;
use jdos_types::{BusinessLevel, Group, GroupKey, Resources};
use serde::{Deserialize, Serialize};

/// Which resource zones each business level may use.
///
/// The default policy keeps core systems (site, trade, orders) on the
/// best-isolated `core` hosts and everything else off them:
///
/// | level | zones |
/// |---|---|
/// | core | `core` |
/// | important | `general` |
/// | normal | `general` |
/// | test | `test`, `general` |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonePolicy {
    /// Allowed zones per level; a level missing here may use no zone.
    pub zones: BTreeMap<BusinessLevel, Vec<String>>,
}

impl Default for ZonePolicy {
    fn default() -> Self {
        let z = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ZonePolicy {
            zones: BTreeMap::from([
                (BusinessLevel::Core, z(&["core"])),
                (BusinessLevel::Important, z(&["general"])),
                (BusinessLevel::Normal, z(&["general"])),
                (BusinessLevel::Test, z(&["test", "general"])),
            ]),
        }
    }
}

impl ZonePolicy {
    /// The zones a level may use.
    pub fn allowed(&self, level: BusinessLevel) -> &[String] {
        self.zones.get(&level).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A request to place `replicas` more containers of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    /// The group.
    pub group: GroupKey,
    /// Datacenter the group runs in.
    pub datacenter: String,
    /// New replicas to place now.
    pub replicas: u32,
    /// Resources of each container.
    pub resources: Resources,
    /// The app's business level (decides the resource zones).
    pub business_level: BusinessLevel,
    /// Network zone the containers' IPs come from (any network of the zone).
    pub network_zone: Option<String>,
    /// A specific network, overriding the zone.
    pub network: Option<String>,
    /// Strategy, caps and required labels.
    pub placement: Placement,
    /// Hosts of the group's existing containers, one entry per container.
    pub existing: Vec<String>,
}

impl GroupRequest {
    /// A request to add `replicas` to `group`, whose containers already run on
    /// `existing` hosts.
    pub fn for_group(
        group: &Group,
        business_level: BusinessLevel,
        replicas: u32,
        existing: Vec<String>,
    ) -> Self {
        GroupRequest {
            group: group.key(),
            datacenter: group.datacenter.clone(),
            replicas,
            resources: group.template.resources,
            business_level,
            network_zone: group.template.network_zone.clone(),
            network: group.template.network.clone(),
            placement: group.placement.clone(),
            existing,
        }
    }

    /// Replicas the group will have once this request is placed.
    pub fn total_replicas(&self) -> u32 {
        self.existing.len() as u32 + self.replicas
    }
}

/// The hard caps a plan was made under, after defaults were applied
/// (`None` = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveCaps {
    /// Most replicas on one host.
    pub max_per_host: Option<u32>,
    /// Most replicas on one rack.
    pub max_per_rack: Option<u32>,
    /// Most replicas on one switch.
    pub max_per_switch: Option<u32>,
}

impl EffectiveCaps {
    /// Applies the defaults of the issue: one replica per host; at most
    /// `ceil(total / 2)` per switch when the datacenter has two or more
    /// switches that pass the group's static filters; no rack cap.
    pub fn resolve(p: &Placement, total_replicas: u32, feasible_switches: usize) -> Self {
        let default_switch = (feasible_switches >= 2).then(|| total_replicas.div_ceil(2).max(1));
        EffectiveCaps {
            max_per_host: Some(p.max_per_host.unwrap_or(1)),
            max_per_rack: p.max_per_rack,
            max_per_switch: p.max_per_switch.or(default_switch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_default_and_override() {
        let p = Placement::default();
        let c = EffectiveCaps::resolve(&p, 5, 3);
        assert_eq!(c.max_per_host, Some(1));
        assert_eq!(c.max_per_switch, Some(3));
        assert_eq!(c.max_per_rack, None);
        assert_eq!(EffectiveCaps::resolve(&p, 5, 1).max_per_switch, None);
        let p = Placement {
            max_per_host: Some(4),
            max_per_switch: Some(9),
            ..Placement::default()
        };
        let c = EffectiveCaps::resolve(&p, 5, 3);
        assert_eq!((c.max_per_host, c.max_per_switch), (Some(4), Some(9)));
        let pol = ZonePolicy::default();
        assert_eq!(pol.allowed(BusinessLevel::Core), ["core"]);
        assert_eq!(pol.allowed(BusinessLevel::Test), ["test", "general"]);
    }
}
