//! The immutable-topology, mutable-allocation view of the estate that the
//! scheduler plans against.
//!
//! Hosts are indexed once per snapshot: datacenter → switch → (switch, rack)
//! bucket → host, with the component-wise maximum free capacity kept per
//! bucket and per switch. A request only walks the switches of its own
//! datacenter and skips any switch or bucket whose best host cannot hold the
//! request, so placing one replica costs O(switches in the datacenter + hosts
//! in one rack), not O(hosts).

use std::collections::HashMap;

use jdos_types::topology::HostAllocation;
use jdos_types::{Host, HostState, Labels, Network, Resources, StorageTier};

/// Index of a host inside a [`Snapshot`].
pub type HostIdx = u32;

/// Index of a switch inside a [`Snapshot`].
pub type SwitchIdx = u32;

/// Index of a rack inside a [`Snapshot`].
pub type RackIdx = u32;

/// One host as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// Host name.
    pub name: String,
    /// Datacenter index.
    pub datacenter: u32,
    /// Switch index (switches are `(datacenter, name)` pairs).
    pub switch: SwitchIdx,
    /// Rack index (racks are `(datacenter, name)` pairs).
    pub rack: RackIdx,
    /// Resource zone index.
    pub zone: u32,
    /// Schedulable capacity.
    pub capacity: Resources,
    /// What is allocated (store state plus any reservation of a plan not yet
    /// committed).
    pub allocated: Resources,
    /// Containers placed here.
    pub containers: u32,
    /// Labels.
    pub labels: Labels,
    /// Health.
    pub state: HostState,
    /// Cordoned.
    pub cordoned: bool,
    /// Fencing epoch, copied into container records.
    pub epoch: u64,
    /// `mod_revision` of the host's allocation key as last read (0 = absent).
    pub alloc_revision: u64,
}

impl HostEntry {
    /// Capacity not yet allocated.
    pub fn free(&self) -> Resources {
        self.capacity.saturating_sub(&self.allocated)
    }

    /// Ready and not cordoned.
    pub fn schedulable(&self) -> bool {
        self.state == HostState::Ready && !self.cordoned
    }
}

/// Hosts of one rack behind one switch: the unit the scheduler scans.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) rack: RackIdx,
    pub(crate) hosts: Vec<HostIdx>,
    pub(crate) max_free: Resources,
}

/// A switch with its schedulable hosts bucketed by rack.
#[derive(Debug, Clone)]
pub(crate) struct SwitchEntry {
    pub(crate) name: String,
    pub(crate) buckets: Vec<u32>,
    pub(crate) max_free: Resources,
    /// Bit `zone % 64` set for every zone with a schedulable host here (a
    /// superset test: the exact zone check is per host).
    pub(crate) zone_mask: u64,
    pub(crate) capacity_cpu: u64,
    pub(crate) capacity_mem: u64,
    pub(crate) allocated_cpu: u64,
    pub(crate) allocated_mem: u64,
}

/// A rack.
#[derive(Debug, Clone)]
pub(crate) struct RackEntry {
    pub(crate) name: String,
}

/// A VLAN network reduced to what placement needs.
#[derive(Debug, Clone)]
pub(crate) struct NetworkEntry {
    pub(crate) name: String,
    pub(crate) zone: String,
    pub(crate) switches: Vec<SwitchIdx>,
}

/// The estate as one scheduler sees it. Topology is fixed for the life of a
/// snapshot (rebuild it when hosts are added, removed or change state);
/// allocations change as plans reserve and as the store reports commits.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) hosts: Vec<HostEntry>,
    by_name: HashMap<String, HostIdx>,
    pub(crate) datacenters: Vec<String>,
    dc_by_name: HashMap<String, u32>,
    pub(crate) dc_switches: Vec<Vec<SwitchIdx>>,
    pub(crate) zones: Vec<String>,
    zone_by_name: HashMap<String, u32>,
    pub(crate) switches: Vec<SwitchEntry>,
    pub(crate) racks: Vec<RackEntry>,
    pub(crate) buckets: Vec<Bucket>,
    pub(crate) networks: Vec<NetworkEntry>,
    /// Bucket of each host, `u32::MAX` when the host is not schedulable.
    host_bucket: Vec<u32>,
}

fn intern(names: &mut Vec<String>, map: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(i) = map.get(name) {
        return *i;
    }
    let i = names.len() as u32;
    names.push(name.to_string());
    map.insert(name.to_string(), i);
    i
}

/// Component-wise maximum.
pub(crate) fn max_res(a: &Resources, b: &Resources) -> Resources {
    let mut r = *a;
    r.cpu_millis = r.cpu_millis.max(b.cpu_millis);
    r.memory_bytes = r.memory_bytes.max(b.memory_bytes);
    for t in StorageTier::ALL {
        *r.disk.get_mut(t) = r.disk.get(t).max(b.disk.get(t));
    }
    r
}

impl Snapshot {
    /// Builds a snapshot from host records, their allocation records (with
    /// the allocation key's `mod_revision`) and the networks. Hosts without
    /// an allocation record start empty at revision 0.
    pub fn build<'a>(
        hosts: impl IntoIterator<Item = &'a Host>,
        allocations: impl IntoIterator<Item = (&'a HostAllocation, u64)>,
        networks: &[Network],
    ) -> Snapshot {
        let mut hosts: Vec<&Host> = hosts.into_iter().collect();
        // A stable order makes plans reproducible whatever order the store
        // listed hosts in.
        hosts.sort_by(|a, b| {
            (&a.datacenter, &a.switch, &a.rack, &a.name).cmp(&(
                &b.datacenter,
                &b.switch,
                &b.rack,
                &b.name,
            ))
        });
        let allocs: HashMap<&str, (&HostAllocation, u64)> = allocations
            .into_iter()
            .map(|(a, rev)| (a.host.as_str(), (a, rev)))
            .collect();

        let mut s = Snapshot::default();
        let mut switch_by_key: HashMap<(u32, String), u32> = HashMap::new();
        let mut rack_by_key: HashMap<(u32, String), u32> = HashMap::new();
        let mut bucket_by_key: HashMap<(u32, u32), u32> = HashMap::new();
        for h in hosts {
            if s.by_name.contains_key(&h.name) {
                continue; // duplicate names: first wins, as in the store there is one key
            }
            let dc = intern(&mut s.datacenters, &mut s.dc_by_name, &h.datacenter);
            if s.dc_switches.len() <= dc as usize {
                s.dc_switches.push(Vec::new());
            }
            let zone = intern(&mut s.zones, &mut s.zone_by_name, &h.resource_zone);
            let sw = *switch_by_key
                .entry((dc, h.switch.clone()))
                .or_insert_with(|| {
                    s.switches.push(SwitchEntry {
                        name: h.switch.clone(),
                        buckets: Vec::new(),
                        max_free: Resources::default(),
                        zone_mask: 0,
                        capacity_cpu: 0,
                        capacity_mem: 0,
                        allocated_cpu: 0,
                        allocated_mem: 0,
                    });
                    let i = (s.switches.len() - 1) as u32;
                    s.dc_switches[dc as usize].push(i);
                    i
                });
            let rack = *rack_by_key.entry((dc, h.rack.clone())).or_insert_with(|| {
                s.racks.push(RackEntry {
                    name: h.rack.clone(),
                });
                (s.racks.len() - 1) as u32
            });
            let (allocated, containers, alloc_revision) = match allocs.get(h.name.as_str()) {
                Some((a, rev)) => (a.allocated, a.containers, *rev),
                None => (Resources::default(), 0, 0),
            };
            let entry = HostEntry {
                name: h.name.clone(),
                datacenter: dc,
                switch: sw,
                rack,
                zone,
                capacity: h.capacity,
                allocated,
                containers,
                labels: h.labels.clone(),
                state: h.state,
                cordoned: h.cordoned,
                epoch: h.epoch,
                alloc_revision,
            };
            let idx = s.hosts.len() as u32;
            let mut bucket = u32::MAX;
            if entry.schedulable() {
                bucket = *bucket_by_key.entry((sw, rack)).or_insert_with(|| {
                    s.buckets.push(Bucket {
                        rack,
                        hosts: Vec::new(),
                        max_free: Resources::default(),
                    });
                    let b = (s.buckets.len() - 1) as u32;
                    s.switches[sw as usize].buckets.push(b);
                    b
                });
                s.buckets[bucket as usize].hosts.push(idx);
                let se = &mut s.switches[sw as usize];
                se.zone_mask |= 1u64 << (zone % 64);
                se.capacity_cpu += entry.capacity.cpu_millis;
                se.capacity_mem += entry.capacity.memory_bytes;
                se.allocated_cpu += entry.allocated.cpu_millis;
                se.allocated_mem += entry.allocated.memory_bytes;
            }
            s.by_name.insert(entry.name.clone(), idx);
            s.hosts.push(entry);
            s.host_bucket.push(bucket);
        }
        for b in 0..s.buckets.len() {
            s.refresh_bucket(b as u32);
        }
        for sw in 0..s.switches.len() {
            s.refresh_switch(sw as u32);
        }
        let mut switches_by_name: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, sw) in s.switches.iter().enumerate() {
            switches_by_name
                .entry(sw.name.as_str())
                .or_default()
                .push(i as u32);
        }
        // Network switch lists carry bare switch names; a name matches that
        // switch in every datacenter (estates name switches uniquely anyway).
        s.networks = networks
            .iter()
            .map(|n| {
                let mut sws: Vec<u32> = n
                    .switches
                    .iter()
                    .filter_map(|name| switches_by_name.get(name.as_str()))
                    .flatten()
                    .copied()
                    .collect();
                sws.sort_unstable();
                sws.dedup();
                NetworkEntry {
                    name: n.name.clone(),
                    zone: n.zone.clone(),
                    switches: sws,
                }
            })
            .collect();
        s
    }

    fn refresh_bucket(&mut self, b: u32) {
        let mut m = Resources::default();
        for &h in &self.buckets[b as usize].hosts {
            m = max_res(&m, &self.hosts[h as usize].free());
        }
        self.buckets[b as usize].max_free = m;
    }

    fn refresh_switch(&mut self, sw: u32) {
        let mut m = Resources::default();
        for &b in &self.switches[sw as usize].buckets {
            m = max_res(&m, &self.buckets[b as usize].max_free);
        }
        self.switches[sw as usize].max_free = m;
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// One host.
    pub fn host(&self, h: HostIdx) -> &HostEntry {
        &self.hosts[h as usize]
    }

    /// Every host, in index order.
    pub fn hosts(&self) -> &[HostEntry] {
        &self.hosts
    }

    /// A host's index by name.
    pub fn host_index(&self, name: &str) -> Option<HostIdx> {
        self.by_name.get(name).copied()
    }

    /// A datacenter's index by name.
    pub fn datacenter_index(&self, name: &str) -> Option<u32> {
        self.dc_by_name.get(name).copied()
    }

    /// A datacenter's name.
    pub fn datacenter_name(&self, dc: u32) -> &str {
        &self.datacenters[dc as usize]
    }

    /// A zone's index by name.
    pub fn zone_index(&self, name: &str) -> Option<u32> {
        self.zone_by_name.get(name).copied()
    }

    /// A switch's name.
    pub fn switch_name(&self, sw: SwitchIdx) -> &str {
        &self.switches[sw as usize].name
    }

    /// A rack's name.
    pub fn rack_name(&self, r: RackIdx) -> &str {
        &self.racks[r as usize].name
    }

    /// Number of switches (over all datacenters).
    pub fn switch_count(&self) -> usize {
        self.switches.len()
    }

    /// Number of racks (over all datacenters).
    pub fn rack_count(&self) -> usize {
        self.racks.len()
    }

    /// True when the snapshot's entry of host `h` still describes `host` in
    /// everything placement looks at (topology, capacity, zone, labels,
    /// state, cordon). The epoch is not compared: [`Snapshot::set_epoch`]
    /// updates it in place.
    pub fn matches_host(&self, h: HostIdx, host: &Host) -> bool {
        let e = &self.hosts[h as usize];
        e.capacity == host.capacity
            && e.state == host.state
            && e.cordoned == host.cordoned
            && e.labels == host.labels
            && self.datacenters[e.datacenter as usize] == host.datacenter
            && self.switches[e.switch as usize].name == host.switch
            && self.racks[e.rack as usize].name == host.rack
            && self.zones[e.zone as usize] == host.resource_zone
    }

    /// Sets a host's fencing epoch (copied into the records of containers
    /// placed there from now on).
    pub fn set_epoch(&mut self, h: HostIdx, epoch: u64) {
        self.hosts[h as usize].epoch = epoch;
    }

    /// Adds `res` to a host's allocation (a plan reserving it).
    pub fn reserve(&mut self, h: HostIdx, res: &Resources) {
        let e = &mut self.hosts[h as usize];
        e.allocated = e.allocated.saturating_add(res);
        e.containers += 1;
        self.after_change(h, res.cpu_millis as i128, res.memory_bytes as i128);
    }

    /// Takes `res` back from a host's allocation (a plan abandoned).
    pub fn release(&mut self, h: HostIdx, res: &Resources) {
        let e = &mut self.hosts[h as usize];
        e.allocated = e.allocated.saturating_sub(res);
        e.containers = e.containers.saturating_sub(1);
        self.after_change(h, -(res.cpu_millis as i128), -(res.memory_bytes as i128));
    }

    /// Replaces a host's allocation with what the store holds at `revision`.
    /// Revisions not newer than the one already known are ignored, so a
    /// watch replaying history cannot move the snapshot backwards.
    pub fn set_allocation(&mut self, h: HostIdx, alloc: &HostAllocation, revision: u64) {
        let e = &mut self.hosts[h as usize];
        // Equal revisions are skipped too: the snapshot may already hold
        // that revision plus this scheduler's pending reservations, which a
        // replayed event must not wipe.
        if revision != 0 && revision <= e.alloc_revision {
            return;
        }
        let dcpu = alloc.allocated.cpu_millis as i128 - e.allocated.cpu_millis as i128;
        let dmem = alloc.allocated.memory_bytes as i128 - e.allocated.memory_bytes as i128;
        e.allocated = alloc.allocated;
        e.containers = alloc.containers;
        e.alloc_revision = revision;
        self.after_change(h, dcpu, dmem);
    }

    fn after_change(&mut self, h: HostIdx, dcpu: i128, dmem: i128) {
        let b = self.host_bucket[h as usize];
        if b == u32::MAX {
            return;
        }
        let sw = self.hosts[h as usize].switch;
        let se = &mut self.switches[sw as usize];
        se.allocated_cpu = (se.allocated_cpu as i128 + dcpu).max(0) as u64;
        se.allocated_mem = (se.allocated_mem as i128 + dmem).max(0) as u64;
        self.refresh_bucket(b);
        self.refresh_switch(sw);
    }

    /// Fraction of the switch's schedulable cpu and memory in use, averaged.
    pub(crate) fn switch_utilization(&self, sw: SwitchIdx) -> f64 {
        let s = &self.switches[sw as usize];
        let c = s.allocated_cpu as f64 / s.capacity_cpu.max(1) as f64;
        let m = s.allocated_mem as f64 / s.capacity_mem.max(1) as f64;
        (c + m) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::resources::GIB;

    pub(crate) fn host(name: &str, dc: &str, sw: &str, rack: &str) -> Host {
        Host {
            name: name.into(),
            datacenter: dc.into(),
            switch: sw.into(),
            rack: rack.into(),
            capacity: Resources::new(8000, 32 * GIB),
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

    #[test]
    fn buckets_track_max_free_through_reserve_and_release() {
        let hosts = [
            host("h1", "dc1", "sw1", "r1"),
            host("h2", "dc1", "sw1", "r1"),
            host("h3", "dc1", "sw2", "r2"),
        ];
        let mut s = Snapshot::build(&hosts, [], &[]);
        assert_eq!(s.switch_count(), 2);
        let h1 = s.host_index("h1").unwrap();
        let h2 = s.host_index("h2").unwrap();
        let big = Resources::new(6000, 8 * GIB);
        s.reserve(h1, &big);
        assert_eq!(s.switches[0].max_free.cpu_millis, 8000);
        s.reserve(h2, &big);
        assert_eq!(s.switches[0].max_free.cpu_millis, 2000);
        s.release(h2, &big);
        assert_eq!(s.switches[0].max_free.cpu_millis, 8000);
        // A stale revision does not move the snapshot back.
        let a = HostAllocation {
            host: "h1".into(),
            allocated: Resources::new(1, 1),
            containers: 1,
        };
        s.set_allocation(h1, &a, 10);
        s.set_allocation(h1, &HostAllocation::default(), 5);
        assert_eq!(s.host(h1).allocated, Resources::new(1, 1));
    }
}
