//! The trace simulator on traces with a known answer.

use jdos_autoscaler::forecast::ForecastConfig;
use jdos_autoscaler::policy::{Metric, Mode, Policy};
use jdos_autoscaler::sim::{capacity_for_peak, simulate, SimConfig, SimError};
use serde_json::json;

fn policy(mode: &str, startup: u64) -> Policy {
    Policy::from_json(&json!({
        "min_replicas": 1, "max_replicas": 100, "mode": mode,
        "target_utilization": 0.6, "startup_seconds": startup
    }))
    .unwrap()
}

fn cfg(interval: f64, startup: u64, capacity: f64) -> SimConfig {
    SimConfig {
        interval_seconds: interval,
        startup_seconds: startup,
        capacity,
        start: 0,
        timeline_every_seconds: 60,
    }
}

#[test]
fn a_step_costs_exactly_one_startup_of_underprovisioning() {
    // Demand 1.2 (2 replicas at 60 % of capacity 1.0) for 300 s, then 2.4
    // (4 replicas). The HPA sees ratio 2.0 at the sync of t = 300 s and asks
    // for 4; they serve 45 s later. Under-provisioned: t = 300..345.
    let mut trace = vec![1.2; 300];
    trace.extend(vec![2.4; 300]);
    let r = simulate(
        &trace,
        &cfg(1.0, 45, 1.0),
        &policy("reactive", 45),
        ForecastConfig::default(),
    )
    .unwrap();
    let total = 599.0;
    assert!(
        (r.underprovisioned_pct - 45.0 / total * 100.0).abs() < 1e-9,
        "{r:?}"
    );
    assert_eq!(r.scale_events, 1);
    // 2 instances for 300 s, then 4 for 299 s.
    assert!(
        (r.instance_hours - (2.0 * 300.0 + 4.0 * 299.0) / 3600.0).abs() < 1e-9,
        "{r:?}"
    );
    // Slack: 1 - 1.2/2 = 40 % before the step, 1 - 2.4/4 = 40 % after the
    // new replicas serve, none while under-provisioned.
    let slack = (300.0 * 0.4 + (299.0 - 45.0) * 0.4) / total * 100.0;
    assert!((r.overprovisioned_pct - slack).abs() < 1e-6, "{r:?}");
    // Timeline every 60 s: at 240 s two run; at 300 s four run, two serve;
    // at 360 s all four serve.
    let at = |i: usize| (r.timeline[i].t, r.timeline[i].ready, r.timeline[i].running);
    assert_eq!(
        (at(4), at(5), at(6)),
        ((240, 2, 2), (300, 2, 4), (360, 4, 4))
    );
}

#[test]
fn a_flat_trace_is_served_without_scaling() {
    let trace = vec![3.0; 100];
    let plain = ForecastConfig {
        cold_start_headroom: 1.0,
        ..ForecastConfig::default()
    };
    for mode in ["reactive", "predictive"] {
        let r = simulate(
            &trace,
            &cfg(60.0, 60, 1.0),
            &policy(mode, 60),
            plain.clone(),
        )
        .unwrap();
        assert_eq!(r.underprovisioned_pct, 0.0);
        assert_eq!(r.scale_events, 0, "{mode}");
        // 5 replicas (3.0 / 0.6) for 99 minutes.
        assert!((r.instance_hours - 5.0 * 99.0 / 60.0).abs() < 1e-9);
    }
    // With the default cold-start headroom the predictive mode holds 6
    // (twice the load at 100 %) until its forecast is usable, then goes
    // back to 5: two changes, more instance-hours, never short.
    let r = simulate(
        &trace,
        &cfg(60.0, 60, 1.0),
        &policy("predictive", 60),
        ForecastConfig::default(),
    )
    .unwrap();
    assert_eq!(r.underprovisioned_pct, 0.0);
    assert_eq!(r.scale_events, 2, "{r:?}");
    assert!(r.instance_hours > 5.0 * 99.0 / 60.0 && r.instance_hours < 6.0 * 99.0 / 60.0);
}

#[test]
fn predictive_cuts_underprovisioning_on_a_periodic_trace() {
    // Two-hour cycle of 1-minute samples: base load with a 20-minute surge to
    // 3×, for 2 days. With a 2-minute start-up the HPA is short at every
    // surge; the forecaster learns the cycle and is not.
    let trace: Vec<f64> = (0..2 * 24 * 60)
        .map(|m| {
            if (60..80).contains(&(m % 120)) {
                30.0
            } else {
                10.0
            }
        })
        .collect();
    let fc = ForecastConfig {
        seasons_seconds: vec![7200],
        ..ForecastConfig::default()
    };
    let pol = policy("reactive", 120);
    let capacity = capacity_for_peak(&trace, 20, &pol.metric);
    assert!((capacity - 30.0 / 20.0 / 0.6).abs() < 1e-12);
    let c = cfg(60.0, 120, capacity);
    let reactive = simulate(&trace, &c, &pol, fc.clone()).unwrap();
    let predictive = simulate(
        &trace,
        &c,
        &Policy {
            mode: Mode::Predictive,
            ..pol
        },
        fc,
    )
    .unwrap();
    assert!(reactive.underprovisioned_pct > 1.0, "{reactive:?}");
    assert!(
        predictive.underprovisioned_pct < reactive.underprovisioned_pct / 3.0,
        "{predictive:?} vs {reactive:?}"
    );
    assert!(predictive.predictive_pct > 50.0, "{predictive:?}");
}

#[test]
fn bad_inputs_are_refused() {
    let p = policy("reactive", 60);
    let fc = ForecastConfig::default;
    assert_eq!(
        simulate(&[], &cfg(1.0, 0, 1.0), &p, fc()),
        Err(SimError::EmptyTrace)
    );
    assert_eq!(
        simulate(&[1.0, f64::NAN], &cfg(1.0, 0, 1.0), &p, fc()),
        Err(SimError::BadSample { index: 1 })
    );
    assert_eq!(
        simulate(&[1.0], &cfg(0.0, 0, 1.0), &p, fc()),
        Err(SimError::BadInterval)
    );
    assert_eq!(
        simulate(&[1.0], &cfg(1.0, 0, 0.0), &p, fc()),
        Err(SimError::BadCapacity)
    );
    assert_eq!(
        capacity_for_peak(
            &[1.0, 4.0],
            2,
            &Metric::Cpu {
                target_utilization: 0.5
            }
        ),
        4.0
    );
}
