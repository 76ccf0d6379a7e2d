//! An independent check of the final store state. It shares no code with
//! the scheduler's bookkeeping: it re-reads hosts, networks and container
//! records, recomputes every host's allocation from the containers, and
//! re-derives each group's hard caps from the group's spec.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jdos_scheduler::ZonePolicy;
use jdos_store::json::list_all;
use jdos_store::{Store, StoreError};
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, GroupKey, Host, Network, Resources};
use serde::{Deserialize, Serialize};

use crate::workload::GroupSpec;

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Container records read.
    pub containers: usize,
    /// Hard constraints broken, in total.
    pub violations: u64,
    /// Broken constraints by kind (`capacity.cpu`, `cap.switch` …).
    pub kinds: BTreeMap<String, u64>,
}

impl CheckReport {
    fn add(&mut self, kind: &str, n: u64) {
        if n > 0 {
            self.violations += n;
            *self.kinds.entry(kind.to_string()).or_default() += n;
        }
    }
}

/// Switches of the group's datacenter with a schedulable host that passes
/// the group's static constraints (zone, network, labels) and whose empty
/// capacity could hold one container.
pub fn feasible_switches(
    spec: &GroupSpec,
    hosts: &[Host],
    networks: &[Network],
    policy: &ZonePolicy,
) -> usize {
    let r = &spec.request;
    let zones: BTreeSet<&str> = policy
        .allowed(r.business_level)
        .iter()
        .map(String::as_str)
        .collect();
    let vlan_switches: Option<BTreeSet<&str>> = match (&r.network, &r.network_zone) {
        (None, None) => None,
        (Some(n), _) => Some(
            networks
                .iter()
                .filter(|x| &x.name == n)
                .flat_map(|x| x.switches.iter().map(String::as_str))
                .collect(),
        ),
        (None, Some(z)) => Some(
            networks
                .iter()
                .filter(|x| &x.zone == z)
                .flat_map(|x| x.switches.iter().map(String::as_str))
                .collect(),
        ),
    };
    let switches: BTreeSet<&str> = hosts
        .iter()
        .filter(|h| {
            h.datacenter == r.datacenter
                && h.schedulable()
                && zones.contains(h.resource_zone.as_str())
                && vlan_switches
                    .as_ref()
                    .is_none_or(|s| s.contains(h.switch.as_str()))
                && r.placement
                    .required_labels
                    .iter()
                    .all(|(k, v)| h.labels.get(k) == Some(v))
                && r.resources.first_exceeding(&h.capacity).is_none()
        })
        .map(|h| h.switch.as_str())
        .collect();
    switches.len()
}

/// The caps a group must respect, derived from its spec alone and the
/// number of switches that fit it: `(per host, per rack, per switch)`,
/// `u32::MAX` = none.
pub fn caps_for(spec: &GroupSpec, feasible_switches: usize) -> (u32, u32, u32) {
    let r = &spec.request;
    let total = r.replicas + r.existing.len() as u32;
    let per_switch = r
        .placement
        .max_per_switch
        .or((feasible_switches >= 2).then(|| total.div_ceil(2)))
        .unwrap_or(u32::MAX);
    (
        r.placement.max_per_host.unwrap_or(1),
        r.placement.max_per_rack.unwrap_or(u32::MAX),
        per_switch,
    )
}

/// Checks the store against the workload.
pub async fn check(
    store: &dyn Store,
    groups: &[GroupSpec],
    policy: &ZonePolicy,
) -> Result<CheckReport, StoreError> {
    tracing::info!("checking the final store state");
    let hosts: Vec<Host> = list_all(store, keys::HOSTS).await?;
    let networks: Vec<Network> = list_all(store, keys::NETWORKS).await?;
    let containers: Vec<Container> = list_all(store, keys::CONTAINERS).await?;
    let allocs: Vec<HostAllocation> = list_all(store, keys::ALLOC).await?;
    let mut rep = CheckReport {
        containers: containers.len(),
        ..Default::default()
    };
    let by_name: HashMap<&str, &Host> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let specs: HashMap<GroupKey, &GroupSpec> = groups
        .iter()
        .map(|g| (g.request.group.clone(), g))
        .collect();

    // Capacity, from the container records only.
    let mut used: HashMap<&str, (Resources, u32)> = HashMap::new();
    for c in &containers {
        let Some(h) = c.host.as_deref() else { continue };
        let e = used.entry(h).or_default();
        e.0 = e.0.saturating_add(&c.resources);
        e.1 += 1;
    }
    for (h, (r, _)) in &used {
        match by_name.get(h) {
            None => rep.add("host.unknown", 1),
            Some(host) => {
                if let Some(dim) = r.first_exceeding(&host.capacity) {
                    rep.add(&format!("capacity.{dim}"), 1);
                }
            }
        }
    }
    // The stored allocations must agree with the containers.
    let stored: HashMap<&str, &HostAllocation> =
        allocs.iter().map(|a| (a.host.as_str(), a)).collect();
    for h in &hosts {
        let want = used.get(h.name.as_str()).copied().unwrap_or_default();
        let got = stored
            .get(h.name.as_str())
            .map(|a| (a.allocated, a.containers))
            .unwrap_or_default();
        if want != got {
            rep.add("allocation_mismatch", 1);
        }
    }

    // Per-container constraints and per-group caps.
    let mut per_group: HashMap<GroupKey, Vec<&Container>> = HashMap::new();
    for c in &containers {
        per_group.entry(c.id.group_key()).or_default().push(c);
    }
    let mut switch_memo = HashMap::new();
    for (g, cs) in &per_group {
        let Some(spec) = specs.get(g) else {
            rep.add("group.unknown", cs.len() as u64);
            continue;
        };
        let r = &spec.request;
        if cs.len() as u32 > r.replicas + r.existing.len() as u32 {
            rep.add("group.too_many", 1);
        }
        let zones = policy.allowed(r.business_level);
        // Groups with the same static constraints and container size share
        // the switch count.
        let memo_key = (
            r.datacenter.clone(),
            r.business_level,
            r.network.clone(),
            r.network_zone.clone(),
            r.placement.required_labels.clone(),
            r.resources,
        );
        let feasible = *switch_memo
            .entry(memo_key)
            .or_insert_with(|| feasible_switches(spec, &hosts, &networks, policy));
        let (cap_h, cap_r, cap_s) = caps_for(spec, feasible);
        let mut on_host: HashMap<&str, u32> = HashMap::new();
        let mut on_rack: HashMap<(&str, &str), u32> = HashMap::new();
        let mut on_switch: HashMap<(&str, &str), u32> = HashMap::new();
        for c in cs {
            let Some(host) = c.host.as_deref().and_then(|h| by_name.get(h)) else {
                rep.add("host.unknown", 1);
                continue;
            };
            if host.datacenter != r.datacenter {
                rep.add("datacenter", 1);
            }
            if !host.schedulable() {
                rep.add("host.unschedulable", 1);
            }
            if !zones.iter().any(|z| z == &host.resource_zone) {
                rep.add("resource_zone", 1);
            }
            let reach = match (&r.network, &r.network_zone) {
                (None, None) => true,
                (Some(n), _) => networks
                    .iter()
                    .any(|x| &x.name == n && x.switches.contains(&host.switch)),
                (None, Some(z)) => networks
                    .iter()
                    .any(|x| &x.zone == z && x.switches.contains(&host.switch)),
            };
            if !reach {
                rep.add("network_unreachable", 1);
            }
            if !r
                .placement
                .required_labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
            {
                rep.add("labels", 1);
            }
            *on_host.entry(&host.name).or_default() += 1;
            *on_rack.entry((&host.datacenter, &host.rack)).or_default() += 1;
            *on_switch
                .entry((&host.datacenter, &host.switch))
                .or_default() += 1;
        }
        let over = |counts: Vec<u32>, cap: u32| -> u64 {
            counts
                .into_iter()
                .map(|n| n.saturating_sub(cap) as u64)
                .sum()
        };
        rep.add("cap.host", over(on_host.into_values().collect(), cap_h));
        rep.add("cap.rack", over(on_rack.into_values().collect(), cap_r));
        rep.add("cap.switch", over(on_switch.into_values().collect(), cap_s));
    }
    Ok(rep)
}
