//! Soft spread: the order in which switches and racks are tried.
//!
//! Keys are compared as integers (lower = tried first) so that choosing the
//! best of ~100 switches costs a handful of nanoseconds each.

use jdos_types::group::PlacementStrategy;

use crate::rng::mix;

/// Utilization is compared in 1/64 steps, so that near-equal switches tie and
/// the seeded tie-break spreads groups instead of herding them.
const UTIL_STEPS: f64 = 64.0;

/// Order key of a switch (or rack): under `spread`, fewest replicas of the
/// group first, then the emptier; under `binpack`, the fuller first.
#[inline]
pub(crate) fn key(
    strategy: PlacementStrategy,
    group_count: u32,
    utilization: f64,
    tie: u64,
) -> u128 {
    let q = (utilization.clamp(0.0, 1.0) * UTIL_STEPS) as u32;
    let (a, b) = match strategy {
        PlacementStrategy::Spread => (group_count, q),
        PlacementStrategy::Binpack => (0, UTIL_STEPS as u32 - q),
    };
    ((a as u128) << 96) | ((b as u128) << 64) | tie as u128
}

/// The seeded tie-break of item `id` for one replica.
#[inline]
pub(crate) fn tie(replica_seed: u64, id: u32) -> u64 {
    mix(replica_seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_dominates_under_spread_and_fullness_under_binpack() {
        use PlacementStrategy::*;
        assert!(key(Spread, 0, 0.9, u64::MAX) < key(Spread, 1, 0.0, 0));
        assert!(key(Spread, 1, 0.1, u64::MAX) < key(Spread, 1, 0.5, 0));
        assert!(key(Binpack, 5, 0.9, u64::MAX) < key(Binpack, 0, 0.1, 0));
    }
}
