//! The alert evaluator end to end: metrics in the real TSDB, policies,
//! receivers and silences in the store, notifications delivered to real
//! protocol peers on loopback (an SMTP server, an SMS gateway, a webhook).

mod alerting_sinks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use alerting_sinks::{HttpSink, SmtpSink};
use jdos_monitor::{Labels, Options, Sample, Tsdb};
use jdos_server::alerting::deliver::Dispatcher;
use jdos_server::alerting::source::TsdbSource;
use jdos_server::alerting::{AlertingConfig, Evaluator, TickReport};
use jdos_server::events::EventDraft;
use jdos_server::AppState;
use jdos_store::{json, MemoryStore, Store};
use jdos_types::alert::{Alert, AlertState};
use jdos_types::keys;
use serde_json::{json, Value};

const T0: u64 = 1_800_000_000_000;

struct Rig {
    st: AppState,
    clock: Arc<AtomicU64>,
    db: Arc<RwLock<Tsdb>>,
    eval: Evaluator,
}

fn evaluator(st: &AppState, db: &Arc<RwLock<Tsdb>>) -> Evaluator {
    Evaluator::new(
        st.clone(),
        Arc::new(TsdbSource::over_lock(db.clone())),
        Arc::new(Dispatcher::new()),
        AlertingConfig::default(),
    )
}

fn rig() -> Rig {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let st = AppState::with_clock(store, Arc::new(move || c.load(Ordering::SeqCst)));
    let db = Arc::new(RwLock::new(Tsdb::in_memory(Options::default()).unwrap()));
    let eval = evaluator(&st, &db);
    Rig {
        st,
        clock,
        db,
        eval,
    }
}

impl Rig {
    fn at(&self, offset_ms: u64) {
        self.clock.store(T0 + offset_ms, Ordering::SeqCst);
    }

    async fn tick_at(&self, offset_ms: u64) -> TickReport {
        self.at(offset_ms);
        self.eval.tick().await.unwrap()
    }

    async fn put(&self, key: String, v: Value) {
        self.st
            .store()
            .put(&key, serde_json::to_vec(&v).unwrap(), None)
            .await
            .unwrap();
    }

    async fn policy(&self, v: Value) {
        let p: jdos_types::alert::AlertPolicy = serde_json::from_value(v).unwrap();
        jdos_types::Validate::validate(&p).unwrap();
        self.put(
            keys::alert_policy(&p.name),
            serde_json::to_value(&p).unwrap(),
        )
        .await;
    }

    async fn receiver(&self, v: Value) {
        let r: jdos_types::alert::Receiver = serde_json::from_value(v).unwrap();
        jdos_types::Validate::validate(&r).unwrap();
        self.put(
            keys::alert_receiver(&r.name),
            serde_json::to_value(&r).unwrap(),
        )
        .await;
    }

    /// Samples of `cpu` for `instance` of shop/production/web every 10 s in
    /// `[from, to)` (offsets from T0).
    fn cpu(&self, instance: u32, from: u64, to: u64, v: f64) {
        let mut db = self.db.write().unwrap();
        let labels = Labels::new(
            "container_cpu_usage_cores",
            [
                ("app", "shop".to_string()),
                ("env", "production".to_string()),
                ("group", "web".to_string()),
                ("instance", format!("shop.production.web.{instance}")),
                ("host", format!("h{}", instance % 2)),
            ],
        )
        .unwrap();
        let id = db.series(&labels);
        let samples: Vec<_> = (from..to)
            .step_by(10_000)
            .map(|t| (id, Sample::new((T0 + t) as i64, v)))
            .collect();
        db.append_batch(&samples).unwrap();
    }

    async fn alerts(&self) -> Vec<Alert> {
        json::list_all(self.st.store(), keys::ALERTS).await.unwrap()
    }
}

fn cpu_policy(receivers: &[&str], extra: Value) -> Value {
    let mut p = json!({
        "name": "high-cpu",
        "scope": {"app": "shop"},
        "condition": {"type": "threshold", "metric": "container_cpu_usage_cores",
                      "aggregation": "max", "per": "instance", "op": ">", "value": 0.9, "window": "1m"},
        "for": "30s",
        "severity": "critical",
        "annotations": {"summary": "cpu of {{labels.instance}} at {{value}}"},
        "receivers": receivers,
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test]
async fn a_threshold_alert_is_mailed_over_smtp_once_and_its_resolution_too() {
    let smtp = SmtpSink::start().await;
    let r = rig();
    r.receiver(json!({
        "name": "ops-mail", "type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.addr.port(),
        "from": "jdos@example.com", "to": ["oncall@example.com", "lead@example.com"]
    }))
    .await;
    r.policy(cpu_policy(&["ops-mail"], json!({}))).await;
    r.cpu(1, 0, 70_000, 0.95);
    r.cpu(2, 0, 200_000, 0.2);

    let rep = r.tick_at(10_000).await;
    assert_eq!((rep.pending, rep.firing, rep.sent), (1, 0, 0), "{rep:?}");
    let rep = r.tick_at(40_000).await;
    assert_eq!((rep.pending, rep.firing, rep.sent), (0, 1, 0), "{rep:?}");
    assert_eq!(
        rep.next_due_ms,
        Some(T0 + 45_000),
        "held for the group wait"
    );
    let rep = r.tick_at(45_000).await;
    assert_eq!(rep.sent, 1, "{rep:?}");

    let mails = smtp.wait_for(1).await;
    let m = &mails[0];
    assert_eq!(m.from, "jdos@example.com");
    assert_eq!(m.to, ["oncall@example.com", "lead@example.com"]);
    let subject = m.header("Subject").unwrap();
    assert_eq!(
        subject,
        "[FIRING:1] cpu of shop.production.web.1 at 0.95 (critical)"
    );
    let body = m.body();
    assert!(body.contains("[FIRING] high-cpu = 0.95"), "{body}");
    assert!(body.contains("instance=shop.production.web.1"), "{body}");
    assert!(m.header("To").unwrap().contains("lead@example.com"));

    let stored = r.alerts().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].state, AlertState::Firing);
    assert_eq!(stored[0].notified["ops-mail"].at_ms, T0 + 45_000);

    // A restarted server (a new evaluator on the same store) does not
    // announce the firing alert again.
    let restarted = evaluator(&r.st, &r.db);
    r.at(60_000);
    let rep = restarted.tick().await.unwrap();
    assert_eq!((rep.firing, rep.sent), (1, 0), "{rep:?}");

    // Load drops: the window's mean falls under the threshold, the alert
    // resolves and the resolution is mailed.
    r.cpu(1, 70_000, 200_000, 0.1);
    let rep = restarted.tick().await.unwrap();
    assert_eq!(rep.firing, 1, "{rep:?}");
    r.at(135_000);
    let rep = restarted.tick().await.unwrap();
    assert_eq!((rep.firing, rep.sent), (0, 0), "{rep:?}");
    r.at(140_000);
    let rep = restarted.tick().await.unwrap();
    assert_eq!(rep.sent, 1, "{rep:?}");
    let mails = smtp.wait_for(2).await;
    let subject = mails[1].header("Subject").unwrap();
    assert!(subject.starts_with("[RESOLVED]"), "{subject}");
    assert!(mails[1].body().contains("[RESOLVED] high-cpu"));
    assert_eq!(r.alerts().await[0].state, AlertState::Resolved);
    // Kept for an hour once told, then forgotten.
    r.at(140_000 + 3_600_000);
    let rep = restarted.tick().await.unwrap();
    assert_eq!(rep.deleted, 1, "{rep:?}");
    assert!(r.alerts().await.is_empty());
    assert_eq!(smtp.mails().len(), 2);
}

#[tokio::test]
async fn the_sms_gateway_gets_json_with_the_token_and_a_failed_post_is_retried() {
    let gw = HttpSink::start(1).await;
    let r = rig();
    r.receiver(json!({
        "name": "sms-oncall", "type": "sms", "url": gw.url("/v1/send"),
        "to": ["+8613800000000", "13900000000"], "token": "gw-secret", "retries": 2
    }))
    .await;
    r.policy(cpu_policy(&["sms-oncall"], json!({"for": "0s"})))
        .await;
    r.cpu(1, 0, 60_000, 0.99);
    let rep = r.tick_at(50_000).await;
    assert_eq!((rep.firing, rep.sent), (1, 0));
    let rep = r.tick_at(55_000).await;
    assert_eq!((rep.sent, rep.failed), (1, 0), "{rep:?}");
    let posted = gw.posted();
    assert_eq!(posted.len(), 2, "one 500, one retry: {posted:?}");
    assert_eq!(posted[0].status, 500);
    assert_eq!(posted[1].authorization.as_deref(), Some("Bearer gw-secret"));
    let body = &posted[1].body;
    assert_eq!(body["to"], json!(["+8613800000000", "13900000000"]));
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("[FIRING:1] cpu of shop.production.web.1 at 0.99"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_recorded_and_retried_next_evaluation() {
    let gw = HttpSink::start(100).await;
    let r = rig();
    r.receiver(json!({
        "name": "hook", "type": "webhook", "url": gw.url("/hook"), "retries": 0
    }))
    .await;
    r.policy(cpu_policy(&["hook", "nobody"], json!({"for": "0s"})))
        .await;
    r.cpu(1, 0, 60_000, 0.99);
    r.tick_at(50_000).await;
    let rep = r.tick_at(55_000).await;
    assert_eq!((rep.sent, rep.failed), (0, 2), "{rep:?}");
    let a = &r.alerts().await[0];
    assert!(a.errors["hook"].contains("500"), "{:?}", a.errors);
    assert!(
        a.errors["nobody"].contains("does not exist"),
        "{:?}",
        a.errors
    );
    assert!(a.notified.is_empty());
    let rep = r.tick_at(58_000).await;
    assert_eq!(rep.failed, 2, "retried: {rep:?}");
    assert_eq!(gw.posted().len(), 2);
}

#[tokio::test]
async fn groups_silences_and_repeats_reach_a_webhook_as_expected() {
    let hook = HttpSink::start(0).await;
    let r = rig();
    r.receiver(json!({"name": "hook", "type": "webhook", "url": hook.url("/alerts")}))
        .await;
    r.policy(cpu_policy(
        &["hook"],
        json!({"for": "0s", "group_by": ["app"], "repeat_interval": "2m"}),
    ))
    .await;
    for i in 1..=3 {
        r.cpu(i, 0, 600_000, 0.99);
    }
    r.tick_at(60_000).await;
    assert!(hook.delivered().is_empty(), "held for the group wait");
    r.tick_at(65_000).await;
    let d = hook.delivered();
    assert_eq!(d.len(), 1, "three alerts, one notification");
    assert_eq!(d[0]["status"], "firing");
    assert_eq!(d[0]["group_labels"], json!({"app": "shop"}));
    assert_eq!(d[0]["alerts"].as_array().unwrap().len(), 3);

    // Silence web.2; web.4 starts firing: the next notification carries
    // the group's firing alerts but not the silenced one.
    r.put(
        keys::silence("s1"),
        json!({"id": "s1", "matchers": [{"name": "instance", "value": "*.web.2"}],
               "starts_at_ms": T0, "ends_at_ms": T0 + 3_600_000, "created_by": "ops", "comment": "known"}),
    )
    .await;
    r.cpu(4, 70_000, 600_000, 0.99);
    r.tick_at(80_000).await;
    r.tick_at(85_000).await;
    let d = hook.delivered();
    assert_eq!(d.len(), 2, "{d:?}");
    let instances: Vec<&str> = d[1]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["instance"].as_str().unwrap())
        .collect();
    assert_eq!(
        instances,
        [
            "shop.production.web.1",
            "shop.production.web.3",
            "shop.production.web.4"
        ]
    );
    let silenced = r
        .alerts()
        .await
        .into_iter()
        .find(|a| a.labels["instance"] == "shop.production.web.2")
        .unwrap();
    assert_eq!(silenced.silenced_by.as_deref(), Some("s1"));

    // Nothing changes: nothing is sent until the repeat interval has passed
    // since the last notification (T0+85s), then the firing ones again.
    r.tick_at(150_000).await;
    r.tick_at(200_000).await;
    assert_eq!(hook.delivered().len(), 2);
    r.tick_at(205_000).await;
    let d = hook.delivered();
    assert_eq!(d.len(), 3, "repeated after 2m");
    assert_eq!(d[2]["alerts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn failed_tasks_and_failover_events_raise_alerts_that_are_mailed() {
    let smtp = SmtpSink::start().await;
    let r = rig();
    r.receiver(json!({
        "name": "ops-mail", "type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.addr.port(),
        "from": "jdos@example.com", "to": ["oncall@example.com"]
    }))
    .await;
    r.policy(json!({
        "name": "task-failed",
        "scope": {"app": "shop"},
        "condition": {"type": "event", "action": "task.failed", "window": "10m"},
        "severity": "warning",
        "annotations": {"summary": "task {{labels.object}} of {{labels.app}} failed: {{message}}"},
        "receivers": ["ops-mail"]
    }))
    .await;
    r.policy(json!({
        "name": "failover",
        "condition": {"type": "event", "action": "failover.*", "object_kind": "host"},
        "severity": "critical",
        "annotations": {"summary": "failover on {{labels.object}}: {{message}}"},
        "receivers": ["ops-mail"]
    }))
    .await;
    let store = r.st.store();
    let rec = |draft: EventDraft, t: u64| {
        let st = r.st.clone();
        async move { st.events().record(st.store(), draft, T0 + t).await.unwrap() }
    };
    // Older than any window: not alerted on.
    rec(
        EventDraft::new("system", "task.failed", "task", "t-old")
            .app("shop", "retail")
            .failed("long ago"),
        0,
    )
    .await;
    r.tick_at(3_600_000).await;
    rec(
        EventDraft::new("system", "task.failed", "task", "t-123")
            .app("shop", "retail")
            .failed("step place: no host has 64 cores free"),
        3_600_000,
    )
    .await;
    rec(
        EventDraft::new("system", "task.failed", "task", "t-9")
            .app("cart", "retail")
            .failed("other app"),
        3_600_000,
    )
    .await;
    rec(
        EventDraft::new("system", "task.succeeded", "task", "t-124").app("shop", "retail"),
        3_600_000,
    )
    .await;
    rec(
        EventDraft::new("system", "failover.evacuate", "host", "lf-h007")
            .failed("host down: 12 containers moved, 1 could not be placed"),
        3_601_000,
    )
    .await;
    let rep = r.tick_at(3_602_000).await;
    assert_eq!(rep.firing, 2, "{rep:?}");
    let rep = r.tick_at(3_607_000).await;
    assert_eq!(rep.sent, 2, "one notification per policy: {rep:?}");
    let mails = smtp.wait_for(2).await;
    let mut subjects: Vec<String> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "[FIRING:1] failover on lf-h007: host down: 12 containers moved, 1 could not be placed (critical)",
            "[FIRING:1] task t-123 of shop failed: step place: no host has 64 cores free (warning)",
        ]
    );
    assert!(store.get(&keys::event(1)).await.unwrap().is_some());
    // No new failure: after the window the alerts resolve and that is mailed.
    // The task failure leaves its window at +601 s, the failover a second later.
    let rep = r.tick_at(3_600_000 + 601_000).await;
    assert_eq!(rep.firing, 1, "{rep:?}");
    let rep = r.tick_at(3_600_000 + 606_000).await;
    assert_eq!((rep.firing, rep.sent), (0, 1), "{rep:?}");
    let rep = r.tick_at(3_600_000 + 612_000).await;
    assert_eq!(rep.sent, 1, "{rep:?}");
    let mails = smtp.wait_for(4).await;
    assert!(mails[2..]
        .iter()
        .all(|m| m.header("Subject").unwrap().starts_with("[RESOLVED]")));
}

#[tokio::test]
async fn an_absent_agent_is_alerted_per_host() {
    let hook = HttpSink::start(0).await;
    let r = rig();
    r.receiver(json!({"name": "hook", "type": "webhook", "url": hook.url("/a")}))
        .await;
    r.policy(json!({
        "name": "agent-silent",
        "condition": {"type": "absence", "metric": "container_cpu_usage_cores", "per": "host", "window": "1m"},
        "group_wait": "0s",
        "receivers": ["hook"]
    }))
    .await;
    r.cpu(1, 0, 300_000, 0.5); // host h1 keeps reporting
    r.cpu(2, 0, 100_000, 0.5); // host h0 stops at 100 s
    let rep = r.tick_at(150_000).await;
    assert_eq!(rep.firing, 0, "{rep:?}");
    let rep = r.tick_at(170_000).await;
    assert_eq!((rep.firing, rep.sent), (1, 1), "{rep:?}");
    let d = hook.delivered();
    assert_eq!(d[0]["alerts"][0]["labels"]["host"], "h0");
    assert_eq!(
        d[0]["alerts"][0]["value"], 80.0,
        "seconds since its last sample"
    );
}
