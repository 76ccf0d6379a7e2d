//! Rankers: how feasible candidates are ordered. One concern per file.
//!
//! - [`fit`]: balanced cpu:memory fit of one host, under `spread` or `binpack`.
//! - [`spread`]: the order switches and racks are tried in — even counts of
//!   the group first (soft spread), then the emptier (spread) or fuller
//!   (binpack) place, then a seeded random tie-break.

pub(crate) mod fit;
pub(crate) mod spread;
