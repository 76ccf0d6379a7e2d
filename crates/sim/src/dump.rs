//! `--dump FILE`: the topology and the final placement as JSON lines, so an
//! outside tool (scripts/check-sim-dump.py) can check them.
//!
//! Lines, each an object with a `type`:
//! - `host`: name, datacenter, switch, rack, zone, state, cordoned, cpu,
//!   memory, disk_l0..l3, labels
//! - `network`: name, vlan, zone, switches
//! - `group`: group, app, datacenter, replicas, unplaced, level, zones,
//!   network_zone, required_labels, cpu, memory, disk_l0..l3 (per
//!   container), max_per_host, max_per_rack, max_per_switch (the caps the
//!   scheduler applied; null = none), requested (the caps the group set)
//! - `container`: container, app, group, host, datacenter, switch, rack,
//!   cpu, memory, disk_l0..l3, max_per_host, max_per_rack, max_per_switch

use std::collections::HashMap;
use std::io::Write;

use jdos_scheduler::{EffectiveCaps, ZonePolicy};
use jdos_store::Store;
use jdos_types::{keys, Container, GroupKey};
use serde_json::json;

use crate::run::{SimError, SimRun};
use jdos_store::json::list_all;

/// Writes the dump of a finished run.
pub async fn write_dump(
    run: &SimRun,
    store: &dyn Store,
    policy: &ZonePolicy,
    out: &mut dyn Write,
) -> Result<(), SimError> {
    let io = |e: std::io::Error| SimError::Invalid(format!("cannot write dump: {e}"));
    for h in &run.estate.hosts {
        let line = json!({
            "type": "host", "name": h.name, "datacenter": h.datacenter, "switch": h.switch,
            "rack": h.rack, "zone": h.resource_zone, "state": h.state.as_str(),
            "cordoned": h.cordoned, "cpu": h.capacity.cpu_millis, "memory": h.capacity.memory_bytes,
            "disk_l0": h.capacity.disk.l0, "disk_l1": h.capacity.disk.l1,
            "disk_l2": h.capacity.disk.l2, "disk_l3": h.capacity.disk.l3, "labels": h.labels,
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    for n in &run.estate.networks {
        let line = json!({"type": "network", "name": n.name, "vlan": n.vlan, "zone": n.zone, "switches": n.switches});
        writeln!(out, "{line}").map_err(io)?;
    }
    let mut caps: HashMap<GroupKey, EffectiveCaps> = HashMap::new();
    for r in &run.results {
        let g = &run.groups[r.spec].request;
        caps.insert(g.group.clone(), r.caps);
        let line = json!({
            "type": "group", "group": g.group.to_string(), "app": g.group.app,
            "datacenter": g.datacenter, "replicas": g.replicas, "unplaced": r.unplaced,
            "level": g.business_level.as_str(), "zones": policy.allowed(g.business_level),
            "network_zone": g.network_zone, "required_labels": g.placement.required_labels,
            "max_per_host": r.caps.max_per_host, "max_per_rack": r.caps.max_per_rack,
            "max_per_switch": r.caps.max_per_switch,
            "cpu": g.resources.cpu_millis, "memory": g.resources.memory_bytes,
            "disk_l0": g.resources.disk.l0, "disk_l1": g.resources.disk.l1,
            "disk_l2": g.resources.disk.l2, "disk_l3": g.resources.disk.l3,
            "requested": {
                "max_per_host": g.placement.max_per_host,
                "max_per_rack": g.placement.max_per_rack,
                "max_per_switch": g.placement.max_per_switch,
            },
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    let hosts: HashMap<&str, &jdos_types::Host> = run
        .estate
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    let containers: Vec<Container> = list_all(store, keys::CONTAINERS).await?;
    for c in &containers {
        let host = c.host.as_deref().unwrap_or("");
        let (sw, rack) = hosts
            .get(host)
            .map_or(("", ""), |h| (h.switch.as_str(), h.rack.as_str()));
        let g = c.id.group_key();
        let c0 = caps.get(&g).copied().unwrap_or_default();
        let (ch, cr, cs) = (c0.max_per_host, c0.max_per_rack, c0.max_per_switch);
        let line = json!({
            "type": "container", "container": c.id.to_string(), "app": c.id.app,
            "group": g.to_string(), "host": host, "datacenter": c.datacenter, "switch": sw,
            "rack": rack, "cpu": c.resources.cpu_millis, "memory": c.resources.memory_bytes,
            "disk_l0": c.resources.disk.l0, "disk_l1": c.resources.disk.l1,
            "disk_l2": c.resources.disk.l2, "disk_l3": c.resources.disk.l3,
            "max_per_host": ch, "max_per_rack": cr, "max_per_switch": cs,
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    Ok(())
}
