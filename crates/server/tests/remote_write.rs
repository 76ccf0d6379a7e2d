//! Remote write against Debian's real `prometheus` (started on loopback with its
//! remote-write receiver): samples ingested by jdos arrive and are queryable there. Also
//! the failure path: a receiver that is down costs retries, then the batch is counted as
//! failed, and ingest is never blocked.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jdos_server::remote_write::RemoteWriteConfig;
use jdos_server::{start, ServerConfig};
use serde_json::{json, Value};

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `prometheus` with the remote-write receiver, or `None` when it is not installed.
async fn prometheus() -> Option<Prometheus> {
    let bin = std::env::var("JDOS_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if Command::new(&bin).arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: `{bin}` not found; install Debian's prometheus (apt-get install -y prometheus) to run the remote-write test"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{}/-/ready", p.url)).send().await {
            if r.status().is_success() {
                return Some(p);
            }
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn batch(t0: i64) -> Value {
    let series: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "name": "container_cpu_usage_cores",
                "labels": {"app": "shop", "group": if i < 2 { "web" } else { "db" }, "instance": format!("shop.prod.c{i}")},
                "t": (0..6).map(|k| t0 + k * 10_000).collect::<Vec<i64>>(),
                "v": (0..6).map(|k| f64::from(i) + k as f64 * 0.25).collect::<Vec<f64>>(),
            })
        })
        .collect();
    json!({"common": {"host": "h1"}, "series": series})
}

async fn jdos(url: String) -> (jdos_server::ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut rw = RemoteWriteConfig::new(url);
    rw.batch_wait = Duration::from_millis(100);
    rw.min_backoff = Duration::from_millis(20);
    rw.max_retries = 2;
    let config = ServerConfig {
        store_url: Some("memory://".into()),
        remote_write: Some(rw),
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())
    };
    (start(config).await.unwrap(), dir)
}

async fn ingest(h: &jdos_server::ServerHandle, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/api/v1/metrics/ingest", h.url()))
        .bearer_auth(h.admin_token.as_ref().unwrap())
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn samples_arrive_in_a_real_prometheus() {
    let Some(prom) = prometheus().await else {
        return;
    };
    let (h, _dir) = jdos(format!("{}/api/v1/write", prom.url)).await;
    let t0 = now_ms() - 120_000;
    let r = ingest(&h, &batch(t0)).await;
    assert_eq!(r["accepted"], 18, "{r}");
    // A re-sent batch is not forwarded twice (the store refused it as out of order).
    let r = ingest(&h, &batch(t0)).await;
    assert_eq!(r["out_of_order"], 18, "{r}");

    let http = reqwest::Client::new();
    let q = format!(
        "{}/api/v1/query?query={}&time={}",
        prom.url,
        "count_over_time(container_cpu_usage_cores%7Bgroup%3D%22web%22%7D%5B5m%5D)",
        (t0 + 60_000) as f64 / 1000.0
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let body: Value = http.get(&q).send().await.unwrap().json().await.unwrap();
        let res = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if res.len() == 2 {
            break res;
        }
        assert!(Instant::now() < deadline, "samples did not arrive: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in &result {
        assert_eq!(s["metric"]["app"], "shop");
        assert_eq!(s["metric"]["host"], "h1");
        assert_eq!(s["value"][1], "6", "six samples per series: {s}");
    }
    // Exact values and timestamps: the last sample of instance c1.
    let q = format!(
        "{}/api/v1/query?query={}&time={}",
        prom.url,
        "container_cpu_usage_cores%7Binstance%3D%22shop.prod.c1%22%7D",
        (t0 + 50_000) as f64 / 1000.0
    );
    let body: Value = http.get(&q).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "2.25", "{body}");
    let w = h.state().tsdb().remote_writer().unwrap().clone();
    assert_eq!(w.stats.sent.load(Ordering::Relaxed), 18);
    assert_eq!(w.stats.failed.load(Ordering::Relaxed), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_retries_then_the_batch_is_counted_failed() {
    let (h, _dir) = jdos(format!("http://127.0.0.1:{}/api/v1/write", free_port())).await;
    let r = ingest(&h, &batch(now_ms())).await;
    assert_eq!(
        r["accepted"], 18,
        "ingest does not wait for the receiver: {r}"
    );
    let w = h.state().tsdb().remote_writer().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.stats.failed.load(Ordering::Relaxed) < 18 {
        assert!(Instant::now() < deadline, "the batch was never given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(w.stats.sent.load(Ordering::Relaxed), 0);
    let text = reqwest::get(format!("{}/metrics", h.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("jdos_remote_write_failed_samples_total 18"),
        "{text}"
    );
    assert!(text.contains("jdos_tsdb_series 3"), "{text}");
    h.shutdown().await;
}
