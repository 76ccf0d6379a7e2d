//! The HPA re-implementation against the behaviour documented at
//! kubernetes.io ("Horizontal Pod Autoscaling": algorithm details, scaling
//! policies, stabilization window) and the controller's rules for missing
//! metrics and not-ready pods.

use jdos_autoscaler::hpa::{
    recommend, Hpa, HpaConfig, HpaInput, PodMetric, PolicyKind, ScalingPolicy, ScalingRules,
    SelectPolicy,
};
use proptest::prelude::*;

fn ready(n: usize, v: f64) -> Vec<PodMetric> {
    vec![PodMetric::ready(v); n]
}

fn input(pods: &[PodMetric], target: f64, min: u32, max: u32) -> HpaInput<'_> {
    HpaInput {
        current: pods.len() as u32,
        pods,
        target,
        utilization: true,
        min,
        max,
    }
}

#[test]
fn documented_ratio_examples_double_and_halve() {
    // "if the current metric value is 200m, and the desired value is 100m,
    // the number of replicas will be doubled"
    let r = recommend(3, &ready(3, 0.200), 0.100, 0.1, true).unwrap();
    assert_eq!(r.replicas, 6);
    // "If the current value is instead 50m, you'll halve the number of replicas"
    let r = recommend(4, &ready(4, 0.050), 0.100, 0.1, true).unwrap();
    assert_eq!(r.replicas, 2);
    // The v1.33 tolerance blog: 50 replicas at 90 % against 75 % -> 60.
    let r = recommend(50, &ready(50, 0.90), 0.75, 0.1, true).unwrap();
    assert_eq!(r.replicas, 60);
    // ceil: 4 pods at 70 % against 60 % -> ceil(4.67) = 5.
    let r = recommend(4, &ready(4, 0.70), 0.60, 0.1, true).unwrap();
    assert_eq!(r.replicas, 5);
}

#[test]
fn tolerance_skips_small_changes() {
    // Ratio 1.05 and 0.95 are within 0.1 of 1.0: keep the current count.
    assert_eq!(
        recommend(10, &ready(10, 0.63), 0.6, 0.1, true)
            .unwrap()
            .replicas,
        10
    );
    assert_eq!(
        recommend(10, &ready(10, 0.57), 0.6, 0.1, true)
            .unwrap()
            .replicas,
        10
    );
    // Ratio 1.15 is outside: ceil(11.5) = 12.
    assert_eq!(
        recommend(10, &ready(10, 0.69), 0.6, 0.1, true)
            .unwrap()
            .replicas,
        12
    );
    // With tolerance 0 the same 1.05 scales.
    assert_eq!(
        recommend(10, &ready(10, 0.63), 0.6, 0.0, true)
            .unwrap()
            .replicas,
        11
    );
}

#[test]
fn missing_metrics_assume_full_use_on_scale_down_and_zero_on_scale_up() {
    // Scale-down: 3 pods at 30 % against 50 % (ratio 0.6) and one pod without
    // metrics. It counts as 100 %: (0.9 + 1.0) / 4 / 0.5 = 0.95 -> within
    // tolerance, keep 4 (without it the HPA would go to ceil(0.6 × 3) = 2).
    let mut pods = ready(3, 0.3);
    pods.push(PodMetric {
        ready: true,
        value: None,
    });
    let r = recommend(4, &pods, 0.5, 0.1, true).unwrap();
    assert_eq!((r.replicas, r.missing), (4, 1));
    // Custom metrics fill with the target instead: (0.9 + 0.5) / 4 / 0.5 =
    // 0.7 -> ceil(0.7 × 4) = 3.
    let r = recommend(4, &pods, 0.5, 0.1, false).unwrap();
    assert_eq!(r.replicas, 3);

    // Scale-up: one pod at 60 % against 50 % (ratio 1.2) and three without
    // metrics counted at 0 %: 0.6 / 4 / 0.5 = 0.3 would reverse the
    // direction, so nothing happens.
    let mut pods = ready(1, 0.6);
    pods.extend(vec![
        PodMetric {
            ready: true,
            value: None
        };
        3
    ]);
    assert_eq!(recommend(4, &pods, 0.5, 0.1, true).unwrap().replicas, 4);
}

#[test]
fn unready_pods_count_as_zero_on_scale_up_only() {
    // 2 ready pods at 100 % against 50 % (ratio 2) and 2 starting pods: with
    // the starting pods at 0 % the ratio is 1.0 -> keep 4.
    let mut pods = ready(2, 1.0);
    pods.extend(vec![
        PodMetric {
            ready: false,
            value: None
        };
        2
    ]);
    let r = recommend(4, &pods, 0.5, 0.1, true).unwrap();
    assert_eq!((r.replicas, r.unready), (4, 2));
    // At 150 % the new ratio is 1.5: ceil(1.5 × 4) = 6.
    let mut pods = ready(2, 1.5);
    pods.extend(vec![
        PodMetric {
            ready: false,
            value: None
        };
        2
    ]);
    assert_eq!(recommend(4, &pods, 0.5, 0.1, true).unwrap().replicas, 6);
    // On a scale-down unready pods are simply left out: 2 ready at 10 % ->
    // ceil(0.2 × 2) = 1.
    let mut pods = ready(2, 0.1);
    pods.push(PodMetric {
        ready: false,
        value: Some(0.9),
    });
    assert_eq!(recommend(3, &pods, 0.5, 0.1, true).unwrap().replicas, 1);
}

#[test]
fn no_metrics_means_no_scaling() {
    let pods = vec![
        PodMetric {
            ready: true,
            value: None
        };
        3
    ];
    assert!(recommend(3, &pods, 0.5, 0.1, true).is_err());
    let mut hpa = Hpa::new(HpaConfig::default());
    let out = hpa.decide(0, &input(&pods, 0.5, 1, 10));
    assert_eq!(out.desired, 3);
    assert!(out.reason.contains("no metrics"), "{}", out.reason);
}

#[test]
fn scale_up_is_limited_to_max_of_100_percent_and_4_pods_per_15s() {
    let mut hpa = Hpa::new(HpaConfig::default());
    // 1 pod at 10× the target: 4 pods beats 100 % -> 5.
    let pods = ready(1, 6.0);
    assert_eq!(hpa.decide(0, &input(&pods, 0.6, 1, 100)).desired, 5);
    // 10 pods at 10× the target: 100 % beats 4 pods -> 20.
    let mut hpa = Hpa::new(HpaConfig::default());
    let pods = ready(10, 6.0);
    let out = hpa.decide(0, &input(&pods, 0.6, 1, 1000));
    assert_eq!(out.desired, 20);
    assert!(out.reason.contains("rate policies"), "{}", out.reason);
    // Five seconds later, still inside the 15 s period: 20 pods (10 ready at
    // 10×, 10 starting) may not grow past 20.
    let mut pods = ready(10, 6.0);
    pods.extend(vec![
        PodMetric {
            ready: false,
            value: None
        };
        10
    ]);
    assert_eq!(hpa.decide(5_000, &input(&pods, 0.6, 1, 1000)).desired, 20);
    // A new period: 100 % of 20 -> 40.
    assert_eq!(hpa.decide(15_000, &input(&pods, 0.6, 1, 1000)).desired, 40);
}

#[test]
fn scale_down_waits_for_the_300s_stabilization_window() {
    let mut hpa = Hpa::new(HpaConfig::default());
    let busy = ready(10, 0.6);
    assert_eq!(hpa.decide(0, &input(&busy, 0.6, 1, 100)).desired, 10);
    // Load halves at t = 15 s: the recommendation is 5 but the highest
    // recommendation of the last 300 s is 10.
    let idle = ready(10, 0.3);
    let mut t = 15_000;
    while t < 300_000 {
        let out = hpa.decide(t, &input(&idle, 0.6, 1, 100));
        assert_eq!(out.desired, 10, "at {t} ms: {}", out.reason);
        t += 15_000;
    }
    // Once the last "10" is older than 300 s the scale-down happens at once
    // (100 % per 15 s allows any step).
    let out = hpa.decide(300_000, &input(&idle, 0.6, 1, 100));
    assert_eq!(out.desired, 5, "{}", out.reason);
}

#[test]
fn stabilization_uses_the_highest_recommendation_in_the_window() {
    let mut hpa = Hpa::new(HpaConfig::default());
    let at = |n: usize, v: f64| ready(n, v);
    // t=0: 10 pods at target (seeds the window with 10).
    hpa.decide(0, &input(&at(10, 0.6), 0.6, 1, 100));
    // t=200 s: recommendation 8; t=400 s: recommendation 4. At 400 s the
    // window (100..400 s] holds 8 -> desired 8.
    assert_eq!(
        hpa.decide(200_000, &input(&at(10, 0.48), 0.6, 1, 100))
            .desired,
        10
    );
    let out = hpa.decide(400_000, &input(&at(10, 0.24), 0.6, 1, 100));
    assert_eq!(out.desired, 8, "{}", out.reason);
}

#[test]
fn documented_scale_down_policy_example_removes_8_then_8() {
    // Docs: policies Pods 4 / 60 s and Percent 10 / 60 s (select Max): from 80
    // replicas the first step removes 8; at 72, 10 % is 7.2, "rounded up" to 8.
    let cfg = HpaConfig {
        scale_down: ScalingRules {
            stabilization_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period_seconds: 60,
                },
                ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 10,
                    period_seconds: 60,
                },
            ],
        },
        ..HpaConfig::default()
    };
    let mut hpa = Hpa::new(cfg);
    let out = hpa.decide(0, &input(&ready(80, 0.075), 0.6, 1, 100));
    assert_eq!(out.desired, 72, "{}", out.reason);
    // Within the same minute nothing more may go.
    assert_eq!(
        hpa.decide(30_000, &input(&ready(72, 0.075), 0.6, 1, 100))
            .desired,
        72
    );
    assert_eq!(
        hpa.decide(60_000, &input(&ready(72, 0.075), 0.6, 1, 100))
            .desired,
        64
    );
    // Below 40 replicas the Pods policy (4) allows more than 10 %.
    let mut hpa = Hpa::new(HpaConfig {
        scale_down: hpa.config().scale_down.clone(),
        ..HpaConfig::default()
    });
    assert_eq!(
        hpa.decide(0, &input(&ready(30, 0.06), 0.6, 1, 100)).desired,
        26
    );
}

#[test]
fn min_and_max_clamp() {
    let mut hpa = Hpa::new(HpaConfig::default());
    // More replicas than max: straight to max.
    assert_eq!(
        hpa.decide(0, &input(&ready(12, 0.6), 0.6, 1, 10)).desired,
        10
    );
    // Fewer than min: straight to min.
    assert_eq!(hpa.decide(0, &input(&ready(1, 0.6), 0.6, 3, 10)).desired, 3);
    // A recommendation above max is capped.
    let mut hpa = Hpa::new(HpaConfig::default());
    let out = hpa.decide(0, &input(&ready(8, 1.2), 0.6, 1, 10));
    assert_eq!(out.desired, 10);
    assert!(out.reason.contains("max_replicas"), "{}", out.reason);
    // A recommendation below min is raised.
    let mut hpa = Hpa::new(HpaConfig {
        scale_down: ScalingRules {
            stabilization_seconds: 0,
            ..HpaConfig::default().scale_down
        },
        ..HpaConfig::default()
    });
    assert_eq!(
        hpa.decide(0, &input(&ready(8, 0.06), 0.6, 4, 10)).desired,
        4
    );
    // Zero replicas: autoscaling is off.
    assert_eq!(hpa.decide(0, &input(&[], 0.6, 1, 10)).desired, 0);
}

proptest! {
    #[test]
    fn desired_always_within_min_max(
        steps in prop::collection::vec((1u32..60, 0.0f64..5.0, 0u32..5, 0u32..5), 1..40),
        min in 1u32..5,
        span in 0u32..40,
    ) {
        let max = min + span;
        let mut hpa = Hpa::new(HpaConfig::default());
        let mut current = min;
        for (i, (n_ready, value, unready, missing)) in steps.into_iter().enumerate() {
            let mut pods = ready(n_ready as usize, value);
            pods.extend(vec![PodMetric { ready: false, value: None }; unready as usize]);
            pods.extend(vec![PodMetric { ready: true, value: None }; missing as usize]);
            let out = hpa.decide(i as u64 * 15_000, &HpaInput {
                current, pods: &pods, target: 0.6, utilization: true, min, max,
            });
            if current >= min && current <= max {
                prop_assert!(out.desired >= min && out.desired <= max,
                    "desired {} outside [{min}, {max}]: {}", out.desired, out.reason);
            }
            current = out.desired;
        }
    }
}
