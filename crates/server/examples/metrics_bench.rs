//! Ingest and query figures through the server's HTTP API (JSON batches over loopback into
//! the persistent metrics store with its WAL), not just the store.
//!
//! ```text
//! cargo run --release -p jdos-server --example metrics_bench -- [hosts] [rounds] [clients]
//! ```
//! Defaults: 20 hosts × 100 containers × 24 metrics, 30 rounds, 2 concurrent clients.
//!
//! 1. **Agent-shaped ingest**: each request is one host's round (2,400 series × 1 sample),
//!    as an agent pushes every 10 s.
//! 2. **Bulk ingest**: each request holds 2,400 series × 60 samples (10 minutes of a host).
//! 3. **Group-day query**: 200 containers' `container_cpu_usage_cores` for one day at 10 s
//!    (ingested through the API), then `GET /api/v1/metrics/query?group=…&agg=sum&step=60000`
//!    over the day, 30 times: median, min, max.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_monitor::synth::{ContainerSim, METRICS};
use jdos_server::{start, ServerConfig};
use jdos_types::metrics::{MetricBatch, SeriesSamples};

const STEP: i64 = 10_000;
const DAY: i64 = 86_400_000;

fn labels(host: usize, c: usize) -> std::collections::BTreeMap<String, String> {
    [
        ("app", format!("app{}", c % 7)),
        ("env", "prod".into()),
        ("group", format!("g{}", c % 10)),
        ("instance", format!("h{host:03}-c{c:03}")),
        ("department", format!("dept{}", c % 3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One request body per (host, chunk of `per` rounds): every container's 24 metrics.
fn bodies(
    hosts: usize,
    containers: usize,
    rounds: usize,
    per: usize,
    t0: i64,
) -> (Vec<Vec<u8>>, u64) {
    let mut out = Vec::new();
    let mut samples = 0u64;
    for h in 0..hosts {
        let mut sims: Vec<ContainerSim> = (0..containers)
            .map(|c| ContainerSim::new((h * 1000 + c) as u64 + 1))
            .collect();
        let mut r = 0;
        while r < rounds {
            let n = per.min(rounds - r);
            let mut series: Vec<SeriesSamples> = Vec::with_capacity(containers * METRICS.len());
            for (c, sim) in sims.iter_mut().enumerate() {
                let base = series.len();
                for m in METRICS {
                    series.push(SeriesSamples {
                        name: m.to_string(),
                        labels: labels(h, c),
                        t: Vec::with_capacity(n),
                        v: Vec::with_capacity(n),
                    });
                }
                for k in 0..n {
                    let t = t0 + (r + k) as i64 * STEP;
                    for (i, v) in sim.tick(t).into_iter().enumerate() {
                        series[base + i].t.push(t);
                        series[base + i].v.push(v);
                    }
                }
            }
            let b = MetricBatch {
                common: [
                    ("host".to_string(), format!("h{h:03}")),
                    ("datacenter".to_string(), "dc1".to_string()),
                ]
                .into(),
                series,
            };
            samples += b.samples() as u64;
            out.push(serde_json::to_vec(&b).expect("json"));
            r += n;
        }
    }
    (out, samples)
}

/// POSTs every body with `clients` concurrent connections; returns the wall time.
async fn push(url: &str, token: &str, bodies: Vec<Vec<u8>>, clients: usize) -> Duration {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (queue, url, token) = (queue.clone(), url.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let body = queue.lock().unwrap().pop();
                let Some(body) = body else { break };
                let r = http
                    .post(format!("{url}/api/v1/metrics/ingest"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("ingest request");
                assert!(
                    r.status().is_success(),
                    "ingest: {}",
                    r.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    started.elapsed()
}

fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hosts = args.first().copied().unwrap_or(20);
    let rounds = args.get(1).copied().unwrap_or(30);
    let clients = args.get(2).copied().unwrap_or(2);
    let containers = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = start(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
    ))
    .await
    .expect("server");
    let token = h.admin_token.clone().expect("admin token");
    let url = h.url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now.div_euclid(60_000) * 60_000 - DAY;
    println!(
        "load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // 1. Agent-shaped: one host-round per request.
    let (b, n) = bodies(hosts, containers, rounds, 1, t0);
    let reqs = b.len();
    let bytes: usize = b.iter().map(Vec::len).sum();
    let cpu = cpu_seconds();
    let wall = push(&url, &token, b, clients).await;
    println!(
        "agent-shaped: {n} samples in {reqs} requests ({:.1} MB JSON) in {:.2} s = {:.0} samples/s ({:.2} CPU-s for client+server)",
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        cpu_seconds() - cpu
    );

    // 2. Bulk: 60 rounds per request, later in time.
    let (b, n) = bodies(
        hosts,
        containers,
        rounds.max(60) * 2,
        60,
        t0 + rounds as i64 * STEP,
    );
    let reqs = b.len();
    let bytes: usize = b.iter().map(Vec::len).sum();
    let cpu = cpu_seconds();
    let wall = push(&url, &token, b, clients).await;
    println!(
        "bulk: {n} samples in {reqs} requests ({:.1} MB JSON) in {:.2} s = {:.0} samples/s ({:.2} CPU-s)",
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        cpu_seconds() - cpu
    );

    // 3. A day of cpu for 200 containers of group "day", through the API.
    let mut batches = Vec::new();
    let per = 360; // one hour per request
    let mut sims: Vec<ContainerSim> = (0..200).map(|c| ContainerSim::new(c as u64 + 7)).collect();
    let day_rounds = (DAY / STEP) as usize;
    let mut r = 0;
    let qt0 = t0 + DAY;
    while r < day_rounds {
        let mut b = MetricBatch::default();
        for (c, sim) in sims.iter_mut().enumerate() {
            let l: std::collections::BTreeMap<String, String> = [
                ("app".to_string(), "dayapp".to_string()),
                ("group".to_string(), "day".to_string()),
                ("instance".to_string(), format!("day-{c:03}")),
            ]
            .into();
            let mut s = SeriesSamples {
                name: "container_cpu_usage_cores".into(),
                labels: l,
                t: vec![],
                v: vec![],
            };
            for k in 0..per {
                let t = qt0 + (r + k) as i64 * STEP;
                s.t.push(t);
                s.v.push(sim.tick(t)[1] / 1000.0);
            }
            b.series.push(s);
        }
        batches.push(serde_json::to_vec(&b).unwrap());
        r += per;
    }
    let wall = push(&url, &token, batches, clients).await;
    println!(
        "group-day data: 200 × {day_rounds} samples ingested in {:.2} s",
        wall.as_secs_f64()
    );
    let http = reqwest::Client::new();
    let q = format!(
        "{url}/api/v1/metrics/query?metric=container_cpu_usage_cores&group=day&agg=sum&start={qt0}&end={}&step=60000",
        qt0 + DAY
    );
    let mut times = Vec::new();
    for i in 0..31 {
        let started = Instant::now();
        let r = http.get(&q).bearer_auth(&token).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        let el = started.elapsed();
        if i == 0 {
            let pts = body["result"][0]["points"].as_array().map_or(0, Vec::len);
            println!(
                "query answer: {} series, {pts} points",
                body["result"][0]["series"]
            );
            continue; // warm-up
        }
        times.push(el.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "group-day query (200 containers, 1-min step, sum of means) via HTTP: median {:.1} ms, min {:.1}, max {:.1} (n = {})",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    h.shutdown().await;
}
