//! Divan benchmarks of the monitor store: chunk codec, batched ingest, group-day query.
//!
//! `cargo bench -p jdos-monitor --bench tsdb`

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use jdos_monitor::synth::{ContainerSim, INTERVAL_MS, METRICS};
use jdos_monitor::{
    Aggregation, BucketFn, Chunk, Labels, Options, RangeQuery, Sample, Selector, SeriesId, Tsdb,
    HOUR_MS,
};

fn main() {
    divan::main();
}

const T0: i64 = 1_794_096_000_000;

/// Two hours (720 samples) of one container's readouts for metric `m`.
fn window(m: usize) -> Vec<Sample> {
    let mut sim = ContainerSim::new(7);
    (1..=720)
        .map(|k| {
            let t = T0 + k * INTERVAL_MS;
            Sample::new(t, sim.tick(t)[m])
        })
        .collect()
}

/// Metric 1 is cpu millicores (gauge), 7 network rx bytes (noisy counter).
#[divan::bench(args = [1, 7])]
fn encode_720(bencher: Bencher, m: usize) {
    let s = window(m);
    bencher
        .counter(ItemsCount::new(s.len()))
        .bench(|| Chunk::encode(black_box(&s)).unwrap());
}

#[divan::bench(args = [1, 7])]
fn decode_720(bencher: Bencher, m: usize) {
    let c = Chunk::encode(&window(m)).unwrap();
    bencher.counter(ItemsCount::new(720usize)).bench(|| {
        let mut acc = 0.0;
        for s in black_box(&c).iter() {
            acc += s.v;
        }
        acc
    });
}

fn labels(metric: &str, i: usize) -> Labels {
    Labels::new(
        metric,
        [
            ("app", format!("app{}", i % 7)),
            ("group", format!("g{}", i % 10)),
            ("container", format!("c{i:05}")),
        ],
    )
    .unwrap()
}

/// One hour of 100 containers × 24 series, pushed as one batch per 10-second tick.
#[divan::bench(sample_count = 10)]
fn ingest_hour_100_containers(bencher: Bencher) {
    let containers = 100;
    let ticks = HOUR_MS / INTERVAL_MS;
    let mut sims: Vec<ContainerSim> = (0..containers)
        .map(|i| ContainerSim::new(i as u64))
        .collect();
    let mut batches = Vec::new();
    for k in 1..=ticks {
        let t = T0 + k * INTERVAL_MS;
        let mut b = Vec::new();
        for (i, sim) in sims.iter_mut().enumerate() {
            for (j, v) in sim.tick(t).into_iter().enumerate() {
                b.push(((i * METRICS.len() + j) as SeriesId, Sample::new(t, v)));
            }
        }
        batches.push(b);
    }
    let total: usize = batches.iter().map(Vec::len).sum();
    bencher
        .counter(ItemsCount::new(total))
        .with_inputs(|| {
            let mut db = Tsdb::in_memory(Options::default()).unwrap();
            for i in 0..containers {
                for m in METRICS {
                    db.series(&labels(m, i));
                }
            }
            db
        })
        .bench_local_values(|mut db| {
            for b in &batches {
                db.append_batch(b).unwrap();
            }
            db
        });
}

/// Sum of 1-minute means of cpu over one group's 200 containers for a day.
#[divan::bench(sample_count = 10)]
fn query_group_day_1min(bencher: Bencher) {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let ids: Vec<SeriesId> = (0..2000)
        .map(|i| db.series(&labels("container_cpu_millicores", i)))
        .collect();
    let mut sims: Vec<ContainerSim> = (0..2000).map(|i| ContainerSim::new(i as u64)).collect();
    for k in 1..=(24 * HOUR_MS / INTERVAL_MS) {
        let t = T0 + k * INTERVAL_MS;
        let b: Vec<(SeriesId, Sample)> = sims
            .iter_mut()
            .zip(&ids)
            .map(|(s, &id)| (id, Sample::new(t, s.tick(t)[1])))
            .collect();
        db.append_batch(&b).unwrap();
    }
    let q = RangeQuery {
        selector: Selector::metric("container_cpu_millicores").eq("group", "g0"),
        start: T0,
        end: T0 + 24 * HOUR_MS + INTERVAL_MS,
        step: 60_000,
        bucket: BucketFn::Mean,
        aggregation: Aggregation::Sum,
    };
    bencher.bench(|| db.query(black_box(&q)).unwrap());
}
