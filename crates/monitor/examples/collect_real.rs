//! Collects real metrics of this host and its running Docker containers with the agent's
//! [`Collector`], or replays a collected file into the store and prints bytes per sample.
//!
//! ```text
//! # record: ROUNDS rounds every INTERVAL_MS of the host and the given containers
//! cargo run --release -p jdos-monitor --example collect_real -- record OUT.jsonl ROUNDS INTERVAL_MS $(docker ps -q --no-trunc)
//! # replay: re-stamp round k at T0 + k·10 s, load into a Tsdb, seal, print sizes;
//! # optionally export OpenMetrics for `promtool tsdb create-blocks-from openmetrics`
//! cargo run --release -p jdos-monitor --example collect_real -- replay OUT.jsonl [--export FILE.om]
//! ```
//!
//! Recording faster than the agent's 10 s and re-stamping keeps the values real (every rate
//! is the kernel's counters over the recording interval) while a short recording covers
//! more than one 2-hour block.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use jdos_monitor::collect::{Collector, ContainerTarget, Paths};
use jdos_monitor::{Labels, Options, Sample, SeriesId, Tsdb, HOUR_MS};
use jdos_types::metrics::MetricBatch;

/// 2026-11-02 00:00 UTC.
const T0: i64 = 1_794_096_000_000;
const STEP: i64 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("record") if args.len() >= 4 => record(&args[1], args[2].parse()?, args[3].parse()?, &args[4..]),
        Some("replay") if args.len() >= 2 => {
            let export = args.iter().position(|a| a == "--export").and_then(|i| args.get(i + 1));
            replay(&args[1], export.map(String::as_str))
        }
        _ => Err("usage: collect_real record OUT ROUNDS INTERVAL_MS [CONTAINER_ID…] | replay IN [--export FILE]".into()),
    }
}

fn record(
    out: &str,
    rounds: u32,
    interval_ms: u64,
    ids: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let host = [
        ("host".to_string(), "bench-host".to_string()),
        ("datacenter".to_string(), "dc1".to_string()),
    ]
    .into();
    let mut c = Collector::new(Paths::default(), host);
    let targets: Vec<ContainerTarget> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| ContainerTarget {
            engine_id: id.clone(),
            labels: [
                ("app", "bench".to_string()),
                ("group", format!("g{}", i % 2)),
                ("instance", format!("bench.prod.g{}.{i}", i % 2)),
                ("department", "ops".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        })
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    let start = Instant::now();
    let mut samples = 0usize;
    for k in 0..rounds {
        let b = c.collect(k as i64 * interval_ms as i64, &targets);
        samples += b.samples();
        serde_json::to_writer(&mut f, &b)?;
        f.write_all(b"\n")?;
        let next = Duration::from_millis(interval_ms * u64::from(k + 1));
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    f.flush()?;
    println!(
        "recorded {rounds} rounds, {samples} samples, {} containers, cgroup {:?}",
        targets.len(),
        c.cgroup_mode()
    );
    Ok(())
}

fn replay(input: &str, export: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let mut db = Tsdb::in_memory(Options::default())?;
    let mut ids: BTreeMap<Labels, SeriesId> = BTreeMap::new();
    let mut rounds = 0i64;
    let mut om = export
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()?;
    for line in std::io::BufReader::new(std::fs::File::open(input)?).lines() {
        let b: MetricBatch = serde_json::from_str(&line?)?;
        let t = T0 + rounds * STEP;
        let mut batch = Vec::new();
        for s in &b.series {
            let mut pairs: BTreeMap<&str, &str> = b
                .common
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            // The collect-time series is about this recorder, not the host: leave it out.
            if s.name == "jdos_agent_collect_seconds" {
                continue;
            }
            let l = Labels::new(&s.name, pairs)?;
            let id = *ids.entry(l.clone()).or_insert_with(|| db.series(&l));
            for v in &s.v {
                batch.push((id, Sample::new(t, *v)));
                if let Some(f) = om.as_mut() {
                    let labels: Vec<String> = l
                        .pairs()
                        .iter()
                        .filter(|(k, _)| k != "__name__")
                        .map(|(k, v)| format!("{k}=\"{v}\""))
                        .collect();
                    writeln!(
                        f,
                        "{}{{{}}} {} {}",
                        l.metric(),
                        labels.join(","),
                        v,
                        t / 1000
                    )?;
                }
            }
        }
        db.append_batch(&batch)?;
        rounds += 1;
    }
    if let Some(f) = om.as_mut() {
        writeln!(f, "# EOF")?;
        f.flush()?;
    }
    let end = T0 + rounds * STEP;
    db.seal_through(end.div_euclid(2 * HOUR_MS) * 2 * HOUR_MS + 2 * HOUR_MS)?;
    let s = db.stats();
    let header = 16 * s.closed_chunks;
    println!(
        "rounds {rounds} ({:.2} h at 10 s), series {}, samples {}, chunks {}",
        (rounds * STEP) as f64 / HOUR_MS as f64,
        s.series,
        s.closed_samples,
        s.closed_chunks
    );
    println!(
        "bytes/sample: stream {:.3}, with chunk headers {:.3}",
        s.closed_bytes as f64 / s.closed_samples as f64,
        (s.closed_bytes + header) as f64 / s.closed_samples as f64
    );
    Ok(())
}
