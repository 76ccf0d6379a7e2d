//! jdos-sim: the real scheduler and the real store commit against a
//! generated estate of fake hosts, for scale tests and benchmarks
//! (`jdos sim`).
//!
//! - [`estate`] — datacenters → switches (~40 hosts) → racks (~20 hosts),
//!   mixed host models, resource zones by business level, a VLAN per network
//!   zone per datacenter trunked to a subset of switches.
//! - [`workload`] — apps with heavy-tailed replica counts, mixed flavors and
//!   business levels, one group per datacenter.
//! - [`run`] — seeds a store, places every group with K concurrent
//!   schedulers through `jdos_scheduler::commit`, and returns a
//!   [`SimReport`]; [`checker`] then verifies the final store state
//!   independently of the scheduler's bookkeeping; [`dump`] writes it out.
//!
//! The estate generator and [`SimReport`] are the seams a later issue uses
//! to drive the workflow engine and agents with the fake driver (end-to-end
//! time from apply to all-running).

pub mod checker;
pub mod dump;
pub mod e2e;
pub mod estate;
pub mod report;
pub mod run;
pub mod workload;

pub use e2e::{run_e2e, E2eConfig, E2eRun, LocalControlPlane};
pub use estate::{Estate, EstateSpec};
pub use report::SimReport;
pub use run::{run, SimConfig, SimError, SimRun};
pub use workload::{GroupSpec, WorkloadSpec};
