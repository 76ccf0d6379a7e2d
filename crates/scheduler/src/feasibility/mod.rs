//! Feasibility filters: one constraint per file, each a [`HostFilter`].
//!
//! The placement loop calls the same checks directly (datacenter, health and
//! cordon are already guaranteed by the snapshot's index, which only holds
//! schedulable hosts per datacenter); [`explain`] runs the whole chain over
//! every host to say why nothing fit.

mod caps;
mod datacenter;
mod host_state;
mod labels;
mod network;
mod resources;
mod zone;

pub(crate) use caps::{HostCap, RackCap, SwitchCap};
pub(crate) use labels::LabelsMatch;
pub(crate) use network::NetworkReachable;
pub(crate) use resources::ResourcesFit;
pub(crate) use zone::ZoneAllowed;

use std::collections::BTreeMap;

use jdos_types::Resources;

use crate::explain::{Explanation, Reason};
use crate::snapshot::{HostEntry, Snapshot};

/// A request compiled against one snapshot: names resolved to indexes.
#[derive(Debug)]
pub(crate) struct ReqCtx<'r> {
    /// Datacenter index; `None` when the snapshot has no such datacenter.
    pub(crate) dc: Option<u32>,
    /// Allowed resource zones, indexed by zone.
    pub(crate) allowed_zone: Vec<bool>,
    /// Bit `zone % 64` of every allowed zone.
    pub(crate) zone_mask: u64,
    /// Switches that reach the group's network; `None` = no network asked.
    pub(crate) reachable: Option<Vec<bool>>,
    /// Required labels.
    pub(crate) labels: &'r BTreeMap<String, String>,
    /// Per-container request.
    pub(crate) res: Resources,
    /// Hosts excluded by the request, sorted.
    pub(crate) avoid: &'r [u32],
    /// Hard caps (`u32::MAX` = none).
    pub(crate) cap_host: u32,
    pub(crate) cap_rack: u32,
    pub(crate) cap_switch: u32,
}

impl ReqCtx<'_> {
    /// True when the request excludes host `h`.
    #[inline]
    pub(crate) fn avoids(&self, h: u32) -> bool {
        !self.avoid.is_empty() && self.avoid.binary_search(&h).is_ok()
    }
}

/// The group's replicas per host, rack and switch, kept incrementally.
#[derive(Debug, Default)]
pub(crate) struct GroupCounts {
    pub(crate) host: Vec<u32>,
    pub(crate) rack: Vec<u32>,
    pub(crate) switch: Vec<u32>,
    touched_hosts: Vec<u32>,
    touched_racks: Vec<u32>,
    touched_switches: Vec<u32>,
}

impl GroupCounts {
    /// Sizes the counters for a snapshot; they must be all zero on entry.
    pub(crate) fn fit(&mut self, s: &Snapshot) {
        self.host.resize(s.len(), 0);
        self.rack.resize(s.rack_count(), 0);
        self.switch.resize(s.switch_count(), 0);
    }

    /// Counts one replica on host `h`.
    pub(crate) fn add(&mut self, s: &Snapshot, h: u32) {
        let e = s.host(h);
        for (v, t, i) in [
            (&mut self.host, &mut self.touched_hosts, h),
            (&mut self.rack, &mut self.touched_racks, e.rack),
            (&mut self.switch, &mut self.touched_switches, e.switch),
        ] {
            if v[i as usize] == 0 {
                t.push(i);
            }
            v[i as usize] += 1;
        }
    }

    /// Zeroes only what was touched, so reuse costs O(replicas), not O(hosts).
    pub(crate) fn clear(&mut self) {
        for (v, t) in [
            (&mut self.host, &mut self.touched_hosts),
            (&mut self.rack, &mut self.touched_racks),
            (&mut self.switch, &mut self.touched_switches),
        ] {
            for i in t.drain(..) {
                v[i as usize] = 0;
            }
        }
    }
}

/// What a filter sees.
pub(crate) struct FilterCtx<'a> {
    pub(crate) req: &'a ReqCtx<'a>,
    pub(crate) counts: &'a GroupCounts,
}

/// One feasibility constraint.
pub(crate) trait HostFilter {
    /// `Err(reason)` when `host` cannot take one more replica.
    fn check(&self, ctx: &FilterCtx<'_>, idx: u32, host: &HostEntry) -> Result<(), Reason>;
}

/// The full chain, in explanation order.
fn chain() -> [&'static dyn HostFilter; 11] {
    [
        &datacenter::InDatacenter,
        &host_state::Ready,
        &host_state::NotCordoned,
        &host_state::NotAvoided,
        &ZoneAllowed,
        &NetworkReachable,
        &LabelsMatch,
        &SwitchCap,
        &RackCap,
        &HostCap,
        &ResourcesFit,
    ]
}

/// The first constraint `host` fails, if any.
pub(crate) fn first_failure(ctx: &FilterCtx<'_>, idx: u32, host: &HostEntry) -> Option<Reason> {
    chain().iter().find_map(|f| f.check(ctx, idx, host).err())
}

/// Runs every filter over every host: O(hosts), only done once a replica
/// turned out to be unplaceable.
pub(crate) fn explain(s: &Snapshot, ctx: &FilterCtx<'_>) -> Explanation {
    let mut e = Explanation {
        hosts_evaluated: s.len() as u32,
        ..Default::default()
    };
    for (i, h) in s.hosts().iter().enumerate() {
        if let Some(r) = first_failure(ctx, i as u32, h) {
            e.add(r);
        }
    }
    e
}
