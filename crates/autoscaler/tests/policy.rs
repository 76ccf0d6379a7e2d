//! Policy parsing: defaults, every bad field reported, scheduled floors.

use jdos_autoscaler::policy::{Metric, Mode, Policy, Weekday, Window};
use serde_json::json;

const DAY: u64 = 86_400_000;
const HOUR: u64 = 3_600_000;
/// 2026-11-09 00:00 UTC, a Monday.
const MON: u64 = 20_766 * DAY;

#[test]
fn parses_a_full_policy() {
    let p = Policy::from_json(&json!({
        "min_replicas": 2, "max_replicas": 50,
        "metric": "requests_per_second", "target_value": 100.0,
        "mode": "predictive", "startup_seconds": 90, "utc_offset_minutes": 480,
        "schedules": [
            {"days": ["sat", "Sunday"], "start": "09:00", "end": "23:00", "min_replicas": 10},
            {"from": "2026-11-11", "to": "2026-11-12T02:00", "min_replicas": 40}
        ]
    }))
    .unwrap();
    assert_eq!(
        (p.min_replicas, p.max_replicas, p.mode),
        (2, 50, Mode::Predictive)
    );
    assert_eq!(
        p.metric,
        Metric::Custom {
            name: "requests_per_second".into(),
            target_value: 100.0
        }
    );
    assert_eq!(p.horizon_seconds(), 105);
    assert_eq!(p.schedules.len(), 2);
    assert!(
        matches!(&p.schedules[0].window, Window::Weekly { days, start_minute: 540, end_minute: 1380 } if days == &[Weekday::Sat, Weekday::Sun])
    );
}

#[test]
fn defaults_follow_the_hpa() {
    let p = Policy::from_json(&json!({"max_replicas": 5})).unwrap();
    assert_eq!(p.min_replicas, 1);
    assert_eq!(
        p.metric,
        Metric::Cpu {
            target_utilization: 0.6
        }
    );
    assert_eq!(p.mode, Mode::Reactive);
    assert_eq!(
        (
            p.sync_seconds,
            p.tolerance,
            p.scale_down_stabilization_seconds
        ),
        (15, 0.1, 300)
    );
}

#[test]
fn every_bad_field_is_reported() {
    let err = Policy::from_json(&json!({
        "min_replicas": 0,
        "metric": "cpu",
        "target_utilization": 1.5,
        "target_value": 3,
        "mode": "psychic",
        "sync_seconds": 0,
        "tolerance": -1,
        "utc_offset_minutes": 2000,
        "colour": "blue",
        "schedules": [
            {"days": ["mon", "funday"], "start": "25:00", "min_replicas": 3},
            {"from": "2026-02-30", "to": "2026-03-01", "min_replicas": "many"},
            {"days": ["mon"], "start": "10:00", "end": "11:00", "from": "2026-01-01", "min_replicas": 1},
            "nope"
        ]
    }))
    .unwrap_err();
    let mut fields: Vec<&str> = err
        .errors()
        .errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "colour",
            "max_replicas",
            "min_replicas",
            "mode",
            "schedules[0].days[1]",
            "schedules[0].end",
            "schedules[0].start",
            "schedules[1].from",
            "schedules[1].min_replicas",
            "schedules[2]",
            "schedules[3]",
            "sync_seconds",
            "target_utilization",
            "target_value",
            "tolerance",
            "utc_offset_minutes",
        ],
        "{err}"
    );
    // A readable summary.
    assert!(err.to_string().starts_with("invalid autoscaling policy: "));
}

#[test]
fn cross_field_checks() {
    let err = Policy::from_json(&json!({
        "min_replicas": 5, "max_replicas": 3, "metric": "qps",
        "schedules": [{"from": "2026-01-02", "to": "2026-01-01", "min_replicas": 9}]
    }))
    .unwrap_err();
    let fields: Vec<&str> = err
        .errors()
        .errors
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert!(fields.contains(&"max_replicas"), "{fields:?}");
    assert!(
        fields.contains(&"target_value"),
        "custom metric without target: {fields:?}"
    );
    assert!(fields.contains(&"schedules[0].to"), "{fields:?}");
    assert!(Policy::from_json(&json!([1, 2])).is_err());
}

#[test]
fn weekly_floor_applies_in_local_time_and_crosses_midnight() {
    let p = Policy::from_json(&json!({
        "min_replicas": 2, "max_replicas": 100, "utc_offset_minutes": 480,
        "schedules": [
            {"days": ["mon"], "start": "09:00", "end": "18:00", "min_replicas": 10},
            {"days": ["fri"], "start": "22:00", "end": "02:00", "min_replicas": 20}
        ]
    }))
    .unwrap();
    // Monday 09:00 local = Monday 01:00 UTC.
    assert_eq!(p.floor_at(MON + HOUR - 1), 2);
    assert_eq!(p.floor_at(MON + HOUR), 10);
    assert_eq!(p.floor_at(MON + 10 * HOUR - 1), 10);
    assert_eq!(p.floor_at(MON + 10 * HOUR), 2);
    // Friday 23:00 local and Saturday 01:00 local are inside; Saturday 02:00 is not.
    let fri = MON + 4 * DAY - 8 * HOUR;
    assert_eq!(p.floor_at(fri + 23 * HOUR), 20);
    assert_eq!(p.floor_at(fri + 25 * HOUR), 20);
    assert_eq!(p.floor_at(fri + 26 * HOUR), 2);
    // Thursday 23:00 local is not (the window starts on Fridays).
    assert_eq!(p.floor_at(fri - HOUR), 2);
}

#[test]
fn one_off_sales_day_floor_is_capped_by_max() {
    let p = Policy::from_json(&json!({
        "min_replicas": 2, "max_replicas": 100,
        "schedules": [{"from": "2026-11-11T00:00", "to": "2026-11-12T02:00", "min_replicas": 80}]
    }))
    .unwrap();
    let start = MON + 2 * DAY; // 2026-11-11
    assert_eq!(p.floor_at(start - 1), 2);
    assert_eq!(p.floor_at(start), 80);
    assert_eq!(p.floor_at(start + DAY + 2 * HOUR - 1), 80);
    assert_eq!(p.floor_at(start + DAY + 2 * HOUR), 2);
    let over = Policy::from_json(&json!({
        "max_replicas": 10,
        "schedules": [{"from": "2026-11-11", "to": "2026-11-12", "min_replicas": 80}]
    }))
    .unwrap_err();
    assert_eq!(over.errors().errors[0].field, "schedules[0].min_replicas");
}
