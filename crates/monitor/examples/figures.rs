//! Prints the monitor store's benchmark figures: bytes per sample on synthetic container
//! metrics, ingest rate, and the group-day query latency.
//!
//! ```text
//! cargo run --release -p jdos-monitor --example figures -- [containers] [hours]
//! ```
//! Defaults: 100 containers × 24 h for compression and ingest; the query always uses 200
//! containers × 24 h. Pass `--export FILE` as the 3rd argument to also write the compression
//! samples as OpenMetrics text (for `promtool tsdb create-blocks-from openmetrics`).

use std::io::Write;
use std::time::Instant;

use jdos_monitor::synth::{missed_tick, ContainerSim, INTERVAL_MS, METRICS};
use jdos_monitor::{
    Aggregation, BucketFn, Labels, Options, RangeQuery, Sample, Selector, SeriesId, Tsdb, HOUR_MS,
};

/// (run, wait) nanoseconds of the calling thread from /proc/thread-self/schedstat: CPU time
/// actually received, and time spent runnable but waiting for a core (the load from others).
fn thread_sched() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Process CPU time (user + system, all threads incl. exited ones), ms, from /proc/self/stat
/// (10 ms resolution, USER_HZ = 100).
fn process_cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; after "pid (comm)" they are at 11 and 12.
    (tick(11) + tick(12)) * 10.0
}

/// 2026-11-02 00:00 UTC: a day-aligned start.
const T0: i64 = 1_794_096_000_000;

fn container_labels(metric: &str, i: usize) -> Labels {
    Labels::new(
        metric,
        [
            ("app", format!("app{}", i % 7)),
            ("department", format!("dept{}", i % 3)),
            ("env", "prod".to_string()),
            ("group", format!("g{}", i % 10)),
            ("container", format!("c{i:05}")),
            ("host", format!("h{:04}", i / 20)),
        ],
    )
    .expect("valid labels")
}

/// Samples of one tick across series.
type Batch = Vec<(SeriesId, Sample)>;

/// One batch per tick: every series of every container (what agents push, merged).
fn generate(
    db: &mut Tsdb,
    containers: usize,
    hours: i64,
    metrics: &[usize],
) -> (Vec<Batch>, Vec<Vec<SeriesId>>) {
    let ids: Vec<Vec<SeriesId>> = (0..containers)
        .map(|i| {
            metrics
                .iter()
                .map(|&m| db.series(&container_labels(METRICS[m], i)))
                .collect()
        })
        .collect();
    let mut sims: Vec<ContainerSim> = (0..containers)
        .map(|i| ContainerSim::new(i as u64 + 1))
        .collect();
    let ticks = hours * HOUR_MS / INTERVAL_MS;
    let mut batches = Vec::with_capacity(ticks as usize);
    for k in 1..=ticks {
        let t = T0 + k * INTERVAL_MS;
        let mut batch = Vec::with_capacity(containers * metrics.len());
        for (i, sim) in sims.iter_mut().enumerate() {
            let vals = sim.tick(t);
            if missed_tick(i as u64 + 1, t) {
                continue;
            }
            for (j, &m) in metrics.iter().enumerate() {
                batch.push((ids[i][j], Sample::new(t, vals[m])));
            }
        }
        batches.push(batch);
    }
    (batches, ids)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let containers: usize = args.get(1).map_or(Ok(100), |s| s.parse())?;
    let hours: i64 = args.get(2).map_or(Ok(24), |s| s.parse())?;
    let export = args.get(3).filter(|a| *a == "--export").and(args.get(4));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cores} cores visible");

    // 1. Compression and ingest on the full metric set.
    let all: Vec<usize> = (0..METRICS.len()).collect();
    let mut db = Tsdb::in_memory(Options::default())?;
    let t = Instant::now();
    let (batches, ids) = generate(&mut db, containers, hours, &all);
    let gen_s = t.elapsed().as_secs_f64();
    let total: usize = batches.iter().map(Vec::len).sum();
    println!(
        "generated {total} samples ({containers} containers x {} series x {hours} h at 10 s) in {gen_s:.2} s",
        METRICS.len()
    );
    let (run0, wait0) = thread_sched();
    let t = Instant::now();
    for b in &batches {
        db.append_batch(b)?;
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let (run1, wait1) = thread_sched();
    let cpu_s = (run1 - run0) as f64 / 1e9;
    println!(
        "ingest: {total} samples in {ingest_s:.3} s wall = {:.0} samples/s (single thread, batches of {}); \
         CPU received {cpu_s:.3} s = {:.0} samples per CPU-second; waited for a core {:.3} s",
        total as f64 / ingest_s,
        batches[0].len(),
        total as f64 / cpu_s,
        (wait1 - wait0) as f64 / 1e9
    );
    db.seal_through(T0 + hours * HOUR_MS + INTERVAL_MS)?;
    let st = db.stats();
    println!(
        "closed: {} samples in {} chunks, {} bytes => {:.3} bytes/sample (Gorilla stream; +16 B/chunk header => {:.3})",
        st.closed_samples,
        st.closed_chunks,
        st.closed_bytes,
        st.closed_bytes as f64 / st.closed_samples as f64,
        (st.closed_bytes + 16 * st.closed_chunks) as f64 / st.closed_samples as f64,
    );
    // Per metric.
    let (mut cnt_b, mut cnt_n, mut g_b, mut g_n) = (0u64, 0u64, 0u64, 0u64);
    println!("{:<40} {:>12}", "metric", "bytes/sample");
    for (j, name) in METRICS.iter().enumerate() {
        let (mut b, mut n) = (0u64, 0u64);
        for row in &ids {
            // Stored chunks are per window: re-encode each window's samples to size them.
            let mut start = db.window_of(T0);
            while start < T0 + hours * HOUR_MS + INTERVAL_MS {
                let s = db.range(row[j], start, start + db.options().block_ms);
                if !s.is_empty() {
                    b += jdos_monitor::Chunk::encode(&s)?.data().len() as u64;
                    n += s.len() as u64;
                }
                start += db.options().block_ms;
            }
        }
        println!("{name:<40} {:>12.3}", b as f64 / n as f64);
        if name.ends_with("_total") {
            cnt_b += b;
            cnt_n += n;
        } else {
            g_b += b;
            g_n += n;
        }
    }
    println!(
        "counters: {:.3} bytes/sample; gauges: {:.3} bytes/sample",
        cnt_b as f64 / cnt_n as f64,
        g_b as f64 / g_n as f64
    );
    if let Some(path) = export {
        export_openmetrics(&db, path, &ids, hours)?;
        println!("exported OpenMetrics to {path}");
    }
    drop(batches);
    drop(db);

    // 2. Persisted ingest (block files written as windows close).
    let dir = std::env::temp_dir().join(format!("jdos-monitor-figures-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut db = Tsdb::open(&dir, Options::default())?;
    let (batches, _) = generate(&mut db, containers, hours, &all);
    let t = Instant::now();
    for b in &batches {
        db.append_batch(b)?;
    }
    db.seal_through(T0 + hours * HOUR_MS + INTERVAL_MS)?;
    let s = t.elapsed().as_secs_f64();
    let du = |d: &str| -> u64 {
        std::fs::read_dir(dir.join(d))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let (blocks, hourly, log) = (
        du("blocks"),
        du("hourly"),
        std::fs::metadata(dir.join("series.log"))?.len(),
    );
    let closed = db.stats().closed_samples as f64;
    println!(
        "persisted ingest: {total} samples in {s:.3} s = {:.0} samples/s; on disk: blocks {blocks} B = {:.3} bytes/sample, \
         hourly {hourly} B = {:.3} bytes/sample, series.log {log} B",
        total as f64 / s,
        blocks as f64 / closed,
        hourly as f64 / closed
    );
    drop(db);
    let t = Instant::now();
    let db = Tsdb::open(&dir, Options::default())?;
    println!(
        "reopen: {} series, {} closed chunks in {:.3} s",
        db.index().len(),
        db.stats().closed_chunks,
        t.elapsed().as_secs_f64()
    );
    drop(db);
    std::fs::remove_dir_all(&dir)?;

    // 3. Query: one group's day of cpu at 1-minute step over 200 containers.
    let mut db = Tsdb::in_memory(Options::default())?;
    // 2,000 containers in 10 groups: group g0 holds 200.
    let (batches, _) = generate(&mut db, 2000, 24, &[1]);
    for b in &batches {
        db.append_batch(b)?;
    }
    drop(batches);
    db.seal_through(T0 + 24 * HOUR_MS)?;
    let day_end = T0 + 24 * HOUR_MS + INTERVAL_MS;
    {
        // Single-thread decode speed over the selected series' closed chunks.
        let ids = db.select(&Selector::metric("container_cpu_millicores").eq("group", "g0"));
        let (run0, wait0) = thread_sched();
        let t = Instant::now();
        let mut n = 0u64;
        let mut acc = 0.0;
        for &id in &ids {
            db.for_each_sample(id, T0, day_end, |s| {
                n += 1;
                acc += s.v;
            });
        }
        let s = t.elapsed().as_secs_f64();
        let (run1, wait1) = thread_sched();
        println!(
            "decode: {n} samples in {:.2} ms wall = {:.1} ns/sample; CPU {:.1} ns/sample, waited {:.2} ms (single thread; checksum {acc})",
            s * 1e3,
            s * 1e9 / n as f64,
            (run1 - run0) as f64 / n as f64,
            (wait1 - wait0) as f64 / 1e6
        );
    }
    let sel = Selector::metric("container_cpu_millicores").eq("group", "g0");
    println!(
        "query: {} series selected out of {}",
        db.select(&sel).len(),
        db.index().len()
    );
    {
        // The same alignment work on one thread, timed with precise per-thread CPU.
        let ids = db.select(&sel);
        let (run0, wait0) = thread_sched();
        let t = Instant::now();
        let mut cells = 0usize;
        for &id in &ids {
            cells += db
                .bucketize(id, T0, day_end, 60_000, BucketFn::Mean)?
                .iter()
                .flatten()
                .count();
        }
        let (run1, wait1) = thread_sched();
        println!(
            "align 200 series x 1 day to 1-min means on one thread: {cells} cells, wall {:.2} ms, CPU {:.2} ms, waited {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3,
            (run1 - run0) as f64 / 1e6,
            (wait1 - wait0) as f64 / 1e6
        );
    }
    for (label, step, bucket, agg) in [
        (
            "sum of 1-min means",
            60_000,
            BucketFn::Mean,
            Aggregation::Sum,
        ),
        ("p95 of 1-min max", 60_000, BucketFn::Max, Aggregation::P95),
        (
            "avg of 1-min last",
            60_000,
            BucketFn::Last,
            Aggregation::Avg,
        ),
        (
            "max of hourly max (downsampled)",
            HOUR_MS,
            BucketFn::Max,
            Aggregation::Max,
        ),
    ] {
        let q = RangeQuery {
            selector: sel.clone(),
            start: T0,
            end: day_end,
            step,
            bucket,
            aggregation: agg,
        };
        let mut times = Vec::new();
        let mut points = 0;
        let cpu0 = process_cpu_ms();
        for _ in 0..15 {
            let t = Instant::now();
            points = db.query(&q)?.len();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let cpu = (process_cpu_ms() - cpu0) / times.len() as f64;
        times.sort_by(f64::total_cmp);
        println!(
            "query {label}: {points} points, wall median {:.2} ms, min {:.2} ms, max {:.2} ms; CPU {cpu:.1} ms per query (all threads)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}

/// Writes the samples as OpenMetrics text (timestamps in seconds with ms precision).
fn export_openmetrics(
    db: &Tsdb,
    path: &str,
    ids: &[Vec<SeriesId>],
    hours: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (j, name) in METRICS.iter().enumerate() {
        writeln!(f, "# TYPE {name} gauge")?;
        for row in ids {
            let id = row[j];
            let labels = db.index().labels(id).expect("known id");
            let l: Vec<String> = labels
                .pairs()
                .iter()
                .filter(|(k, _)| k != jdos_monitor::METRIC_NAME)
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            for s in db.range(id, T0, T0 + hours * HOUR_MS + INTERVAL_MS) {
                writeln!(
                    f,
                    "{name}{{{}}} {} {}.{:03}",
                    l.join(","),
                    s.v,
                    s.t / 1000,
                    s.t % 1000
                )?;
            }
        }
    }
    writeln!(f, "# EOF")?;
    Ok(())
}
