//! Property tests against a brute-force oracle that shares no code with the
//! scheduler: random small estates and request sequences never overcommit a
//! host, never break a hard cap, never place on an infeasible host, and never
//! leave a replica unplaced while some host could take it.

mod common;

use std::collections::{BTreeSet, HashMap};

use jdos_scheduler::{GroupRequest, Scheduler, SchedulerConfig, Snapshot, ZonePolicy};
use jdos_types::group::{Placement, PlacementStrategy};
use jdos_types::resources::GIB;
use jdos_types::topology::HostAllocation;
use jdos_types::{BusinessLevel, GroupKey, Host, HostState, Network, Resources};
use proptest::prelude::*;

fn arb_hosts() -> impl Strategy<Value = Vec<Host>> {
    // (dc, switch, rack) layout then per-host attributes.
    let host_attrs = (
        prop::sample::select(vec![1000u64, 2000, 4000]),
        prop::sample::select(vec![2u64, 4, 8]),
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.3),
    );
    prop::collection::vec((0usize..2, 0usize..3, 0usize..2, host_attrs), 1..16).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(
                |(i, (dc, sw, rack, (cpu, mem, l1, core, down, cordon, gpu)))| {
                    let mut h = common::host(
                        &format!("h{i}"),
                        &format!("d{dc}"),
                        &format!("d{dc}-s{sw}"),
                        &format!("d{dc}-s{sw}-r{rack}"),
                        cpu,
                        mem,
                    );
                    if l1 {
                        h.capacity.disk.l1 = 10 * GIB;
                    }
                    if core {
                        h.resource_zone = "core".into();
                    }
                    if down {
                        h.state = HostState::Down;
                    }
                    h.cordoned = cordon;
                    if gpu {
                        h.labels.insert("gpu".into(), "yes".into());
                    }
                    h
                },
            )
            .collect()
    })
}

#[derive(Debug, Clone)]
struct GroupSpec {
    dc: usize,
    cpu: u64,
    mem: u64,
    l1: bool,
    core: bool,
    dmz: bool,
    gpu: bool,
    caps: (Option<u32>, Option<u32>, Option<u32>),
    binpack: bool,
}

fn arb_group() -> impl Strategy<Value = GroupSpec> {
    (
        0usize..2,
        prop::sample::select(vec![500u64, 1000, 2000]),
        prop::sample::select(vec![1u64, 2]),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        (
            prop::option::weighted(0.3, 1u32..4),
            prop::option::weighted(0.3, 1u32..4),
            prop::option::weighted(0.3, 1u32..4),
        ),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(dc, cpu, mem, l1, core, dmz, gpu, caps, binpack)| GroupSpec {
                dc,
                cpu,
                mem,
                l1,
                core,
                dmz,
                gpu,
                caps,
                binpack,
            },
        )
}

fn to_request(name: &str, g: &GroupSpec, replicas: u32, existing: Vec<String>) -> GroupRequest {
    let mut r = common::request(name, &format!("d{}", g.dc), replicas, g.cpu, g.mem);
    if g.l1 {
        r.resources.disk.l1 = 5 * GIB;
    }
    r.business_level = if g.core {
        BusinessLevel::Core
    } else {
        BusinessLevel::Normal
    };
    if g.dmz {
        r.network_zone = Some("dmz".into());
    }
    r.placement = Placement {
        strategy: if g.binpack {
            PlacementStrategy::Binpack
        } else {
            PlacementStrategy::Spread
        },
        max_per_host: g.caps.0,
        max_per_rack: g.caps.1,
        max_per_switch: g.caps.2,
        required_labels: if g.gpu {
            [("gpu".to_string(), "yes".to_string())].into()
        } else {
            Default::default()
        },
    };
    r.existing = existing;
    r
}

/// The oracle's own view of the world.
struct Oracle<'a> {
    hosts: &'a [Host],
    nets: &'a [Network],
    used: HashMap<String, Resources>,
}

impl Oracle<'_> {
    fn statically_ok(&self, h: &Host, r: &GroupRequest) -> bool {
        let zone = if r.business_level == BusinessLevel::Core {
            "core"
        } else {
            "general"
        };
        let reach = match &r.network_zone {
            None => true,
            Some(z) => self
                .nets
                .iter()
                .any(|n| &n.zone == z && n.switches.contains(&h.switch)),
        };
        h.datacenter == r.datacenter
            && h.state == HostState::Ready
            && !h.cordoned
            && h.resource_zone == zone
            && reach
            && r.placement
                .required_labels
                .iter()
                .all(|(k, v)| h.labels.get(k) == Some(v))
    }

    fn caps(&self, r: &GroupRequest) -> (u32, u32, u32) {
        let switches: BTreeSet<&str> = self
            .hosts
            .iter()
            .filter(|h| self.statically_ok(h, r) && r.resources.fits_in(&h.capacity))
            .map(|h| h.switch.as_str())
            .collect();
        let total = r.existing.len() as u32 + r.replicas;
        let sw = r
            .placement
            .max_per_switch
            .or((switches.len() >= 2).then(|| total.div_ceil(2)));
        (
            r.placement.max_per_host.unwrap_or(1),
            r.placement.max_per_rack.unwrap_or(u32::MAX),
            sw.unwrap_or(u32::MAX),
        )
    }

    /// Could one more replica go anywhere, given the group's current hosts?
    fn any_feasible(&self, r: &GroupRequest, members: &[String], caps: (u32, u32, u32)) -> bool {
        let by_name: HashMap<&str, &Host> =
            self.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        let count = |f: &dyn Fn(&Host) -> bool| {
            members.iter().filter(|m| f(by_name[m.as_str()])).count() as u32
        };
        self.hosts.iter().any(|h| {
            let free = h.capacity.saturating_sub(&self.used[&h.name]);
            self.statically_ok(h, r)
                && r.resources.fits_in(&free)
                && count(&|x| x.name == h.name) < caps.0
                && count(&|x| x.rack == h.rack && x.datacenter == h.datacenter) < caps.1
                && count(&|x| x.switch == h.switch && x.datacenter == h.datacenter) < caps.2
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn placements_respect_capacity_caps_and_feasibility_and_are_complete(
        hosts in arb_hosts(),
        pre in prop::collection::vec(0u64..3, 16),
        dmz_switches in prop::collection::vec(prop::bool::ANY, 6),
        groups in prop::collection::vec(arb_group(), 1..4),
        steps in prop::collection::vec((0usize..3, 1u32..6), 1..8),
        seed in any::<u64>(),
    ) {
        let sw_names: Vec<String> = (0..2).flat_map(|d| (0..3).map(move |s| format!("d{d}-s{s}"))).collect();
        let reach: Vec<&str> = sw_names.iter().zip(&dmz_switches).filter(|(_, b)| **b).map(|(s, _)| s.as_str()).collect();
        let nets = vec![common::network("dmz-net", "dmz", &reach)];
        // Some hosts start partly allocated.
        let allocs: Vec<HostAllocation> = hosts.iter().enumerate().map(|(i, h)| HostAllocation {
            host: h.name.clone(),
            allocated: Resources::new(pre[i] * 500, pre[i] * GIB),
            containers: pre[i] as u32,
        }).collect();
        let mut snap = Snapshot::build(&hosts, allocs.iter().map(|a| (a, 1)), &nets);
        let mut sched = Scheduler::new(SchedulerConfig { zone_policy: ZonePolicy::default(), seed });
        let mut oracle = Oracle {
            hosts: &hosts,
            nets: &nets,
            used: allocs.iter().map(|a| (a.host.clone(), a.allocated)).collect(),
        };
        let by_name: HashMap<&str, &Host> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        let mut members: HashMap<usize, Vec<String>> = HashMap::new();
        for (gi, replicas) in steps {
            let gi = gi % groups.len();
            let g = &groups[gi];
            let name = format!("g{gi}");
            let existing = members.get(&gi).cloned().unwrap_or_default();
            let req = to_request(&name, g, replicas, existing.clone());
            let plan = sched.place(&mut snap, &req);
            prop_assert_eq!(plan.group.clone(), GroupKey::new(&name, "production", "web"));
            let caps = oracle.caps(&req);
            prop_assert_eq!(
                (plan.caps.max_per_host.unwrap_or(u32::MAX), plan.caps.max_per_rack.unwrap_or(u32::MAX), plan.caps.max_per_switch.unwrap_or(u32::MAX)),
                caps
            );
            let mut now = existing;
            for &h in &plan.placements {
                let host = by_name[snap.host(h).name.as_str()];
                prop_assert!(oracle.statically_ok(host, &req), "placed on infeasible {}", host.name);
                let u = oracle.used.get_mut(&host.name).unwrap();
                *u = u.saturating_add(&req.resources);
                prop_assert!(u.fits_in(&host.capacity), "overcommitted {}", host.name);
                now.push(host.name.clone());
            }
            // Hard caps: no placement may take a host, rack or switch over
            // its cap. (Replicas placed earlier under a larger requested
            // total may already exceed a smaller total's cap; the scheduler
            // never adds to them.)
            let tally = |members: &[String]| {
                let mut ch: HashMap<String, u32> = HashMap::new();
                let mut cr: HashMap<String, u32> = HashMap::new();
                let mut cs: HashMap<String, u32> = HashMap::new();
                for m in members {
                    let h = by_name[m.as_str()];
                    *ch.entry(h.name.clone()).or_default() += 1;
                    *cr.entry(format!("{}/{}", h.datacenter, h.rack)).or_default() += 1;
                    *cs.entry(format!("{}/{}", h.datacenter, h.switch)).or_default() += 1;
                }
                [ch, cr, cs]
            };
            let before = tally(&req.existing);
            let after = tally(&now);
            for (lvl, cap) in [caps.0, caps.1, caps.2].into_iter().enumerate() {
                for (k, &n) in &after[lvl] {
                    let was = before[lvl].get(k).copied().unwrap_or(0);
                    prop_assert!(n <= cap.max(was), "cap {} broken at {}: {} > {} (was {})", ["host", "rack", "switch"][lvl], k, n, cap, was);
                }
            }
            // Completeness: a replica is reported unplaceable only if the
            // brute-force oracle finds no host for it either.
            match &plan.unplaced {
                Some(u) => {
                    prop_assert_eq!(u.replicas as usize, replicas as usize - plan.placements.len());
                    prop_assert!(!oracle.any_feasible(&req, &now, caps), "missed a feasible host");
                    let filtered: u32 = u.explanation.filtered.values().sum();
                    prop_assert_eq!(filtered, u.explanation.hosts_evaluated);
                    prop_assert_eq!(u.explanation.hosts_evaluated as usize, hosts.len());
                }
                None => prop_assert_eq!(plan.placements.len(), replicas as usize),
            }
            // The snapshot agrees with the oracle's accounting.
            for h in snap.hosts() {
                prop_assert_eq!(h.allocated, oracle.used[&h.name]);
            }
            members.insert(gi, now);
        }
    }
}
