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
//!
//! A live controller keeps one [`Autoscaler`] per group (per datacenter): on
//! start it may [`Autoscaler::warm_up`] with the group's recent load from
//! monitoring, then every `sync_seconds` it builds an [`Observation`] (current
//! replicas, each live pod's readiness and metric), calls
//! [`Autoscaler::decide`] with the current time, issues a scale task when
//! `desired` differs, and records `reason` in the event log.

mod calendar;
pub mod engine;
pub mod forecast;
pub mod hpa;
pub mod policy;
pub mod sim;

pub use engine::{Autoscaler, Decision, ModeUsed, Observation};
pub use hpa::PodMetric;
pub use policy::{Metric, Mode, Policy, PolicyError};
