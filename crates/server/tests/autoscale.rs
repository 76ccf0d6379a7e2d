//! The autoscaling controller against the real metrics store, the real
//! workflow engine with every operation, and in-process fake agents (the
//! operations tests' harness): decisions become scale tasks that change the
//! group, within the policy's bounds.

mod ops_common;

use std::collections::BTreeMap;

use jdos_server::autoscale::{Controller, ControllerConfig, Evaluated, ACTOR, DECISION_EVENT};
use jdos_server::monitoring::MetricsStore;
use jdos_server::ops::{DeployParams, ScaleParams};
use jdos_server::AppState;
use jdos_store::json;
use jdos_types::autoscaling::{ScalingMode, ScheduleSpec};
use jdos_types::group::{Hook, HookAction};
use jdos_types::metrics::{names, MetricBatch};
use jdos_types::{
    keys, AutoscalingPolicy, ContainerPhase, Event, Group, GroupKey, TaskState, UnixMillis,
};
use ops_common::*;

/// 2026-11-22 08:00 UTC.
const T0: UnixMillis = 1_795_334_400_000;

fn policy(min: u32, max: u32, mode: ScalingMode) -> AutoscalingPolicy {
    AutoscalingPolicy {
        min_replicas: min,
        max_replicas: max,
        metric: "cpu".into(),
        target: None,
        target_utilization: Some(0.5),
        target_value: None,
        mode,
        startup_seconds: Some(30),
        sync_seconds: Some(15),
        tolerance: None,
        scale_down_stabilization_seconds: Some(60),
        utc_offset_minutes: None,
        schedules: Vec::new(),
    }
}

/// Deploys `name` with `replicas` and `policy`, waits until all run.
async fn deploy(fx: &Fx, name: &str, replicas: u32, p: AutoscalingPolicy) -> Group {
    let mut g = group("shop", name, replicas);
    g.autoscaling = Some(p);
    put_group(fx.store.as_ref(), &g).await;
    let t = run(
        &fx.srv.engine,
        DeployParams {
            group: g.key(),
            timeout_secs: None,
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    g
}

/// Every live container of the group reports `cores` of cpu at each 10 s
/// from `from` to `to` (exclusive), like the agents' pushes.
async fn feed_cpu(st: &AppState, g: &GroupKey, from: UnixMillis, to: UnixMillis, cores: f64) {
    let cs = containers(st.store(), g).await;
    let mut b = MetricBatch::default();
    for c in &cs {
        let instance = c.id.to_string();
        let labels: BTreeMap<String, String> = [
            ("app", g.app.as_str()),
            ("env", g.env.as_str()),
            ("group", g.group.as_str()),
            ("instance", instance.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut t = from;
        while t < to {
            b.push(names::CONTAINER_CPU_USAGE, &labels, t as i64, cores);
            t += 10_000;
        }
    }
    ingest(st, &b);
}

fn ingest(st: &AppState, b: &MetricBatch) {
    let labels = MetricsStore::labels_of(b, &[]).unwrap();
    st.tsdb().ingest(b, &labels).unwrap();
}

fn of<'a>(out: &'a [Evaluated], g: &GroupKey) -> &'a Evaluated {
    out.iter().find(|e| &e.group == g).expect("group evaluated")
}

async fn replicas(st: &AppState, g: &GroupKey) -> u32 {
    jdos_server::kv::get_json::<Group>(st.store(), &keys::group(g))
        .await
        .unwrap()
        .unwrap()
        .value
        .replicas
}

async fn running(st: &AppState, g: &GroupKey) -> usize {
    containers(st.store(), g)
        .await
        .iter()
        .filter(|c| c.phase == ContainerPhase::Running)
        .count()
}

async fn decision_events(st: &AppState) -> Vec<Event> {
    let all: Vec<Event> = json::list_all(st.store(), keys::EVENTS).await.unwrap();
    all.into_iter()
        .filter(|e| e.action == DECISION_EVENT)
        .collect()
}

async fn finish(fx: &Fx, task: &str) {
    let t = fx.srv.engine.wait(task, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded, "{}: {}", t.kind, t.error);
    assert_eq!(t.actor, ACTOR);
}

fn controller() -> Controller {
    Controller::new(ControllerConfig::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_cpu_scales_out_within_max() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let g = deploy(&fx, "web", 2, policy(2, 6, ScalingMode::Reactive)).await;
    let k = g.key();
    let c = controller();

    // 250m requested, 0.25 cores used: 100 % against a 50 % target → 4.
    feed_cpu(st, &k, T0 - 60_000, T0, 0.25).await;
    let out = c.tick_at(st, T0).await.unwrap();
    let d = &of(&out, &k).decision;
    assert_eq!(
        (d.current, d.desired, d.action.as_str()),
        (2, 4, "scale"),
        "{d:?}"
    );
    assert_eq!(d.mode_used, "reactive");
    assert_eq!((d.containers, d.ready, d.missing), (2, 2, 0));
    finish(&fx, d.task.as_deref().unwrap()).await;
    assert_eq!(replicas(st, &k).await, 4);
    assert_eq!(running(st, &k).await, 4);
    let ev = decision_events(st).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].actor, ACTOR);
    assert!(ev[0].message.contains("2 → 4"), "{}", ev[0].message);

    // 4× the request on every container: 16 wanted, the policy caps at 6.
    feed_cpu(st, &k, T0, T0 + 15_000, 1.0).await;
    let out = c.tick_at(st, T0 + 15_000).await.unwrap();
    let d = &of(&out, &k).decision;
    assert_eq!(
        (d.current, d.desired, d.action.as_str()),
        (4, 6, "scale"),
        "{d:?}"
    );
    finish(&fx, d.task.as_deref().unwrap()).await;
    assert_eq!(replicas(st, &k).await, 6);
    assert_eq!(running(st, &k).await, 6);

    // Still hot, already at max: no task, no event.
    feed_cpu(st, &k, T0 + 15_000, T0 + 30_000, 1.0).await;
    let out = c.tick_at(st, T0 + 30_000).await.unwrap();
    let d = &of(&out, &k).decision;
    assert_eq!((d.desired, d.action.as_str()), (6, "keep"), "{d:?}");
    assert_eq!(decision_events(st).await.len(), 2);
    // The status shows the last evaluation.
    let s = c.status(st, &k).await.unwrap().unwrap();
    assert_eq!(s.replicas, 6);
    assert_eq!(s.last.unwrap().at_ms, T0 + 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_cpu_scales_in_after_stabilization_to_min() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let g = deploy(&fx, "web", 5, policy(2, 8, ScalingMode::Reactive)).await;
    let k = g.key();
    let c = controller();

    // At target: keep 5 (and 5 enters the stabilization window).
    feed_cpu(st, &k, T0 - 60_000, T0, 0.125).await;
    let d = of(&c.tick_at(st, T0).await.unwrap(), &k).decision.clone();
    assert_eq!((d.desired, d.action.as_str()), (5, "keep"), "{d:?}");

    // Nearly idle: wants 1 → min 2, never before the 60 s window passed,
    // then step by step as the window's highest recommendation falls.
    let mut t = T0;
    let mut first_in = None;
    let mut current = 5;
    while t < T0 + 300_000 && current > 2 {
        feed_cpu(st, &k, t, t + 15_000, 0.005).await;
        t += 15_000;
        let d = of(&c.tick_at(st, t).await.unwrap(), &k).decision.clone();
        assert_eq!(d.current, current, "{d:?}");
        if d.action == "scale" {
            assert!(d.desired < current && d.desired >= 2, "{d:?}");
            first_in.get_or_insert(t);
            finish(&fx, d.task.as_deref().unwrap()).await;
            current = d.desired;
        } else {
            assert_eq!(d.action, "keep", "{d:?}");
        }
    }
    let at = first_in.expect("scaled in");
    assert!(at >= T0 + 60_000, "scaled in at {} s", (at - T0) / 1000);
    assert_eq!(current, 2, "reached the minimum within 300 s");
    assert_eq!(replicas(st, &k).await, 2);
    until("2 live containers", || async {
        containers(st.store(), &k).await.len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_floor_raises_replicas() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let mut p = policy(2, 8, ScalingMode::Reactive);
    p.schedules = vec![ScheduleSpec {
        name: Some("sale".into()),
        days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(String::from)
            .to_vec(),
        start: Some("00:00".into()),
        end: Some("24:00".into()),
        min_replicas: 5,
        ..Default::default()
    }];
    let g = deploy(&fx, "web", 2, p).await;
    let k = g.key();
    let c = controller();
    // Load at target would keep 2; the open window asks for 5.
    feed_cpu(st, &k, T0 - 60_000, T0, 0.125).await;
    let d = of(&c.tick_at(st, T0).await.unwrap(), &k).decision.clone();
    assert_eq!(
        (d.floor, d.desired, d.action.as_str()),
        (5, 5, "scale"),
        "{d:?}"
    );
    assert!(d.reason.contains("scheduled floor 5"), "{}", d.reason);
    finish(&fx, d.task.as_deref().unwrap()).await;
    assert_eq!(replicas(st, &k).await, 5);
    assert_eq!(running(st, &k).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_task_of_the_app_blocks_a_second_submission() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let g = deploy(&fx, "web", 2, policy(2, 6, ScalingMode::Reactive)).await;
    // A scale of another group of the app that sits in its pre-start hook
    // (a webhook that never answers, 3 s timeout) and then fails.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", sink.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = sink.accept().await {
            held.push(sock);
        }
    });
    let mut other = group("shop", "api", 1);
    other.template.hooks.pre_start = vec![Hook {
        name: "slow".into(),
        action: HookAction::Webhook {
            url,
            method: "POST".into(),
            headers: Default::default(),
        },
        timeout_ms: 3_000,
        retries: 0,
    }];
    put_group(fx.store.as_ref(), &other).await;
    let k = g.key();
    let c = controller();
    let mut req = ScaleParams {
        group: other.key(),
        replicas: 2,
        timeout_secs: None,
    }
    .task("alice");
    req.department = Some("retail".into());
    let blocking = fx.srv.engine.submit(req).await.unwrap();

    feed_cpu(st, &k, T0 - 60_000, T0, 0.25).await;
    let d = of(&c.tick_at(st, T0).await.unwrap(), &k).decision.clone();
    assert_eq!((d.desired, d.action.as_str()), (4, "blocked"), "{d:?}");
    assert_eq!(d.task.as_deref(), Some(blocking.id.as_str()));
    assert!(decision_events(st).await.is_empty());
    let tasks: Vec<jdos_types::Task> = json::list_all(st.store(), keys::TASKS).await.unwrap();
    assert!(
        tasks.iter().all(|t| t.actor != ACTOR),
        "no autoscaler task yet"
    );

    // Once it is over, the next sync submits.
    let done = fx.srv.engine.wait(&blocking.id, T).await.unwrap();
    assert_ne!(done.state, TaskState::Succeeded, "the hook never answers");
    feed_cpu(st, &k, T0, T0 + 15_000, 0.25).await;
    let d = of(&c.tick_at(st, T0 + 15_000).await.unwrap(), &k)
        .decision
        .clone();
    assert_eq!(d.action, "scale", "{d:?}");
    finish(&fx, d.task.as_deref().unwrap()).await;
    assert!(replicas(st, &k).await > 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metrics_never_scale_in() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let g = deploy(&fx, "web", 4, policy(2, 6, ScalingMode::Reactive)).await;
    let k = g.key();
    let c = controller();
    for i in 0..8u64 {
        let d = of(&c.tick_at(st, T0 + i * 15_000).await.unwrap(), &k)
            .decision
            .clone();
        assert_eq!((d.desired, d.action.as_str()), (4, "keep"), "{d:?}");
        assert_eq!(d.missing, 4);
        assert_eq!(d.load, None);
    }
}

/// Three days of a daily wave (group load 1–3 request-equivalents) on two
/// instances' series, one sample a minute, ending at `T0`.
fn daily_history(k: &GroupKey) -> MetricBatch {
    let mut b = MetricBatch::default();
    for i in 0..2 {
        let labels: BTreeMap<String, String> = [
            ("app", k.app.clone()),
            ("env", k.env.clone()),
            ("group", k.group.clone()),
            ("instance", format!("{}/{}/{}/{i}", k.app, k.env, k.group)),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect();
        let mut t = T0 - 3 * 86_400_000;
        while t < T0 - 60_000 {
            let phase = (t % 86_400_000) as f64 / 86_400_000.0 * std::f64::consts::TAU;
            // Per instance: half the group's load, in cores (250m request).
            let load = 2.0 + phase.sin();
            b.push(
                names::CONTAINER_CPU_USAGE,
                &labels,
                t as i64,
                load / 2.0 * 0.25,
            );
            t += 60_000;
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_mode_is_warmed_from_history() {
    let fx = fixture(2).await;
    let st = &fx.srv.st;
    let warm = deploy(&fx, "web", 2, policy(1, 8, ScalingMode::Predictive)).await;
    let cold = deploy(&fx, "api", 2, policy(1, 8, ScalingMode::Predictive)).await;
    ingest(st, &daily_history(&warm.key()));
    let now_load = 2.0 + ((T0 % 86_400_000) as f64 / 86_400_000.0 * std::f64::consts::TAU).sin();
    feed_cpu(st, &warm.key(), T0 - 60_000, T0, now_load / 2.0 * 0.25).await;
    feed_cpu(st, &cold.key(), T0 - 60_000, T0, now_load / 2.0 * 0.25).await;

    let c = controller();
    let out = c.tick_at(st, T0).await.unwrap();
    let w = &of(&out, &warm.key()).decision;
    let cd = &of(&out, &cold.key()).decision;
    assert_eq!(w.mode_used, "predictive", "{w:?}");
    assert!(w.reason.contains("forecast peak"), "{}", w.reason);
    assert_eq!(cd.mode_used, "reactive_fallback", "{cd:?}");

    // A policy change rebuilds the autoscaler and warms it up again.
    for t in [w.task.as_deref(), cd.task.as_deref()]
        .into_iter()
        .flatten()
    {
        finish(&fx, t).await;
    }
    let mut g2 = jdos_server::kv::get_json::<Group>(st.store(), &keys::group(&warm.key()))
        .await
        .unwrap()
        .unwrap()
        .value;
    g2.autoscaling.as_mut().unwrap().max_replicas = 9;
    put_group(fx.store.as_ref(), &g2).await;
    feed_cpu(st, &warm.key(), T0, T0 + 15_000, now_load / 2.0 * 0.25).await;
    let out = c.tick_at(st, T0 + 15_000).await.unwrap();
    assert_eq!(of(&out, &warm.key()).decision.mode_used, "predictive");
}
