//! Balanced cpu:memory fit of one host.
//!
//! After a placement, a host whose cpu is 90% used but memory 20% strands
//! memory nobody can use; the score rewards hosts whose two utilizations stay
//! close. Under `spread` it also rewards empty hosts, under `binpack` full
//! ones (best fit), as Nomad's `ScoreFit` does.

use jdos_types::group::PlacementStrategy;
use jdos_types::Resources;

use crate::snapshot::HostEntry;

/// Weight of the cpu:memory balance relative to the fill term.
const BALANCE_WEIGHT: f64 = 0.5;

/// Higher is better. Both terms lie in `[0, 1]`.
#[inline]
pub(crate) fn score(host: &HostEntry, req: &Resources, strategy: PlacementStrategy) -> f64 {
    let cu = (host.allocated.cpu_millis + req.cpu_millis) as f64
        / host.capacity.cpu_millis.max(1) as f64;
    let mu = (host.allocated.memory_bytes + req.memory_bytes) as f64
        / host.capacity.memory_bytes.max(1) as f64;
    let fill = (cu + mu) / 2.0;
    let balance = 1.0 - (cu - mu).abs().min(1.0);
    let fill_term = match strategy {
        PlacementStrategy::Spread => 1.0 - fill,
        PlacementStrategy::Binpack => fill,
    };
    fill_term + BALANCE_WEIGHT * balance
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::resources::GIB;
    use jdos_types::{HostState, Labels};

    fn host(cpu_used: u64, mem_used_gib: u64) -> HostEntry {
        HostEntry {
            name: "h".into(),
            datacenter: 0,
            switch: 0,
            rack: 0,
            zone: 0,
            capacity: Resources::new(10_000, 10 * GIB),
            allocated: Resources::new(cpu_used, mem_used_gib * GIB),
            containers: 0,
            labels: Labels::new(),
            state: HostState::Ready,
            cordoned: false,
            epoch: 0,
            alloc_revision: 0,
        }
    }

    #[test]
    fn spread_prefers_empty_binpack_full_both_prefer_balance() {
        let req = Resources::new(1000, GIB);
        let empty = host(0, 0);
        let full = host(6000, 6);
        let skewed = host(6000, 0);
        use PlacementStrategy::*;
        assert!(score(&empty, &req, Spread) > score(&full, &req, Spread));
        assert!(score(&full, &req, Binpack) > score(&empty, &req, Binpack));
        assert!(score(&full, &req, Binpack) > score(&skewed, &req, Binpack));
    }
}
