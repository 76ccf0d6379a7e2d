//! jdos-scheduler: topology-aware placement as a pure function over an
//! injected snapshot, after Nomad's `scheduler/`.
//!
//! - [`Snapshot`] — hosts (capacity, allocation, labels, health, cordon,
//!   zone, switch, rack, datacenter) and networks, indexed for placement.
//! - [`Scheduler::place`] — places N replicas of one [`GroupRequest`] in one
//!   call and returns a [`Plan`]: the chosen hosts and, for replicas that do
//!   not fit, an [`Explanation`] counting what each constraint filtered.
//!   No IO, no clock; ties are broken by the seed in [`SchedulerConfig`].
//! - [`choose_victims`] — scale-in that keeps the remaining spread best.
//! - [`relocate`] — moving existing containers to other hosts (failover,
//!   drain, migrate) and releasing them (scale-in), with the same
//!   compare-and-swap commit.
//! - [`commit`] — the [`commit::Planner`] seam and [`commit::place_and_commit`],
//!   the optimistic-concurrency loop; [`store_planner::StorePlanner`] commits
//!   through any `jdos_store::Store` as one compare-and-swap transaction.
//!
//! Placement rules (DESIGN.md §3): feasibility is datacenter, host ready and
//! not cordoned, resource zone by business level ([`ZonePolicy`]), network
//! reachability from the host's switch, required labels, hard caps per
//! switch/rack/host, and every resource dimension and storage tier. Defaults:
//! `max_per_host = 1`, `max_per_switch = ceil(replicas / 2)` when two or more
//! switches fit. Soft spread: even counts across switches, then racks, then
//! hosts; then a balanced cpu:memory fit under `spread` (default) or
//! `binpack`.

pub mod commit;
pub mod explain;
mod feasibility;
mod place;
mod rank;
pub mod relocate;
pub mod request;
pub mod rng;
mod scale_in;
pub mod snapshot;
pub mod store_planner;

pub use explain::{Explanation, Reason};
pub use place::{Plan, Scheduler, SchedulerConfig, Unplaced};
pub use request::{EffectiveCaps, GroupRequest, ZonePolicy};
pub use scale_in::choose_victims;
pub use snapshot::{HostEntry, HostIdx, Snapshot};
