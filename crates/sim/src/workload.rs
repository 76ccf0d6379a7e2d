//! A generated workload: apps with heavy-tailed replica counts, mixed sizes
//! and business levels, split into one group per datacenter.

use std::collections::{BTreeMap, HashMap};

use jdos_scheduler::rng::SeededRng;
use jdos_scheduler::{GroupRequest, ZonePolicy};
use jdos_types::group::{Placement, PlacementStrategy};
use jdos_types::resources::GIB;
use jdos_types::{BusinessLevel, GroupKey, Labels, Resources};
use serde::{Deserialize, Serialize};

use crate::estate::{Estate, DATACENTERS};

/// One group to place, with what its container records carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// The placement request (`existing` empty: the group is new).
    pub request: GroupRequest,
    /// Image of its containers.
    pub image: String,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Total containers over all groups.
    pub containers: usize,
    /// Seed.
    pub seed: u64,
    /// Target cpu fill of each `(datacenter, zone)`, in percent: groups that
    /// would push a zone past it go elsewhere, so the estate has room.
    pub max_fill_percent: u32,
    /// Number of apps to split the containers into (same heavy tail, scaled
    /// to this mean); `None`: as many as the tail gives (~14 containers an
    /// app). Containers that do not fit where an app was drawn go to extra
    /// apps, so the count is met within a few percent (see [`generate`]).
    #[serde(default)]
    pub apps: Option<usize>,
}

/// Largest app, in replicas.
const MAX_APP: usize = 6000;
/// Tail index of the replica-count Pareto.
const ALPHA: f64 = 1.1;

fn pareto(x_min: f64, u: f64) -> usize {
    ((x_min / u.max(1e-9).powf(1.0 / ALPHA)) as usize).clamp(1, MAX_APP)
}

/// Sizes of `apps` apps totalling `containers`, and the scale: the
/// generator's Pareto with its scale chosen (by bisection) so that the
/// draws sum to the total, then the rounding residue spread over the
/// largest apps.
fn planned_sizes(rng: &mut SeededRng, apps: usize, containers: usize) -> (Vec<usize>, f64) {
    if apps == 0 {
        return (Vec::new(), 2.0);
    }
    let apps = apps.min(containers.max(1));
    let us: Vec<f64> = (0..apps).map(|_| rng.unit()).collect();
    let sum = |x_min: f64| us.iter().map(|&u| pareto(x_min, u)).sum::<usize>();
    let (mut lo, mut hi) = (0.0f64, MAX_APP as f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if sum(mid) < containers {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut sizes: Vec<usize> = us.iter().map(|&u| pareto(hi, u)).collect();
    let mut order: Vec<usize> = (0..apps).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut total: usize = sizes.iter().sum();
    // Over: take from the largest (never below one); under: add to the
    // largest that have room.
    for &i in order.iter().cycle().take(apps * 4) {
        if total == containers {
            break;
        }
        if total > containers && sizes[i] > 1 {
            sizes[i] -= 1;
            total -= 1;
        } else if total < containers && sizes[i] < MAX_APP {
            sizes[i] += 1;
            total += 1;
        }
    }
    (sizes, hi)
}

/// Container flavors: (share, millicores, memory GiB).
const FLAVORS: [(f64, u64, u64); 8] = [
    (0.30, 500, 1),
    (0.30, 1000, 2),
    (0.15, 1000, 4),
    (0.12, 2000, 4),
    (0.08, 2000, 8),
    (0.03, 4000, 8),
    (0.015, 4000, 16),
    (0.005, 8000, 32),
];

/// Business levels and their share of apps.
const LEVELS: [(f64, BusinessLevel); 4] = [
    (0.15, BusinessLevel::Core),
    (0.20, BusinessLevel::Important),
    (0.55, BusinessLevel::Normal),
    (0.10, BusinessLevel::Test),
];

fn choose<T: Copy>(rng: &mut SeededRng, table: &[(f64, T)]) -> T {
    let x = rng.unit();
    let mut acc = 0.0;
    for (p, v) in table {
        acc += p;
        if x < acc {
            return *v;
        }
    }
    table[table.len() - 1].1
}

/// Schedulable hosts per rack per switch of `dc` that pass a group's
/// static constraints and could hold one container when empty.
fn feasible_per_switch(
    estate: &Estate,
    policy: &ZonePolicy,
    dc: &str,
    level: BusinessLevel,
    network_zone: Option<&str>,
    labels: &Labels,
    res: &Resources,
) -> Vec<Vec<usize>> {
    let zones = policy.allowed(level);
    let mut per: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for h in &estate.hosts {
        let reach = network_zone.is_none_or(|z| {
            estate
                .networks
                .iter()
                .any(|n| n.zone == z && n.switches.contains(&h.switch))
        });
        if h.datacenter == dc
            && h.schedulable()
            && zones.contains(&h.resource_zone)
            && reach
            && labels.iter().all(|(k, v)| h.labels.get(k) == Some(v))
            && res.fits_in(&h.capacity)
        {
            *per.entry(h.switch.as_str())
                .or_default()
                .entry(h.rack.as_str())
                .or_default() += 1;
        }
    }
    per.into_values()
        .map(|racks| racks.into_values().collect())
        .collect()
}

/// Generates groups totalling exactly `spec.containers` replicas (fewer
/// only when the estate is full). With [`WorkloadSpec::apps`], apps that
/// do not fit where they were drawn (a core app on the few core hosts, a
/// DMZ app on its few switches) leave containers for extra apps; the
/// planned count is corrected (a few generations, each well under a
/// second) until the result is within 2 % of the asked count, or the
/// closest of five is taken.
pub fn generate(spec: &WorkloadSpec, estate: &Estate, policy: &ZonePolicy) -> Vec<GroupSpec> {
    let _span = tracing::info_span!("generate_workload", containers = spec.containers).entered();
    let Some(want) = spec.apps.filter(|n| *n > 0) else {
        return generate_once(spec, estate, policy, None);
    };
    let mut plan = want;
    let mut best: Option<(usize, Vec<GroupSpec>)> = None;
    for _ in 0..5 {
        let groups = generate_once(spec, estate, policy, Some(plan));
        let got = app_count(&groups).max(1);
        let off = got.abs_diff(want);
        if best.as_ref().is_none_or(|(o, _)| off < *o) {
            best = Some((off, groups));
        }
        if off * 50 <= want {
            break;
        }
        plan = ((plan as f64) * (want as f64) / (got as f64))
            .round()
            .max(1.0) as usize;
    }
    best.map(|(_, g)| g).unwrap_or_default()
}

/// Distinct apps among `groups`.
pub fn app_count(groups: &[GroupSpec]) -> usize {
    groups
        .iter()
        .map(|g| g.request.group.app.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn generate_once(
    spec: &WorkloadSpec,
    estate: &Estate,
    policy: &ZonePolicy,
    apps: Option<usize>,
) -> Vec<GroupSpec> {
    let mut rng = SeededRng::new(spec.seed ^ 0x0A55_1E55);
    let cap = estate.cpu_by_zone();
    let mut fit_cache = HashMap::new();
    let mut dmz_budget: HashMap<(String, String), i128> = HashMap::new();
    let mut budget: BTreeMap<(String, String), i128> = cap
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (*v as i128) * spec.max_fill_percent as i128 / 100,
            )
        })
        .collect();
    let mut groups = Vec::new();
    let mut left = spec.containers;
    let mut app_no = 0usize;
    let mut misses = 0usize;
    let (planned, x_min) = apps.map_or((Vec::new(), 2.0), |n| {
        planned_sizes(&mut rng, n, spec.containers)
    });
    let mut planned = planned.into_iter();
    while left > 0 {
        let level = choose(&mut rng, &LEVELS);
        let (cpu, mem) = {
            let x = rng.unit();
            let mut acc = 0.0;
            let mut f = FLAVORS[0];
            for fl in FLAVORS {
                acc += fl.0;
                if x < acc {
                    f = fl;
                    break;
                }
            }
            (f.1, f.2)
        };
        // Pareto(alpha = 1.1, x_min = 2 or scaled to the planned apps):
        // most apps have a few replicas, a few have thousands.
        let u = rng.unit();
        let mut total = planned.next().unwrap_or_else(|| pareto(x_min, u));
        let mut res = Resources::new(cpu, mem * GIB);
        res.disk.l1 = (10 + rng.below(30)) * GIB;
        if rng.unit() < 0.2 {
            res.disk.l2 = 50 * GIB;
        }
        let network_zone = match rng.unit() {
            x if x < 0.05 && level != BusinessLevel::Core => Some("dmz".to_string()),
            x if x < 0.95 => Some("prod".to_string()),
            _ => None,
        };
        // The DMZ VLAN reaches one switch in ten: DMZ apps are small, as
        // front-end proxies are.
        let dmz = network_zone.as_deref() == Some("dmz");
        if dmz {
            total = total.min(60);
        }
        let total = total.min(left);
        let mut placement = Placement::default();
        let p = rng.unit();
        if p < 0.05 {
            placement.strategy = PlacementStrategy::Binpack;
        } else if p < 0.08 {
            placement.max_per_rack = Some(((total as u32) / 8).max(2));
        } else if p < 0.10 {
            placement
                .required_labels
                .insert("kernel".into(), "5.10".into());
        }
        // Big apps spread over every datacenter, small ones live in one.
        let dcs: Vec<usize> = if total >= 12 {
            (0..DATACENTERS.len()).collect()
        } else {
            vec![rng.below(DATACENTERS.len() as u64) as usize]
        };
        let app = format!("app-{app_no:05}");
        let mut placed_any = false;
        let mut remaining = total;
        for (i, &d) in dcs.iter().enumerate() {
            let dc = DATACENTERS[d].0;
            let n = if i == dcs.len() - 1 {
                remaining
            } else {
                ((total as f64) * DATACENTERS[d].1).round() as usize
            }
            .min(remaining);
            if n == 0 {
                continue;
            }
            // Charge the allowed zone with the most budget left.
            let zones = policy.allowed(level);
            let Some(zone) = zones.iter().max_by_key(|z| {
                budget
                    .get(&(dc.to_string(), z.to_string()))
                    .copied()
                    .unwrap_or(i128::MIN)
            }) else {
                continue;
            };
            let key = (dc.to_string(), zone.clone());
            let room = budget.get(&key).copied().unwrap_or(0);
            // Hosts that could take this group at all, per switch: the
            // group must fit under its hard caps with room to spare, else
            // it stacks more per host, else it shrinks.
            let fit_key = (
                dc.to_string(),
                level,
                network_zone.clone(),
                placement.required_labels.clone(),
                res,
            );
            let per_switch = fit_cache
                .entry(fit_key)
                .or_insert_with(|| {
                    feasible_per_switch(
                        estate,
                        policy,
                        dc,
                        level,
                        network_zone.as_deref(),
                        &placement.required_labels,
                        &res,
                    )
                })
                .clone();
            let pl_rack_cap = placement.max_per_rack;
            let mut n = n;
            let mut per_host = 1u32;
            let rack_cap = pl_rack_cap.map_or(usize::MAX, |c| c as usize);
            let placeable = |n: usize, per_host: u32| -> usize {
                let cap = if per_switch.len() >= 2 {
                    n.div_ceil(2)
                } else {
                    usize::MAX
                };
                per_switch
                    .iter()
                    .map(|racks| {
                        racks
                            .iter()
                            .map(|&h| (h * per_host as usize).min(rack_cap))
                            .sum::<usize>()
                            .min(cap)
                    })
                    .sum()
            };
            while placeable(n, per_host) * 2 < n * 3 && per_host < 8 {
                per_host += 1;
            }
            while n > 0 && placeable(n, per_host) * 2 < n * 3 {
                n -= 1;
            }
            if n == 0 {
                continue;
            }
            let need = (n as i128) * cpu as i128;
            if need > room {
                continue;
            }
            // The DMZ VLAN's few switches get a budget of their own.
            let dmz_key = (dc.to_string(), "dmz".to_string());
            if dmz {
                let dmz_room = *dmz_budget.entry(dmz_key.clone()).or_insert_with(|| {
                    let cpu: u64 = estate
                        .hosts
                        .iter()
                        .filter(|h| {
                            h.datacenter == dc
                                && h.schedulable()
                                && estate
                                    .networks
                                    .iter()
                                    .any(|n| n.zone == "dmz" && n.switches.contains(&h.switch))
                        })
                        .map(|h| h.capacity.cpu_millis)
                        .sum();
                    cpu as i128 * spec.max_fill_percent as i128 / 100
                });
                if need > dmz_room {
                    continue;
                }
                *dmz_budget.get_mut(&dmz_key).expect("inserted") -= need;
            }
            *budget.get_mut(&key).expect("checked") -= need;
            let mut pl = placement.clone();
            if per_host > 1 {
                pl.max_per_host = Some(per_host);
            }
            remaining -= n;
            placed_any = true;
            groups.push(GroupSpec {
                request: GroupRequest {
                    group: GroupKey::new(&app, "production", &format!("g-{dc}")),
                    datacenter: dc.to_string(),
                    replicas: n as u32,
                    resources: res,
                    business_level: level,
                    network_zone: network_zone.clone(),
                    network: None,
                    placement: pl,
                    existing: Vec::new(),
                },
                image: format!("registry.local/{app}:1"),
            });
        }
        let used = total - remaining;
        left -= used;
        if placed_any {
            app_no += 1;
            misses = 0;
        } else {
            misses += 1;
            // The estate is full for what is left: stop rather than spin.
            if misses > 10_000 {
                break;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::EstateSpec;

    /// 25,000 containers on 1,000 hosts.
    fn workload(apps: Option<usize>) -> Vec<GroupSpec> {
        let e = Estate::generate(&EstateSpec {
            hosts: 1000,
            seed: 3,
        });
        let spec = WorkloadSpec {
            containers: 25_000,
            seed: 3,
            max_fill_percent: 70,
            apps,
        };
        generate(&spec, &e, &ZonePolicy::default())
    }

    #[test]
    fn workload_hits_the_total_and_is_heavy_tailed() {
        let g = workload(None);
        let total: u32 = g.iter().map(|g| g.request.replicas).sum();
        assert_eq!(total, 25_000);
        let max = g.iter().map(|g| g.request.replicas).max().unwrap();
        let small = g.iter().filter(|g| g.request.replicas <= 3).count();
        assert!(max >= 50, "largest group {max}");
        assert!(small * 3 >= g.len(), "small groups {small} of {}", g.len());
    }

    #[test]
    fn a_set_number_of_apps_keeps_the_total_and_the_tail() {
        let g = workload(Some(833));
        let total: u32 = g.iter().map(|g| g.request.replicas).sum();
        assert_eq!(total, 25_000);
        let mut per_app: HashMap<&str, u32> = HashMap::new();
        for x in &g {
            *per_app.entry(x.request.group.app.as_str()).or_default() += x.request.replicas;
        }
        assert!(per_app.len().abs_diff(833) <= 25, "{} apps", per_app.len());
        let max = per_app.values().max().copied().unwrap_or(0);
        let small = per_app.values().filter(|n| **n <= 6).count();
        assert!(max >= 500, "largest app {max}");
        assert!(
            small * 4 >= per_app.len(),
            "small apps {small} of {}",
            per_app.len()
        );
    }

    #[test]
    fn planned_sizes_sum_to_the_total() {
        let mut rng = SeededRng::new(9);
        for (apps, total) in [(5_000, 150_000), (1, 10), (10, 10), (3, 20_000), (7, 5)] {
            let (s, _) = planned_sizes(&mut rng, apps, total);
            assert_eq!(s.len(), apps.min(total), "{apps} {total}");
            assert!(s.iter().all(|&n| (1..=MAX_APP).contains(&n)));
            assert_eq!(s.iter().sum::<usize>(), total.min(apps * MAX_APP));
        }
    }
}
