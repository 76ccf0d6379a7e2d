//! A started server evaluates alert policies over the metrics agents push:
//! samples in through `POST /api/v1/metrics/ingest`, a notification out to a
//! webhook on loopback.

mod alerting_sinks;

use std::time::Duration;

use alerting_sinks::HttpSink;
use jdos_server::alerting::AlertingConfig;
use jdos_server::{start, ServerConfig};
use jdos_types::keys;
use serde_json::json;

#[tokio::test]
async fn a_running_server_alerts_on_ingested_metrics() {
    let hook = HttpSink::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        store_url: Some("memory://".into()),
        alerting: AlertingConfig {
            interval: Duration::from_millis(200),
            ..AlertingConfig::default()
        },
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())
    };
    let h = start(config).await.unwrap();
    let store = h.store();
    let put = |key: String, v: serde_json::Value| {
        let store = store.clone();
        async move {
            store
                .put(&key, serde_json::to_vec(&v).unwrap(), None)
                .await
                .unwrap()
        }
    };
    put(
        keys::alert_receiver("hook"),
        json!({"name": "hook", "type": "webhook", "url": hook.url("/alerts")}),
    )
    .await;
    put(
        keys::alert_policy("hot"),
        json!({"name": "hot", "scope": {"app": "shop"},
               "condition": {"type": "threshold", "metric": "container_cpu_utilization",
                             "aggregation": "max", "per": "instance", "op": ">", "value": 0.9, "window": "1m"},
               "group_wait": "0s", "receivers": ["hook"],
               "annotations": {"summary": "{{labels.instance}} at {{value}}"}}),
    )
    .await;
    let now = h.state().now_ms() as i64;
    let batch = json!({"series": [{
        "name": "container_cpu_utilization",
        "labels": {"app": "shop", "env": "production", "group": "web", "instance": "shop.production.web.1"},
        "t": [now - 20_000, now - 10_000, now - 1],
        "v": [0.97, 0.98, 0.99]
    }]});
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/metrics/ingest", h.url()))
        .bearer_auth(h.admin_token.as_ref().unwrap())
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hook.delivered().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = hook.delivered();
    assert_eq!(d[0]["status"], "firing");
    assert_eq!(
        d[0]["alerts"][0]["annotations"]["summary"],
        "shop.production.web.1 at 0.98"
    );
    h.shutdown().await;
}
