//! Behaviour of the time-series store: codec round trips, queries against a naive
//! reference, persistence, retention and downsampling.

use std::collections::BTreeMap;

use jdos_monitor::query::aggregate;
use jdos_monitor::{
    Aggregation, BucketFn, Chunk, Labels, Options, RangeQuery, Sample, Selector, SeriesId, Tsdb,
    TsdbError, HOUR_MS,
};
use proptest::prelude::*;

const MIN: i64 = 60_000;

/// Small deterministic generator (splitmix64) so the fixtures need no rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        (-1000i64..1000).prop_map(|x| x as f64),
        any::<f64>(),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        (0u32..100).prop_map(|x| f64::from(x) * 0.1),
    ]
}

fn series_strategy() -> impl Strategy<Value = Vec<Sample>> {
    let delta = prop_oneof![
        Just(10_000i64),
        1i64..70,
        1i64..300,
        1i64..5000,
        1i64..i64::MAX / 4096,
    ];
    (
        any::<i64>(),
        prop::collection::vec((delta, value_strategy()), 0..400),
    )
        .prop_map(|(t0, steps)| {
            let mut t = t0 / 2;
            steps
                .into_iter()
                .map_while(|(d, v)| {
                    t = t.checked_add(d)?;
                    Some(Sample::new(t, v))
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any strictly increasing timestamps and any f64 bit patterns decode exactly.
    #[test]
    fn chunk_round_trips_bit_exactly(samples in series_strategy()) {
        let chunk = Chunk::encode(&samples).unwrap();
        let back = chunk.decode();
        prop_assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            prop_assert!(a.same_bits(b), "{:?} != {:?}", a, b);
        }
    }
}

proptest! {
    // Each case builds a 7-hour fixture and runs 300 queries: few cases suffice.
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Aggregated queries agree with a naive computation over the accepted raw samples.
    #[test]
    fn query_matches_naive_reference(seed in any::<u64>()) {
        check_queries_against_reference(seed);
    }
}

fn labels(i: usize) -> Labels {
    Labels::new(
        "container_cpu",
        [
            ("app", ["shop", "pay"][i % 2].to_string()),
            ("group", format!("g{}", i % 3)),
            ("container", format!("c{i}")),
        ],
    )
    .unwrap()
}

/// Builds a db with 12 series over ~7 h of irregular samples (some NaN, some out of order),
/// returning the accepted samples per series.
fn fixture(db: &mut Tsdb, seed: u64) -> BTreeMap<SeriesId, Vec<Sample>> {
    let mut rng = Rng(seed);
    let mut accepted: BTreeMap<SeriesId, Vec<Sample>> = BTreeMap::new();
    let ids: Vec<SeriesId> = (0..12).map(|i| db.series(&labels(i))).collect();
    let mut t = 0i64;
    while t < 7 * HOUR_MS {
        let mut batch = Vec::new();
        for &id in &ids {
            if rng.below(10) == 0 {
                continue; // missed scrape
            }
            let jitter = rng.below(3000) as i64;
            let v = if rng.below(50) == 0 {
                f64::NAN
            } else {
                (rng.unit() * 100.0).round() / 4.0
            };
            batch.push((id, Sample::new(t + jitter, v)));
            if rng.below(40) == 0 {
                batch.push((id, Sample::new(t + jitter - 1, 1.0))); // out of order: rejected
            }
        }
        // Reference: replay the same acceptance rule (strictly increasing per series).
        for &(id, s) in &batch {
            let v = accepted.entry(id).or_default();
            if v.last().is_none_or(|l| s.t > l.t) {
                v.push(s);
            }
        }
        let sum = db.append_batch(&batch).unwrap();
        assert_eq!(sum.too_old, 0);
        assert_eq!(sum.unknown_series, 0);
        t += 10_000 + rng.below(20_000) as i64;
    }
    accepted
}

fn naive_rate(samples: &[Sample], start: i64, end: i64, step: i64) -> Vec<Option<f64>> {
    let n = ((end - start - 1) / step + 1) as usize;
    let s: Vec<&Sample> = samples.iter().filter(|s| !s.v.is_nan()).collect();
    (0..n)
        .map(|k| {
            let lo = start + k as i64 * step;
            let (mut inc, mut dt) = (0.0, 0i64);
            for w in s.windows(2) {
                let (p, c) = (w[0], w[1]);
                if c.t >= lo && c.t < lo + step && c.t < end && p.t >= start - step {
                    inc += if c.v >= p.v { c.v - p.v } else { c.v };
                    dt += c.t - p.t;
                }
            }
            (dt > 0).then(|| inc * 1000.0 / dt as f64)
        })
        .collect()
}

fn naive_bucket(
    samples: &[Sample],
    start: i64,
    end: i64,
    step: i64,
    f: BucketFn,
) -> Vec<Option<f64>> {
    if f == BucketFn::Rate {
        return naive_rate(samples, start, end, step);
    }
    let n = ((end - start - 1) / step + 1) as usize;
    (0..n)
        .map(|k| {
            let lo = start + k as i64 * step;
            let vs: Vec<f64> = samples
                .iter()
                .filter(|s| s.t >= lo && s.t < lo + step && s.t < end && !s.v.is_nan())
                .map(|s| s.v)
                .collect();
            if vs.is_empty() {
                return None;
            }
            Some(match f {
                BucketFn::Last => *vs.last().unwrap(),
                BucketFn::Mean => vs.iter().sum::<f64>() / vs.len() as f64,
                BucketFn::Max => vs.iter().cloned().fold(f64::MIN, f64::max),
                BucketFn::Min => vs.iter().cloned().fold(f64::MAX, f64::min),
                BucketFn::Rate => unreachable!("handled by naive_rate"),
            })
        })
        .collect()
}

fn naive_agg(agg: Aggregation, vals: &[f64]) -> f64 {
    let mut v = vals.to_vec();
    v.sort_by(f64::total_cmp);
    match agg {
        Aggregation::Sum => v.iter().sum(),
        Aggregation::Avg => v.iter().sum::<f64>() / v.len() as f64,
        Aggregation::Max => v[v.len() - 1],
        Aggregation::Min => v[0],
        Aggregation::P95 => v[((v.len() as f64 * 0.95).ceil() as usize).max(1) - 1],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check_queries_against_reference(seed: u64) {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let accepted = fixture(&mut db, seed);
    // Windows [0,2h), [2h,4h) are closed, [4h,6h) closed too, [6h,8h) open.
    assert_eq!(db.closed_until(), 6 * HOUR_MS);
    let selectors = [
        Selector::metric("container_cpu").eq("app", "shop"),
        Selector::metric("container_cpu")
            .eq("group", "g1")
            .not_eq("container", "c4"),
        Selector::metric("container_cpu"),
    ];
    let ranges = [
        (0, 7 * HOUR_MS, MIN),
        (3 * HOUR_MS + 17, 5 * HOUR_MS, 5 * MIN),
        (0, 7 * HOUR_MS, HOUR_MS),
        (HOUR_MS, 7 * HOUR_MS, 2 * HOUR_MS),
    ];
    for sel in &selectors {
        let ids = db.select(sel);
        let expect_ids: Vec<SeriesId> = (0..12u32)
            .filter(|&i| sel.matches(&labels(i as usize)))
            .collect();
        assert_eq!(ids, expect_ids);
        for &(start, end, step) in &ranges {
            for bucket in [
                BucketFn::Last,
                BucketFn::Mean,
                BucketFn::Max,
                BucketFn::Min,
                BucketFn::Rate,
            ] {
                let rows: Vec<Vec<Option<f64>>> = ids
                    .iter()
                    .map(|id| naive_bucket(&accepted[id], start, end, step, bucket))
                    .collect();
                for aggregation in [
                    Aggregation::Sum,
                    Aggregation::Avg,
                    Aggregation::Max,
                    Aggregation::Min,
                    Aggregation::P95,
                ] {
                    let got = db
                        .query(&RangeQuery {
                            selector: sel.clone(),
                            start,
                            end,
                            step,
                            bucket,
                            aggregation,
                        })
                        .unwrap();
                    let mut expect = Vec::new();
                    for k in 0..rows[0].len() {
                        let vals: Vec<f64> = rows.iter().filter_map(|r| r[k]).collect();
                        if !vals.is_empty() {
                            expect.push((
                                start + k as i64 * step,
                                naive_agg(aggregation, &vals),
                                vals.len(),
                            ));
                        }
                    }
                    assert_eq!(
                        got.len(),
                        expect.len(),
                        "{bucket:?} {aggregation:?} step {step}"
                    );
                    for (g, e) in got.iter().zip(&expect) {
                        assert_eq!((g.t, g.series as usize), (e.0, e.2));
                        assert!(
                            close(g.value, e.1),
                            "{bucket:?} {aggregation:?} at {}: {} vs {}",
                            g.t,
                            g.value,
                            e.1
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn raw_range_returns_exactly_the_accepted_samples() {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let accepted = fixture(&mut db, 7);
    for (&id, samples) in &accepted {
        let got = db.range(id, i64::MIN, i64::MAX);
        assert_eq!(got.len(), samples.len());
        assert!(got.iter().zip(samples).all(|(a, b)| a.same_bits(b)));
        let mid: Vec<Sample> = samples
            .iter()
            .copied()
            .filter(|s| s.t >= HOUR_MS && s.t < 5 * HOUR_MS)
            .collect();
        let got = db.range(id, HOUR_MS, 5 * HOUR_MS);
        assert!(got.len() == mid.len() && got.iter().zip(&mid).all(|(a, b)| a.same_bits(b)));
    }
}

#[test]
fn single_appends_report_out_of_order_too_old_and_unknown() {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let id = db.series(&labels(0));
    db.append(id, 1000, 1.0).unwrap();
    assert!(matches!(
        db.append(id, 1000, 2.0),
        Err(TsdbError::OutOfOrder { last: 1000, .. })
    ));
    assert!(matches!(
        db.append(id + 1, 2000, 2.0),
        Err(TsdbError::UnknownSeries(_))
    ));
    // Closing [0, 2h) needs a sample at 2h + grace.
    db.append(id, 2 * HOUR_MS + 10 * MIN, 3.0).unwrap();
    assert_eq!(db.closed_until(), 2 * HOUR_MS);
    assert!(matches!(
        db.append(id, HOUR_MS, 2.0),
        Err(TsdbError::TooOld { .. })
    ));
    // Within the grace period, the previous window still accepts late samples.
    let other = db.series(&labels(1));
    db.append(other, 4 * HOUR_MS - 1, 1.0).unwrap();
    db.append(other, 4 * HOUR_MS + 5 * MIN, 1.0).unwrap();
    db.append(id, 4 * HOUR_MS - 5, 4.0).unwrap();
    assert_eq!(db.range(id, 0, i64::MAX).len(), 3);
}

#[test]
fn downsampling_keeps_hourly_max_and_mean() {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let accepted = fixture(&mut db, 11);
    for (&id, samples) in &accepted {
        let pts = db.hourly_points(id, 0, 6 * HOUR_MS);
        assert_eq!(pts.len(), 6, "closed windows cover 6 hours");
        for p in pts {
            let vs: Vec<f64> = samples
                .iter()
                .filter(|s| s.t >= p.hour && s.t < p.hour + HOUR_MS && !s.v.is_nan())
                .map(|s| s.v)
                .collect();
            assert_eq!(p.count as usize, vs.len());
            assert_eq!(p.max, vs.iter().cloned().fold(f64::MIN, f64::max));
            assert!(close(p.mean(), vs.iter().sum::<f64>() / vs.len() as f64));
        }
        // The open window is not downsampled yet.
        assert!(db.hourly_points(id, 6 * HOUR_MS, 8 * HOUR_MS).is_empty());
    }
}

fn small_retention() -> Options {
    Options {
        raw_retention_ms: 4 * HOUR_MS,
        hourly_retention_ms: 6 * HOUR_MS,
        ..Options::default()
    }
}

#[test]
fn retention_drops_raw_then_hourly_and_reports_use_hourly_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Tsdb::open(dir.path(), small_retention()).unwrap();
    let accepted = fixture(&mut db, 3);
    let q = RangeQuery {
        selector: Selector::metric("container_cpu"),
        start: 0,
        end: 2 * HOUR_MS,
        step: HOUR_MS,
        bucket: BucketFn::Max,
        aggregation: Aggregation::Max,
    };
    let before = db.query(&q).unwrap();
    assert_eq!(before.len(), 2);
    // now = 6h: raw blocks ending ≤ 2h go ([0,2h)); hourly ending ≤ 0 none.
    let rep = db.apply_retention(6 * HOUR_MS).unwrap();
    assert_eq!((rep.raw_blocks, rep.hourly_blocks), (1, 0));
    assert!(!dir.path().join("blocks/0.blk").exists());
    assert!(dir.path().join("hourly/0.hrl").exists());
    let id = db.select(&Selector::metric("container_cpu"))[0];
    assert!(db.range(id, 0, 2 * HOUR_MS).is_empty());
    assert_eq!(
        db.range(id, 2 * HOUR_MS, 4 * HOUR_MS).len(),
        accepted[&id]
            .iter()
            .filter(|s| (2 * HOUR_MS..4 * HOUR_MS).contains(&s.t))
            .count()
    );
    // The hourly report over the dropped range still answers, identically.
    assert_eq!(db.query(&q).unwrap(), before);
    // now = 8h10m: hourly ending ≤ 2h10m go too.
    let rep = db.apply_retention(8 * HOUR_MS + 10 * MIN).unwrap();
    assert_eq!((rep.raw_blocks, rep.hourly_blocks), (1, 1));
    assert!(db.query(&q).unwrap().is_empty());
    drop(db);
    let db = Tsdb::open(dir.path(), small_retention()).unwrap();
    assert_eq!(db.stats().closed_windows, 1);
    assert!(db.hourly_points(id, 0, 2 * HOUR_MS).is_empty());
}

fn no_wal() -> Options {
    Options {
        wal: false,
        ..Options::default()
    }
}

#[test]
fn without_wal_reopen_restores_closed_blocks_and_loses_only_the_unsnapshotted_head() {
    let dir = tempfile::tempdir().unwrap();
    let accepted;
    {
        let mut db = Tsdb::open(dir.path(), no_wal()).unwrap();
        accepted = fixture(&mut db, 5);
        // Dropped without close(): simulates a crash after the last closed window.
    }
    let db = Tsdb::open(dir.path(), no_wal()).unwrap();
    assert_eq!(db.closed_until(), 6 * HOUR_MS);
    assert_eq!(db.index().len(), 12);
    for (&id, samples) in &accepted {
        assert_eq!(db.index().labels(id), Some(&labels(id as usize)));
        let closed: Vec<Sample> = samples
            .iter()
            .copied()
            .filter(|s| s.t < 6 * HOUR_MS)
            .collect();
        let got = db.range(id, i64::MIN, i64::MAX);
        assert_eq!(
            got.len(),
            closed.len(),
            "head samples are lost without WAL or snapshot"
        );
        assert!(got.iter().zip(&closed).all(|(a, b)| a.same_bits(b)));
    }
}

#[test]
fn with_wal_a_crash_loses_nothing_and_a_torn_wal_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let accepted;
    {
        let mut db = Tsdb::open(dir.path(), Options::default()).unwrap();
        accepted = fixture(&mut db, 5);
        // A series created after the last window closed lives only in the WAL.
        let late = db.series(&labels(50));
        db.append(late, 7 * HOUR_MS + 5, 2.5).unwrap();
        // Dropped without close(): a process crash.
    }
    let wal = dir.path().join("head.wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        for (&id, samples) in &accepted {
            let got = db.range(id, i64::MIN, i64::MAX);
            assert_eq!(got.len(), samples.len());
            assert!(got.iter().zip(samples).all(|(a, b)| a.same_bits(b)));
        }
        assert_eq!(db.index().labels(12), Some(&labels(50)));
        assert_eq!(
            db.range(12, 0, i64::MAX),
            vec![Sample::new(7 * HOUR_MS + 5, 2.5)]
        );
    }
    // Garbage after the last frame (a torn write) is cut; the intact frames still replay.
    let mut data = std::fs::read(&wal).unwrap();
    let good = data.len();
    data.extend_from_slice(&[200, 1, 0, 0, 2, 9, 9]);
    std::fs::write(&wal, &data).unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(std::fs::metadata(&wal).unwrap().len() as usize, good);
    assert_eq!(db.range(12, 0, i64::MAX).len(), 1);
    // Closing the next window snapshots the head and empties the WAL.
    let mut db = db;
    db.append(12, 8 * HOUR_MS + 11 * MIN, 3.0).unwrap();
    assert_eq!(db.closed_until(), 8 * HOUR_MS);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    drop(db);
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.range(12, 0, i64::MAX).len(), 2);
}

#[test]
fn close_snapshots_the_head_and_appends_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let accepted = fixture(&mut db, 9);
    let before = db.stats();
    db.close().unwrap();
    let mut db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let after = db.stats();
    assert_eq!(
        (after.head_samples, after.closed_samples),
        (before.head_samples, before.closed_samples)
    );
    for (&id, samples) in &accepted {
        let got = db.range(id, i64::MIN, i64::MAX);
        assert!(got.len() == samples.len() && got.iter().zip(samples).all(|(a, b)| a.same_bits(b)));
    }
    // New series and samples keep working, and an older-than-closed sample is refused.
    let new = db.series(&labels(99));
    assert_eq!(new, 12);
    db.append(new, 7 * HOUR_MS + 1, 1.0).unwrap();
    assert!(matches!(
        db.append(0, HOUR_MS, 1.0),
        Err(TsdbError::TooOld { .. })
    ));
    db.seal_through(8 * HOUR_MS).unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.index().labels(12), Some(&labels(99)));
    assert_eq!(
        db.range(12, 0, i64::MAX),
        vec![Sample::new(7 * HOUR_MS + 1, 1.0)]
    );
}

#[test]
fn damaged_block_is_reported_and_torn_series_log_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = Tsdb::open(dir.path(), Options::default()).unwrap();
        fixture(&mut db, 1);
    }
    // A torn append at the end of the series log is cut off.
    let log = dir.path().join("series.log");
    let mut data = std::fs::read(&log).unwrap();
    let good_len = data.len();
    data.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&log, &data).unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.index().len(), 12);
    drop(db);
    assert_eq!(std::fs::metadata(&log).unwrap().len() as usize, good_len);
    // A flipped byte in a block is detected and names the file.
    let blk = dir
        .path()
        .join("blocks")
        .join(format!("{}.blk", 2 * HOUR_MS));
    let mut data = std::fs::read(&blk).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&blk, &data).unwrap();
    match Tsdb::open(dir.path(), Options::default()) {
        Err(TsdbError::Corrupt { path, reason }) => {
            assert_eq!(path, blk);
            assert_eq!(reason, "checksum mismatch");
        }
        other => panic!("expected corrupt error, got {other:?}"),
    }
}

#[test]
fn invalid_options_are_refused() {
    let bad = Options {
        block_ms: 90 * MIN,
        ..Options::default()
    };
    assert!(matches!(
        Tsdb::in_memory(bad),
        Err(TsdbError::InvalidOptions(_))
    ));
    let bad = Options {
        hourly_retention_ms: HOUR_MS,
        ..Options::default()
    };
    assert!(matches!(
        Tsdb::in_memory(bad),
        Err(TsdbError::InvalidOptions(_))
    ));
}

#[test]
fn aggregate_helper_matches_naive() {
    let mut rng = Rng(42);
    for n in 1..60 {
        let vals: Vec<f64> = (0..n).map(|_| (rng.unit() * 1000.0).round()).collect();
        for agg in [
            Aggregation::Sum,
            Aggregation::Avg,
            Aggregation::Max,
            Aggregation::Min,
            Aggregation::P95,
        ] {
            let mut v = vals.clone();
            assert!(close(
                aggregate(agg, &mut v).unwrap(),
                naive_agg(agg, &vals)
            ));
        }
    }
}

#[test]
fn rate_of_a_counter_with_a_reset() {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let id = db.series(&labels(0));
    // +100 per 10 s, then a restart drops the counter to 50 at t = 60 s, then +100 per 10 s.
    let vals = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 50.0, 150.0, 250.0];
    let batch: Vec<(SeriesId, Sample)> = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| (id, Sample::new(i as i64 * 10_000, v)))
        .collect();
    db.append_batch(&batch).unwrap();
    let r = db.bucketize(id, 0, 90_000, 30_000, BucketFn::Rate).unwrap();
    // Bucket 0 holds samples at 0, 10, 20 s: pairs ending at 10 and 20 s → 200 / 20 s.
    // Bucket 1: pairs ending at 30, 40, 50 s → 300 / 30 s. Bucket 2: the reset pair counts
    // 50, then 100 + 100 → 250 / 30 s.
    assert_eq!(r, vec![Some(10.0), Some(10.0), Some(250.0 / 30.0)]);
    // With a look-back sample before the range start, the first pair is included.
    let r = db
        .bucketize(id, 30_000, 60_000, 30_000, BucketFn::Rate)
        .unwrap();
    assert_eq!(r, vec![Some(10.0)]);
}

#[test]
fn a_full_wal_triggers_a_head_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        wal_max_bytes: 4096,
        ..Options::default()
    };
    let wal = dir.path().join("head.wal");
    let mut db = Tsdb::open(dir.path(), opts.clone()).unwrap();
    let id = db.series(&labels(0));
    let mut max_wal = 0;
    for i in 0..1000i64 {
        db.append(id, i * 1000, i as f64).unwrap();
        max_wal = max_wal.max(std::fs::metadata(&wal).unwrap().len());
    }
    // One sample per frame is 4 + 1 + 4 + 20 + 8 = 37 bytes; the WAL never passes the cap by
    // more than one frame.
    assert!(max_wal <= 4096 + 37, "wal reached {max_wal}");
    assert!(dir.path().join("head.snap").exists());
    drop(db);
    let db = Tsdb::open(dir.path(), opts).unwrap();
    let got = db.range(id, 0, i64::MAX);
    assert_eq!(got.len(), 1000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, s)| s.t == i as i64 * 1000 && s.v == i as f64));
}

#[test]
fn query_by_groups_series_by_label_and_latest_tracks_newest_sample() {
    let mut db = Tsdb::in_memory(Options::default()).unwrap();
    let mk = |g: &str, i: &str| Labels::new("cpu", [("group", g), ("instance", i)]).unwrap();
    let a1 = db.series(&mk("web", "a1"));
    let a2 = db.series(&mk("web", "a2"));
    let b1 = db.series(&mk("db", "b1"));
    let other = db.series(&Labels::new("cpu", [("instance", "x")]).unwrap());
    for k in 0..6i64 {
        let t = k * 10_000;
        db.append_batch(&[
            (a1, Sample::new(t, 1.0)),
            (a2, Sample::new(t, 3.0)),
            (b1, Sample::new(t, 10.0 + k as f64)),
            (other, Sample::new(t, 100.0)),
        ])
        .unwrap();
    }
    let q = RangeQuery {
        selector: Selector::metric("cpu"),
        start: 0,
        end: 60_000,
        step: 30_000,
        bucket: BucketFn::Max,
        aggregation: Aggregation::Sum,
    };
    let g = db.query_by(&q, Some("group")).unwrap();
    let names: Vec<Option<&str>> = g.iter().map(|g| g.group.as_deref()).collect();
    assert_eq!(names, vec![None, Some("db"), Some("web")]);
    assert_eq!(g[2].series, 2);
    assert_eq!(
        g[2].points.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![4.0, 4.0]
    );
    assert_eq!(
        g[1].points.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![12.0, 15.0]
    );
    let all = db.query_by(&q, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].series, 4);
    assert_eq!(all[0].points, db.query(&q).unwrap());
    let none = db
        .query_by(
            &RangeQuery {
                selector: Selector::metric("nope"),
                ..q.clone()
            },
            None,
        )
        .unwrap();
    assert!(none.is_empty());

    assert_eq!(db.latest(b1), Some(Sample::new(50_000, 15.0)));
    let fresh = db.series(&mk("db", "b2"));
    assert_eq!(db.latest(fresh), None);
}

#[test]
fn latest_survives_reopen_from_closed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default();
    {
        let mut db = Tsdb::open(dir.path(), opts.clone()).unwrap();
        let id = db.series(&Labels::new("m", [("a", "1")]).unwrap());
        db.append(id, 1_000, 1.0).unwrap();
        db.append(id, 2_000, 2.0).unwrap();
        db.seal_through(2 * HOUR_MS).unwrap();
        db.close().unwrap();
    }
    let db = Tsdb::open(dir.path(), opts).unwrap();
    assert_eq!(db.latest(0), Some(Sample::new(2_000, 2.0)));
}
