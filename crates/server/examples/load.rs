//! Steady-load latency probe of the API server over loopback.
//!
//! `cargo run --release -p jdos-server --example load -- [rate] [seconds] [hosts]`
//!
//! Starts the real server on a temp-dir redb store, registers `hosts` hosts
//! (timing that too), then sends `rate` requests per second for `seconds`
//! on a fixed schedule (open loop: latency is measured from when a request
//! was due, so a stalled server cannot hide its queueing), mixing 80 %
//! `GET /api/v1/hosts/{name}`, 10 % `GET /api/v1/hosts?limit=50` and 10 %
//! cordon/uncordon writes (each an event-recording store transaction).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_server::{start, ServerConfig};
use jdos_types::api::RegisterHost;
use jdos_types::resources::GIB;
use jdos_types::Resources;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let rate = args.first().copied().filter(|r| *r > 0).unwrap_or(500);
    let seconds = args.get(1).copied().filter(|r| *r > 0).unwrap_or(20);
    let host_count = args.get(2).copied().filter(|r| *r > 0).unwrap_or(1000);

    let dir = tempfile::tempdir()?;
    let server = start(ServerConfig::new("127.0.0.1:0".parse()?, dir.path())).await?;
    let token = server.admin_token.clone().expect("fresh data dir");
    let base = server.url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    // Registration throughput, 16 concurrent registrars.
    let t0 = Instant::now();
    let names: Arc<Vec<String>> = Arc::new((0..host_count).map(|i| format!("h{i:05}")).collect());
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let (client, base, token, names) =
            (client.clone(), base.clone(), token.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..names.len() as u64).step_by(16) {
                let body = RegisterHost {
                    name: names[i as usize].clone(),
                    datacenter: format!("dc{}", i % 3),
                    switch: format!("s{}", i % 40),
                    rack: format!("r{}", i % 400),
                    capacity: Resources::new(32_000, 128 * GIB),
                    resource_zone: None,
                    labels: Default::default(),
                    driver: Some("simulated".into()),
                };
                let r = client
                    .post(format!("{base}/api/v1/hosts"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "register: {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let reg = t0.elapsed();
    println!(
        "registered {host_count} hosts in {:.2} s ({:.0} registrations/s, 16 concurrent clients)",
        reg.as_secs_f64(),
        host_count as f64 / reg.as_secs_f64()
    );

    let t = Instant::now();
    let r = client
        .get(format!("{base}/api/v1/datacenters"))
        .bearer_auth(&token)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success());
    let _ = r.bytes().await?;
    println!(
        "GET /api/v1/datacenters over {host_count} hosts: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start_at = tokio::time::Instant::now() + Duration::from_millis(100);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u8, f64, bool)>();
    for n in 0..total {
        let due = start_at + interval * n as u32;
        let (client, base, token, names, tx) = (
            client.clone(),
            base.clone(),
            token.clone(),
            names.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let host = &names[(n as usize * 7919) % names.len()];
            let (kind, req) = match n % 10 {
                0 => (1u8, client.get(format!("{base}/api/v1/hosts?limit=50"))),
                5 => {
                    let verb = if (n / 10) % 2 == 0 {
                        "cordon"
                    } else {
                        "uncordon"
                    };
                    (
                        2u8,
                        client.post(format!("{base}/api/v1/hosts/{host}/{verb}")),
                    )
                }
                _ => (0u8, client.get(format!("{base}/api/v1/hosts/{host}"))),
            };
            let ok = match req.bearer_auth(&token).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let _ = tx.send((kind, due.elapsed().as_secs_f64() * 1e3, ok));
        });
    }
    drop(tx);
    let mut all = Vec::new();
    let (mut get, mut list, mut write) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    while let Some((k, ms, ok)) = rx.recv().await {
        errors += u64::from(!ok);
        all.push(ms);
        match k {
            0 => get.push(ms),
            1 => list.push(ms),
            _ => write.push(ms),
        }
    }
    println!(
        "{rate} req/s for {seconds} s: {} requests, {errors} errors",
        all.len()
    );
    for (name, v) in [
        ("all", &mut all),
        ("get host", &mut get),
        ("list 50 hosts", &mut list),
        ("cordon/uncordon (write)", &mut write),
    ] {
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        println!(
            "  {name:<24} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            p(0.50),
            p(0.99),
            p(1.0)
        );
    }
    server.shutdown().await;
    Ok(())
}
