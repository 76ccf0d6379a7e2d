//! jdos-autoscaler: elastic scaling of a group (app × env × group in one
//! datacenter). Pure: no IO and no clock — time is always an argument.
//!
//! * [`policy`]: the typed, validated policy parsed from a group's
//!   `autoscaling` block (min/max, metric target, mode, scheduled floors).
//! * [`hpa`]: the Kubernetes HPA v2 algorithm, our reactive baseline.
//! * [`forecast`]: an online forecaster of the peak load over the
//!   provisioning horizon (persistence, robust trend, daily/weekly seasonal;
//!   chosen by recent error).
//! * [`engine`]: [`Autoscaler`], which a controller feeds one
//!   [`Observation`] per sync and whose [`Decision`] it applies and records.
//! * [`sim`]: replays a load trace on a simulated group and scores a policy.

mod calendar;
pub mod engine;
pub mod forecast;
pub mod hpa;
pub mod policy;
pub mod sim;

pub use engine::{Autoscaler, Decision, ModeUsed, Observation};
pub use hpa::PodMetric;
pub use policy::{Metric, Mode, Policy, PolicyError};
