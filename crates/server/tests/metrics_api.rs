//! Metrics ingest and queries through the HTTP API: roles, department scoping, bad
//! batches, grouping, and persistence of the metrics store across a restart.

mod common;

use axum::http::StatusCode;
use common::api;
use jdos_server::{start, ServerConfig};
use serde_json::{json, Value};

fn batch(t0: i64) -> Value {
    let series: Vec<Value> = [("web", 0, "retail"), ("web", 1, "retail"), ("db", 0, "payments")]
        .iter()
        .map(|(g, i, dept)| {
            json!({
                "name": "container_cpu_usage_cores",
                "labels": {"app": "shop", "group": g, "instance": format!("shop.prod.{g}.{i}"), "department": dept},
                "t": (0..6).map(|k| t0 + k * 10_000).collect::<Vec<i64>>(),
                "v": (0..6).map(|k| 0.5 + f64::from(*i) + k as f64 * 0.1).collect::<Vec<f64>>(),
            })
        })
        .collect();
    json!({"common": {"host": "h1", "datacenter": "dc1"}, "series": series})
}

#[tokio::test]
async fn ingest_and_query_with_roles_and_scoping() {
    let a = api().await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    let ops = a.token("oscar", "ops", None).await;

    // Only admin tokens (and agents) push.
    for t in [&dev, &ops] {
        let r = a.post("/api/v1/metrics/ingest", t, batch(0)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let r = a.post("/api/v1/metrics/ingest", &a.admin, batch(0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["accepted"], 18);
    assert_eq!(r.json()["new_series"], 3);

    // A bad series refuses the whole batch, naming it; nothing is written.
    let mut bad = batch(60_000);
    bad["series"][1]["labels"]["bad-label"] = json!("x");
    let r = a.post("/api/v1/metrics/ingest", &a.admin, bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "series[1]");
    let mut uneven = batch(60_000);
    uneven["series"][0]["v"] = json!([1.0]);
    let r = a.post("/api/v1/metrics/ingest", &a.admin, uneven).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "series[0].v");

    let q = "/api/v1/metrics/query?metric=container_cpu_usage_cores&start=0&end=60000&step=60000";
    let r = a.get(&format!("{q}&by=group&agg=max"), &a.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["agg"], "max");
    assert_eq!(body["fn"], "mean");
    let groups: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, vec!["db", "web"]);
    // web: max over instances of the mean over the minute (0.75 and 1.75).
    let web = &body["result"][1]["points"][0];
    assert!((web["v"].as_f64().unwrap() - 1.75).abs() < 1e-9, "{web}");
    assert_eq!(web["n"], 2);

    // The developer sees its department only, and may not ask for another.
    let r = a.get(&format!("{q}&by=instance"), &dev).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen: Vec<String> = r.json()["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["group"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, vec!["shop.prod.web.0", "shop.prod.web.1"]);
    let r = a.get(&format!("{q}&department=payments"), &dev).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Bad queries name the parameter.
    let base = "/api/v1/metrics/query?metric=container_cpu_usage_cores&start=0&end=60000";
    for (extra, field) in [
        ("&by=colour", "by"),
        ("&step=1", "step"),
        ("&step=0", "step"),
    ] {
        let r = a.get(&format!("{base}{extra}"), &a.admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{extra}: {}", r.text);
        assert_eq!(r.json()["field"], field, "{extra}");
    }
    let r = a
        .get("/api/v1/metrics/query?metric=x&agg=median", &a.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "agg");

    // Latest sample per series.
    let r = a
        .get(
            "/api/v1/metrics/latest?metric=container_cpu_usage_cores&group=web",
            &a.admin,
        )
        .await;
    let latest = r.json();
    assert_eq!(latest.as_array().unwrap().len(), 2);
    assert_eq!(latest[0]["t"], 50_000);
    assert_eq!(latest[0]["labels"]["host"], "h1");
}

#[tokio::test]
async fn metrics_survive_a_restart_of_a_persistent_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    let h = start(config.clone()).await.unwrap();
    let token = h.admin_token.clone().unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/metrics/ingest", h.url()))
        .bearer_auth(&token)
        .json(&batch(1_000_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.shutdown().await;
    assert!(dir.path().join("tsdb/head.snap").exists());

    let h = start(config).await.unwrap();
    let r: Value = client
        .get(format!(
            "{}/api/v1/metrics/query?metric=container_cpu_usage_cores&start=1000000&end=1060000&step=60000&agg=sum",
            h.url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"][0]["series"], 3, "{r}");
    assert_eq!(r["result"][0]["points"][0]["n"], 3, "{r}");
    h.shutdown().await;
}
