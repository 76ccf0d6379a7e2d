//! The per-group autoscaler: modes, fallback, scheduled floors, and the rule
//! that a forecast never scales in faster than the reactive signal.

use jdos_autoscaler::forecast::ForecastConfig;
use jdos_autoscaler::hpa::{recommend, Hpa, HpaConfig, HpaInput};
use jdos_autoscaler::{Autoscaler, ModeUsed, Observation, PodMetric, Policy};
use proptest::prelude::*;
use serde_json::json;

fn policy(mode: &str) -> Policy {
    Policy::from_json(&json!({
        "min_replicas": 1, "max_replicas": 200, "mode": mode,
        "target_utilization": 0.5, "startup_seconds": 60
    }))
    .unwrap()
}

/// `n` ready pods sharing `load` (request-equivalents).
fn pods(n: u32, load: f64) -> Vec<PodMetric> {
    vec![PodMetric::ready(load / f64::from(n)); n as usize]
}

fn cfg() -> ForecastConfig {
    ForecastConfig {
        seasons_seconds: vec![4 * 3600],
        ..ForecastConfig::default()
    }
}

/// 4-hour cycle with a burst from minute 120 to 150 (request-equivalents).
fn cycle(t_s: u64) -> f64 {
    let m = (t_s / 60) % 240;
    if (120..150).contains(&m) {
        20.0
    } else {
        5.0
    }
}

#[test]
fn predictive_falls_back_to_reactive_on_short_history() {
    let mut a = Autoscaler::with_forecast_config(policy("predictive"), cfg());
    let p = pods(4, 2.0);
    let d = a.decide(
        0,
        &Observation {
            current_replicas: 4,
            pods: &p,
        },
    );
    assert_eq!(d.mode_used, ModeUsed::ReactiveFallback);
    assert!(d.reason.contains("history too short"), "{}", d.reason);
    let mut r = Autoscaler::new(policy("reactive"));
    let d = r.decide(
        0,
        &Observation {
            current_replicas: 4,
            pods: &p,
        },
    );
    assert_eq!((d.mode_used, d.desired), (ModeUsed::Reactive, 4));
}

#[test]
fn cold_start_headroom_holds_until_the_forecast_is_usable() {
    let pol = Policy::from_json(&json!({
        "min_replicas": 1, "max_replicas": 200, "mode": "predictive",
        "target_utilization": 0.8, "startup_seconds": 60
    }))
    .unwrap();
    // A steady 10 request-equivalents: the HPA wants ceil(10 / 0.8) = 13.
    let run = |headroom: f64| {
        let mut a = Autoscaler::with_forecast_config(
            pol.clone(),
            ForecastConfig {
                cold_start_headroom: headroom,
                ..cfg()
            },
        );
        let mut current = 13u32;
        let mut seen = Vec::new();
        for t in (0..3600u64).step_by(15) {
            let p = pods(current, 10.0);
            let d = a.decide(
                t * 1000,
                &Observation {
                    current_replicas: current,
                    pods: &p,
                },
            );
            seen.push((t, d.mode_used, d.desired, d.reason));
            current = d.desired;
        }
        seen
    };
    let cold = run(2.0);
    // No history: twice the highest load seen fits at 100 %, 20 replicas.
    let (_, mode, desired, reason) = &cold[0];
    assert_eq!((*mode, *desired), (ModeUsed::ReactiveFallback, 20));
    assert!(reason.contains("cold-start headroom"), "{reason}");
    assert!(cold
        .iter()
        .take_while(|s| s.1 == ModeUsed::ReactiveFallback)
        .all(|s| s.2 == 20));
    // Once the forecast is usable the headroom goes; the flat load is then
    // carried at the target again (no faster than the HPA's scale-down).
    let (t, ..) = cold
        .iter()
        .find(|s| s.1 == ModeUsed::Predictive)
        .expect("the forecast becomes usable within the hour");
    assert!((20 * 60..=40 * 60).contains(t), "usable at {t} s");
    assert_eq!(cold.last().unwrap().2, 13);
    // Without it, the fallback is the HPA's own answer.
    let plain = run(1.0);
    assert_eq!((plain[0].1, plain[0].2), (ModeUsed::ReactiveFallback, 13));
    assert!(!plain[0].3.contains("cold-start"));
}

#[test]
fn predictive_scales_up_before_a_recurring_burst() {
    let mut a = Autoscaler::with_forecast_config(policy("predictive"), cfg());
    let mut current = 10u32;
    // Five cycles of history, sampled every 15 s; the group follows decisions.
    let burst = 5 * 4 * 3600 + 120 * 60;
    let mut t = 0;
    let mut before = None;
    while t < burst {
        let p = pods(current, cycle(t));
        let d = a.decide(
            t * 1000,
            &Observation {
                current_replicas: current,
                pods: &p,
            },
        );
        current = d.desired;
        if t == burst - 45 {
            before = Some(d);
        }
        t += 15;
    }
    let d = before.unwrap();
    // 45 s before the burst the load (5.0) needs 10 replicas at 50 %, the
    // burst (20.0) needs 40: the forecast asks for them now.
    assert_eq!(d.mode_used, ModeUsed::Predictive, "{}", d.reason);
    assert!(d.desired >= 40, "{}", d.reason);
    assert!(d.reason.contains("seasonal"), "{}", d.reason);
    // The HPA alone would still hold 10.
    assert_eq!(replicas(5.0, 0.5), 10);
}

fn replicas(load: f64, target: f64) -> u32 {
    (load / target).ceil() as u32
}

#[test]
fn scheduled_floor_applies_in_both_modes() {
    for mode in ["reactive", "predictive"] {
        let p = Policy::from_json(&json!({
            "min_replicas": 2, "max_replicas": 100, "mode": mode,
            "schedules": [{"from": "1970-01-01T01:00", "to": "1970-01-01T02:00", "min_replicas": 30}]
        }))
        .unwrap();
        let mut a = Autoscaler::new(p);
        let idle = pods(4, 0.4);
        let d = a.decide(
            0,
            &Observation {
                current_replicas: 4,
                pods: &idle,
            },
        );
        assert_eq!(d.floor, 2);
        assert!(d.desired < 30);
        let d = a.decide(
            3_600_000,
            &Observation {
                current_replicas: 4,
                pods: &idle,
            },
        );
        assert_eq!((d.floor, d.desired), (30, 30), "{mode}: {}", d.reason);
        assert!(d.reason.contains("min"), "{}", d.reason);
        let busy = pods(30, 0.4);
        let d = a.decide(
            3_615_000,
            &Observation {
                current_replicas: 30,
                pods: &busy,
            },
        );
        assert_eq!(d.desired, 30, "{mode}: held at the floor: {}", d.reason);
        assert!(d.reason.contains("scheduled floor 30"), "{}", d.reason);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the forecast says, a predictive decision never goes below
    /// both the current count and the HPA calculator's recommendation for
    /// the same observation, and stays within [floor, max].
    #[test]
    fn predictive_never_scales_in_faster_than_reactive(
        levels in prop::collection::vec(0.5f64..40.0, 8..40),
        seed in 0u64..1000,
    ) {
        let pol = policy("predictive");
        let mut a = Autoscaler::with_forecast_config(pol.clone(), ForecastConfig {
            min_scored: 5,
            max_relative_error: 10.0,
            ..cfg()
        });
        let mut current = 10u32;
        let mut t = 0u64;
        let mut x = seed;
        for level in levels {
            // Hold each level for a few minutes with a little jitter.
            for _ in 0..12 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let load = level * (1.0 + ((x >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.2);
                let p = pods(current, load);
                let d = a.decide(t, &Observation { current_replicas: current, pods: &p });
                let rec = recommend(current, &p, pol.metric.target(), pol.tolerance, true).unwrap();
                prop_assert!(d.desired >= current.min(rec.replicas),
                    "desired {} below current {current} and hpa {}: {}", d.desired, rec.replicas, d.reason);
                prop_assert!(d.desired >= pol.min_replicas && d.desired <= pol.max_replicas);
                current = d.desired;
                t += 15_000;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Scale-in waits for the HPA: a predictive decision below the current
    /// count is never below the HPA's stabilized recommendation (the highest
    /// of its 300 s scale-down window) for the same observations, even when
    /// the forecast is trusted and load swings faster than the window.
    #[test]
    fn predictive_scale_in_never_undercuts_the_hpa_window(
        levels in prop::collection::vec(0.5f64..40.0, 8..40),
        hold in 1usize..30,
        seed in 0u64..1000,
    ) {
        let pol = policy("predictive");
        let mut a = Autoscaler::with_forecast_config(pol.clone(), ForecastConfig {
            min_scored: 5,
            max_relative_error: 10.0,
            ..cfg()
        });
        // A shadow HPA fed the same observations: its stabilized value
        // depends only on them, not on what was applied.
        let mut shadow = Hpa::new(HpaConfig::default());
        let mut current = 10u32;
        let mut t = 0u64;
        let mut x = seed;
        for level in levels {
            for _ in 0..hold {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let load = level * (1.0 + ((x >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.2);
                let p = pods(current, load);
                let h = shadow.evaluate(t, &HpaInput {
                    current,
                    pods: &p,
                    target: pol.metric.target(),
                    utilization: true,
                    min: pol.min_replicas,
                    max: pol.max_replicas,
                });
                let d = a.decide(t, &Observation { current_replicas: current, pods: &p });
                if d.desired < current {
                    prop_assert!(d.desired >= h.stabilized,
                        "scaled in to {} below the hpa window's {}: {}", d.desired, h.stabilized, d.reason);
                }
                current = d.desired;
                t += 15_000;
            }
        }
    }
}

#[test]
fn warm_up_with_history_enables_the_forecast_at_once() {
    let mut a = Autoscaler::with_forecast_config(policy("predictive"), cfg());
    let start = 5 * 4 * 3600;
    a.warm_up((0..start).step_by(15).map(|t| (t * 1000, cycle(t))));
    let p = pods(10, cycle(start));
    let d = a.decide(
        start * 1000,
        &Observation {
            current_replicas: 10,
            pods: &p,
        },
    );
    assert_eq!(d.mode_used, ModeUsed::Predictive, "{}", d.reason);
}
