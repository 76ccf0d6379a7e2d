//! The placement loop: one call places every replica of a request.

use jdos_types::group::PlacementStrategy;
use jdos_types::{GroupKey, Resources};
use serde::{Deserialize, Serialize};

use crate::explain::Explanation;
use crate::feasibility::{
    explain, FilterCtx, GroupCounts, HostCap, HostFilter, LabelsMatch, ReqCtx, ZoneAllowed,
};
use crate::rank::{fit, spread};
use crate::request::{EffectiveCaps, GroupRequest, ZonePolicy};
use crate::rng::{hash_str, mix};
use crate::snapshot::{HostIdx, Snapshot};

/// Scheduler settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Business level → resource zones.
    pub zone_policy: ZonePolicy,
    /// Seed of every random tie-break.
    pub seed: u64,
}

/// Replicas that could not be placed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    /// How many replicas of the request were left unplaced. Once one replica
    /// fails nothing has changed for the next, so they share the explanation.
    pub replicas: u32,
    /// Hosts evaluated and what filtered them.
    pub explanation: Explanation,
}

/// The outcome of one request. The chosen hosts are already reserved in the
/// snapshot the plan was made against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The group.
    pub group: GroupKey,
    /// Resources of each container.
    pub resources: Resources,
    /// Chosen host of each new replica, in order.
    pub placements: Vec<HostIdx>,
    /// The hard caps the plan respects.
    pub caps: EffectiveCaps,
    /// Replicas that did not fit, if any.
    pub unplaced: Option<Unplaced>,
}

/// The scheduler: configuration plus scratch space reused across requests,
/// so a request allocates nothing proportional to the estate.
#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    counts: GroupCounts,
    tried: Vec<u32>,
    generation: u32,
    candidates: Vec<u32>,
    order: Vec<(u128, u32)>,
}

impl Scheduler {
    /// A scheduler with `config`.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            ..Default::default()
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Places `req.replicas` new replicas of one group, reserving each
    /// chosen host in `snap` as it goes.
    pub fn place(&mut self, snap: &mut Snapshot, req: &GroupRequest) -> Plan {
        self.place_avoiding(snap, req, &[])
    }

    /// Like [`Scheduler::place`], never choosing a host of `avoid` (hosts a
    /// relocation moves containers away from). `avoid` need not be sorted.
    pub fn place_avoiding(
        &mut self,
        snap: &mut Snapshot,
        req: &GroupRequest,
        avoid: &[HostIdx],
    ) -> Plan {
        let mut avoid = avoid.to_vec();
        avoid.sort_unstable();
        avoid.dedup();
        let _span = tracing::debug_span!(
            "place",
            app = %req.group.app,
            group = %req.group,
            replicas = req.replicas
        )
        .entered();
        self.counts.fit(snap);
        if self.tried.len() != snap.switch_count() {
            self.tried = vec![0; snap.switch_count()];
            self.generation = 0;
        }
        let mut ctx = compile(snap, req, &self.config.zone_policy, &avoid);
        for name in &req.existing {
            if let Some(h) = snap.host_index(name) {
                self.counts.add(snap, h);
            }
        }
        self.candidates.clear();
        if let Some(dc) = ctx.dc {
            for &sw in &snap.dc_switches[dc as usize] {
                if switch_statically_feasible(snap, &ctx, sw) {
                    self.candidates.push(sw);
                }
            }
        }
        let caps =
            EffectiveCaps::resolve(&req.placement, req.total_replicas(), self.candidates.len());
        ctx.cap_host = caps.max_per_host.unwrap_or(u32::MAX);
        ctx.cap_rack = caps.max_per_rack.unwrap_or(u32::MAX);
        ctx.cap_switch = caps.max_per_switch.unwrap_or(u32::MAX);

        let group_seed = mix(self.config.seed ^ hash_str(&req.group.to_string()));
        let mut placements = Vec::with_capacity(req.replicas as usize);
        let mut unplaced = None;
        for i in 0..req.replicas {
            let replica_seed = mix(group_seed.wrapping_add(i as u64));
            match self.pick(snap, &ctx, req.placement.strategy, replica_seed) {
                Some(h) => {
                    snap.reserve(h, &ctx.res);
                    self.counts.add(snap, h);
                    placements.push(h);
                }
                None => {
                    let fctx = FilterCtx {
                        req: &ctx,
                        counts: &self.counts,
                    };
                    let explanation = explain(snap, &fctx);
                    tracing::debug!(unplaced = req.replicas - i, %explanation, "replicas do not fit");
                    unplaced = Some(Unplaced {
                        replicas: req.replicas - i,
                        explanation,
                    });
                    break;
                }
            }
        }
        self.counts.clear();
        Plan {
            group: req.group.clone(),
            resources: req.resources,
            placements,
            caps,
            unplaced,
        }
    }

    /// Picks a host for one replica, or `None` when no host in the snapshot
    /// can take it. Complete: every candidate switch is tried before giving
    /// up, and switches or buckets are skipped only when their maximum free
    /// capacity or a cap proves no host inside can fit.
    fn pick(
        &mut self,
        snap: &Snapshot,
        ctx: &ReqCtx<'_>,
        strategy: PlacementStrategy,
        replica_seed: u64,
    ) -> Option<HostIdx> {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tried.fill(0);
            self.generation = 1;
        }
        loop {
            let mut best: Option<(u128, u32)> = None;
            for &sw in &self.candidates {
                if self.tried[sw as usize] == self.generation
                    || self.counts.switch[sw as usize] >= ctx.cap_switch
                    || !ctx.res.fits_in(&snap.switches[sw as usize].max_free)
                {
                    continue;
                }
                let k = spread::key(
                    strategy,
                    self.counts.switch[sw as usize],
                    snap.switch_utilization(sw),
                    spread::tie(replica_seed, sw),
                );
                if best.is_none_or(|(bk, _)| k < bk) {
                    best = Some((k, sw));
                }
            }
            let (_, sw) = best?;
            if let Some(h) = self.pick_in_switch(snap, ctx, strategy, replica_seed, sw) {
                return Some(h);
            }
            self.tried[sw as usize] = self.generation;
        }
    }

    fn pick_in_switch(
        &mut self,
        snap: &Snapshot,
        ctx: &ReqCtx<'_>,
        strategy: PlacementStrategy,
        replica_seed: u64,
        sw: u32,
    ) -> Option<HostIdx> {
        self.order.clear();
        for &b in &snap.switches[sw as usize].buckets {
            let bucket = &snap.buckets[b as usize];
            let n = self.counts.rack[bucket.rack as usize];
            if n >= ctx.cap_rack || !ctx.res.fits_in(&bucket.max_free) {
                continue;
            }
            // Racks order by the group's count only; fill is judged per host.
            let k = match strategy {
                PlacementStrategy::Spread => {
                    spread::key(strategy, n, 0.0, spread::tie(replica_seed, b))
                }
                PlacementStrategy::Binpack => 0,
            };
            self.order.push((k, b));
        }
        self.order.sort_unstable();
        let fctx = FilterCtx {
            req: ctx,
            counts: &self.counts,
        };
        let mut best: Option<(u32, f64, u64, HostIdx)> = None;
        for &(_, b) in &self.order {
            for &h in &snap.buckets[b as usize].hosts {
                let e = &snap.hosts[h as usize];
                if ZoneAllowed.check(&fctx, h, e).is_err()
                    || ctx.avoids(h)
                    || (!ctx.labels.is_empty() && LabelsMatch.check(&fctx, h, e).is_err())
                    || !HostCap::ok(&fctx, h)
                    || !ctx.res.fits_in(&e.free())
                {
                    continue;
                }
                // Lower count first (soft spread over hosts when the host cap
                // allows more than one), then the better fit, then the tie.
                let count = match strategy {
                    PlacementStrategy::Spread => self.counts.host[h as usize],
                    PlacementStrategy::Binpack => 0,
                };
                let s = fit::score(e, &ctx.res, strategy);
                let t = spread::tie(replica_seed, h);
                let better = match best {
                    None => true,
                    Some((bc, bs, bt, _)) => {
                        count < bc || (count == bc && (s > bs || (s == bs && t < bt)))
                    }
                };
                if better {
                    best = Some((count, s, t, h));
                }
            }
            // Under spread the first rack (fewest replicas) with a fit wins;
            // binpack looks at the whole switch for the best fit.
            if strategy == PlacementStrategy::Spread && best.is_some() {
                break;
            }
        }
        best.map(|(_, _, _, h)| h)
    }
}

/// Resolves a request's names against the snapshot.
fn compile<'r>(
    snap: &Snapshot,
    req: &'r GroupRequest,
    policy: &ZonePolicy,
    avoid: &'r [HostIdx],
) -> ReqCtx<'r> {
    let mut allowed_zone = vec![false; snap.zones.len()];
    let mut zone_mask = 0u64;
    for z in policy.allowed(req.business_level) {
        if let Some(i) = snap.zone_index(z) {
            allowed_zone[i as usize] = true;
            zone_mask |= 1 << (i % 64);
        }
    }
    let reachable = match (&req.network, &req.network_zone) {
        (None, None) => None,
        (net, zone) => {
            let mut r = vec![false; snap.switch_count()];
            for n in &snap.networks {
                let matches = match net {
                    Some(name) => &n.name == name,
                    None => Some(&n.zone) == zone.as_ref(),
                };
                if matches {
                    for &sw in &n.switches {
                        r[sw as usize] = true;
                    }
                }
            }
            Some(r)
        }
    };
    ReqCtx {
        dc: snap.datacenter_index(&req.datacenter),
        allowed_zone,
        zone_mask,
        reachable,
        labels: &req.placement.required_labels,
        res: req.resources,
        avoid,
        cap_host: u32::MAX,
        cap_rack: u32::MAX,
        cap_switch: u32::MAX,
    }
}

/// True when the switch has a schedulable host passing the group's static
/// filters (zone, network, labels) whose capacity — empty, not free — can
/// hold one container (so a switch of hosts without the asked disk tier does
/// not count). This is what "a switch that fits" means for the default
/// switch cap; it does not change as containers come and go.
fn switch_statically_feasible(snap: &Snapshot, ctx: &ReqCtx<'_>, sw: u32) -> bool {
    let s = &snap.switches[sw as usize];
    if s.zone_mask & ctx.zone_mask == 0 {
        return false;
    }
    if let Some(r) = &ctx.reachable {
        if !r[sw as usize] {
            return false;
        }
    }
    let counts = GroupCounts::default();
    let fctx = FilterCtx {
        req: ctx,
        counts: &counts,
    };
    s.buckets.iter().any(|&b| {
        snap.buckets[b as usize].hosts.iter().any(|&h| {
            let e = &snap.hosts[h as usize];
            ZoneAllowed.check(&fctx, h, e).is_ok()
                && LabelsMatch.check(&fctx, h, e).is_ok()
                && ctx.res.fits_in(&e.capacity)
        })
    })
}
