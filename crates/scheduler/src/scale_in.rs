//! Scale-in: which containers to remove so the spread that remains is best.

use std::collections::HashMap;

use crate::snapshot::Snapshot;

/// Removal priority of a member, compared lexicographically (greater goes
/// first): unschedulable host, switch count, rack count, host count, host
/// utilization, index.
type VictimKey = (bool, u32, u32, u32, f64, u32);

/// Picks `n` victims among a group's `members` (`(index, host)` pairs).
///
/// Greedy, one victim at a time: first containers on hosts the snapshot no
/// longer knows or that are not schedulable (they are the least useful),
/// then from the switch holding most of the group, within it the rack holding
/// most, then the host holding most, then the busiest host, then the newest
/// index. Each removal updates the counts, so the survivors end as even as
/// the topology allows. Returns indexes in removal order.
pub fn choose_victims(snap: &Snapshot, members: &[(u32, String)], n: usize) -> Vec<u32> {
    let _span = tracing::debug_span!("choose_victims", members = members.len(), n).entered();
    // Topology keys by name so that hosts missing from the snapshot still count.
    let topo: Vec<(bool, String, String, f64)> = members
        .iter()
        .map(|(_, h)| match snap.host_index(h) {
            Some(i) => {
                let e = snap.host(i);
                let util = e.allocated.cpu_millis as f64 / e.capacity.cpu_millis.max(1) as f64
                    + e.allocated.memory_bytes as f64 / e.capacity.memory_bytes.max(1) as f64;
                (
                    !e.schedulable(),
                    format!("{}/{}", e.datacenter, snap.switch_name(e.switch)),
                    format!("{}/{}", e.datacenter, snap.rack_name(e.rack)),
                    util,
                )
            }
            None => (true, format!("?{h}"), format!("?{h}"), 0.0),
        })
        .collect();
    let mut sw: HashMap<&str, u32> = HashMap::new();
    let mut rk: HashMap<&str, u32> = HashMap::new();
    let mut hs: HashMap<&str, u32> = HashMap::new();
    for (i, (_, h)) in members.iter().enumerate() {
        *sw.entry(&topo[i].1).or_default() += 1;
        *rk.entry(&topo[i].2).or_default() += 1;
        *hs.entry(h).or_default() += 1;
    }
    let mut alive = vec![true; members.len()];
    let mut victims = Vec::with_capacity(n.min(members.len()));
    for _ in 0..n.min(members.len()) {
        let mut best: Option<(usize, VictimKey)> = None;
        for (i, (idx, h)) in members.iter().enumerate() {
            if !alive[i] {
                continue;
            }
            let t = &topo[i];
            let k = (
                t.0,
                sw[t.1.as_str()],
                rk[t.2.as_str()],
                hs[h.as_str()],
                t.3,
                *idx,
            );
            if best
                .as_ref()
                .is_none_or(|(_, bk)| k.partial_cmp(bk) == Some(std::cmp::Ordering::Greater))
            {
                best = Some((i, k));
            }
        }
        let Some((i, _)) = best else { break };
        alive[i] = false;
        *sw.get_mut(topo[i].1.as_str()).expect("counted") -= 1;
        *rk.get_mut(topo[i].2.as_str()).expect("counted") -= 1;
        *hs.get_mut(members[i].1.as_str()).expect("counted") -= 1;
        victims.push(members[i].0);
    }
    victims
}
