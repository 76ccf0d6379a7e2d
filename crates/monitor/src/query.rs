//! Range queries: per-series step alignment and aggregation over a label selector.
//!
//! Step alignment: the range `[start, end)` is cut into buckets `[start + k·step,
//! start + (k+1)·step)`; a bucket is labelled by its start. Per series, the samples of a
//! bucket are reduced by a [`BucketFn`] (last value, mean, max, min, or counter rate); NaN samples
//! (staleness markers) are ignored; a bucket without samples is `None`, it is *not*
//! filled from the previous bucket. Across series, each bucket's values are combined by an
//! [`Aggregation`] over the series that have a value there.
//!
//! When `step` is a whole number of hours and `start` is hour-aligned, closed windows are
//! read from the hourly downsample (count/sum/min/max/last per hour) instead of raw chunks,
//! so month-long reports stay cheap after raw retention has dropped the raw data. Open
//! windows are always read raw. Results are identical up to floating-point summation order.

use crate::downsample::{HourlyPoint, HOUR_MS};
use crate::labels::{Selector, SeriesId};
use crate::tsdb::Tsdb;

/// How one series' samples inside a bucket become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BucketFn {
    /// The latest sample of the bucket.
    Last,
    /// Arithmetic mean of the bucket's samples.
    Mean,
    /// Largest sample.
    Max,
    /// Smallest sample.
    Min,
    /// Per-second increase of a counter: for each pair of consecutive samples whose later
    /// sample falls in the bucket, the increase (the later value itself after a reset, i.e.
    /// when the value went down) summed and divided by the summed time between them. The
    /// pair entering a bucket uses the previous sample if it is at most one step before the
    /// range start. Always read from raw data (hourly points cannot give it).
    Rate,
}

/// How the series' bucket values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Aggregation {
    /// Sum over series.
    Sum,
    /// Mean over series.
    Avg,
    /// Largest.
    Max,
    /// Smallest.
    Min,
    /// 95th percentile, nearest rank: the ⌈0.95·n⌉-th smallest value.
    P95,
}

/// An aggregated range query.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangeQuery {
    /// Which series.
    pub selector: Selector,
    /// Inclusive start, ms.
    pub start: i64,
    /// Exclusive end, ms.
    pub end: i64,
    /// Bucket width, ms.
    pub step: i64,
    /// Per-series reduction inside a bucket.
    pub bucket: BucketFn,
    /// Cross-series combination.
    pub aggregation: Aggregation,
}

/// One output point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Bucket start, ms.
    pub t: i64,
    /// Aggregated value.
    pub value: f64,
    /// Number of series that had a value in the bucket.
    pub series: u32,
}

/// A query that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `end` is not after `start`.
    #[error("query range is empty: end {end} must be after start {start}")]
    EmptyRange {
        /// Start.
        start: i64,
        /// End.
        end: i64,
    },
    /// The step is not positive.
    #[error("step must be positive, got {0}")]
    BadStep(i64),
    /// Too many buckets; use a larger step or a shorter range.
    #[error("{0} buckets requested, at most {MAX_BUCKETS} allowed: use a larger step")]
    TooManyBuckets(i64),
}

/// Upper bound on buckets per query.
pub const MAX_BUCKETS: i64 = 100_000;

#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u32,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        last: f64::NAN,
    };

    #[inline]
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    fn merge(&mut self, p: &HourlyPoint) {
        self.count += p.count;
        self.sum += p.sum;
        self.min = self.min.min(p.min);
        self.max = self.max.max(p.max);
        self.last = p.last;
    }

    fn value(&self, f: BucketFn) -> Option<f64> {
        (self.count > 0).then(|| match f {
            BucketFn::Last => self.last,
            BucketFn::Mean => self.sum / f64::from(self.count),
            BucketFn::Max => self.max,
            BucketFn::Min => self.min,
            // Rate buckets are computed by `rate_buckets`, never through `Acc`.
            BucketFn::Rate => f64::NAN,
        })
    }
}

fn check(start: i64, end: i64, step: i64) -> Result<usize, QueryError> {
    if end <= start {
        return Err(QueryError::EmptyRange { start, end });
    }
    if step <= 0 {
        return Err(QueryError::BadStep(step));
    }
    // i128: the span of two arbitrary i64 timestamps overflows i64.
    let n = (i128::from(end) - i128::from(start) - 1) / i128::from(step) + 1;
    if n > i128::from(MAX_BUCKETS) {
        return Err(QueryError::TooManyBuckets(
            n.min(i128::from(i64::MAX)) as i64
        ));
    }
    Ok(n as usize)
}

/// Bucket index of `t ≥ start`. The true difference fits in u64 even when `t - start`
/// overflows i64, and wrapping subtraction reinterpreted as u64 yields exactly it.
#[inline]
fn bucket_of(t: i64, start: i64, step: i64) -> usize {
    (t.wrapping_sub(start) as u64 / step as u64) as usize
}

impl Tsdb {
    /// Series `id` aligned to `step` buckets over `[start, end)` (see the module docs).
    pub fn bucketize(
        &self,
        id: SeriesId,
        start: i64,
        end: i64,
        step: i64,
        f: BucketFn,
    ) -> Result<Vec<Option<f64>>, QueryError> {
        let n = check(start, end, step)?;
        Ok(self.bucketize_unchecked(id, start, end, step, n, f))
    }

    fn bucketize_unchecked(
        &self,
        id: SeriesId,
        start: i64,
        end: i64,
        step: i64,
        n: usize,
        f: BucketFn,
    ) -> Vec<Option<f64>> {
        if f == BucketFn::Rate {
            return self.rate_buckets(id, start, end, step, n);
        }
        let mut accs = vec![Acc::EMPTY; n];
        let mut raw_from = start;
        if step % HOUR_MS == 0 && start.rem_euclid(HOUR_MS) == 0 {
            // Closed windows from the hourly downsample, the rest raw.
            let until = self.closed_until.clamp(start, end);
            self.for_each_hourly(id, start, until, |p| {
                accs[bucket_of(p.hour, start, step)].merge(p);
            });
            raw_from = until;
        }
        // Samples arrive in time order: divide only when a bucket boundary is crossed.
        let (mut k, mut k_end) = (0usize, i64::MIN);
        self.for_each_sample(id, raw_from, end, |s| {
            if s.t >= k_end {
                k = bucket_of(s.t, start, step);
                k_end = start.saturating_add((k as i64 + 1).saturating_mul(step));
            }
            if !s.v.is_nan() {
                accs[k].add(s.v);
            }
        });
        accs.iter().map(|a| a.value(f)).collect()
    }

    fn rate_buckets(
        &self,
        id: SeriesId,
        start: i64,
        end: i64,
        step: i64,
        n: usize,
    ) -> Vec<Option<f64>> {
        let mut inc = vec![0.0f64; n];
        let mut dt = vec![0i64; n];
        let mut prev: Option<(i64, f64)> = None;
        self.for_each_sample(id, start.saturating_sub(step), end, |s| {
            if s.v.is_nan() {
                return;
            }
            if let Some((pt, pv)) = prev {
                if s.t >= start {
                    let k = bucket_of(s.t, start, step);
                    inc[k] += if s.v >= pv { s.v - pv } else { s.v };
                    dt[k] += s.t - pt;
                }
            }
            prev = Some((s.t, s.v));
        });
        inc.iter()
            .zip(&dt)
            .map(|(&i, &d)| (d > 0).then(|| i * 1000.0 / d as f64))
            .collect()
    }

    /// Ids of the series matching `sel`.
    pub fn select(&self, sel: &Selector) -> Vec<SeriesId> {
        self.index.select(sel)
    }

    /// Answers an aggregated range query. Series are aligned in parallel on the available
    /// cores when there are many.
    pub fn query(&self, q: &RangeQuery) -> Result<Vec<Point>, QueryError> {
        let n = check(q.start, q.end, q.step)?;
        let ids = self.select(&q.selector);
        let rows = self.rows(q, n, &ids);
        Ok(combine(q, n, &rows))
    }

    /// Like [`Tsdb::query`], but one aggregated result per value of label `by` (series
    /// without the label form the group `None`), sorted by group. `by = None` gives one
    /// group holding every selected series (none when nothing matched).
    pub fn query_by(
        &self,
        q: &RangeQuery,
        by: Option<&str>,
    ) -> Result<Vec<GroupedPoints>, QueryError> {
        let n = check(q.start, q.end, q.step)?;
        let ids = self.select(&q.selector);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.rows(q, n, &ids);
        let mut groups: std::collections::BTreeMap<Option<&str>, Vec<Vec<Option<f64>>>> =
            std::collections::BTreeMap::new();
        for (id, row) in ids.iter().zip(rows) {
            let key = by.and_then(|b| self.index.labels(*id).and_then(|l| l.get(b)));
            groups.entry(key).or_default().push(row);
        }
        Ok(groups
            .into_iter()
            .map(|(g, rows)| GroupedPoints {
                group: g.map(str::to_string),
                series: rows.len() as u32,
                points: combine(q, n, &rows),
            })
            .collect())
    }

    /// One bucketized row per series of `ids`, in order, aligned in parallel when many.
    fn rows(&self, q: &RangeQuery, n: usize, ids: &[SeriesId]) -> Vec<Vec<Option<f64>>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = ids.len().div_ceil(threads).max(32);
        if ids.len() > per {
            std::thread::scope(|sc| {
                let handles: Vec<_> = ids
                    .chunks(per)
                    .map(|part| {
                        sc.spawn(move || {
                            part.iter()
                                .map(|&id| {
                                    self.bucketize_unchecked(
                                        id, q.start, q.end, q.step, n, q.bucket,
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("query worker panicked"))
                    .collect()
            })
        } else {
            ids.iter()
                .map(|&id| self.bucketize_unchecked(id, q.start, q.end, q.step, n, q.bucket))
                .collect()
        }
    }
}

/// One group of a [`Tsdb::query_by`] answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupedPoints {
    /// Value of the grouping label (`None`: not grouped, or the label is absent).
    pub group: Option<String>,
    /// Series in the group.
    pub series: u32,
    /// Aggregated points (buckets without any value are absent).
    pub points: Vec<Point>,
}

/// Combines the per-series rows bucket by bucket. Rows are walked one after the other (not
/// column by column) so memory is read sequentially; values enter each bucket in row order,
/// as [`aggregate`] would see them.
fn combine(q: &RangeQuery, n: usize, rows: &[Vec<Option<f64>>]) -> Vec<Point> {
    let mut count = vec![0u32; n];
    let point = |k: usize, value: f64, series: u32| Point {
        t: q.start + k as i64 * q.step,
        value,
        series,
    };
    if q.aggregation == Aggregation::P95 {
        // Transpose into per-bucket columns, then select the rank in each.
        let r = rows.len();
        let mut cols = vec![0.0f64; n * r];
        for row in rows {
            for (k, v) in row.iter().enumerate() {
                if let Some(v) = v {
                    cols[k * r + count[k] as usize] = *v;
                    count[k] += 1;
                }
            }
        }
        return (0..n)
            .filter_map(|k| {
                let c = count[k] as usize;
                aggregate(Aggregation::P95, &mut cols[k * r..k * r + c])
                    .map(|v| point(k, v, c as u32))
            })
            .collect();
    }
    let init = match q.aggregation {
        Aggregation::Max => f64::NEG_INFINITY,
        Aggregation::Min => f64::INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; n];
    for row in rows {
        for (k, v) in row.iter().enumerate() {
            if let Some(v) = *v {
                count[k] += 1;
                acc[k] = match q.aggregation {
                    Aggregation::Max => acc[k].max(v),
                    Aggregation::Min => acc[k].min(v),
                    _ => acc[k] + v,
                };
            }
        }
    }
    (0..n)
        .filter(|&k| count[k] > 0)
        .map(|k| {
            let v = if q.aggregation == Aggregation::Avg {
                acc[k] / f64::from(count[k])
            } else {
                acc[k]
            };
            point(k, v, count[k])
        })
        .collect()
}

/// Combines values with `agg`; `None` for no values. Reorders `vals` (for P95).
pub fn aggregate(agg: Aggregation, vals: &mut [f64]) -> Option<f64> {
    if vals.is_empty() {
        return None;
    }
    Some(match agg {
        Aggregation::Sum => vals.iter().sum(),
        Aggregation::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
        Aggregation::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregation::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::P95 => {
            let rank = (vals.len() * 95).div_ceil(100).max(1) - 1;
            *vals.select_nth_unstable_by(rank, f64::total_cmp).1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(aggregate(Aggregation::P95, &mut v), Some(95.0));
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(aggregate(Aggregation::P95, &mut v), Some(3.0));
        let mut v = vec![7.0];
        assert_eq!(aggregate(Aggregation::P95, &mut v), Some(7.0));
        assert_eq!(aggregate(Aggregation::Sum, &mut []), None);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(
            check(10, 10, 1),
            Err(QueryError::EmptyRange { start: 10, end: 10 })
        );
        assert_eq!(check(0, 10, 0), Err(QueryError::BadStep(0)));
        assert!(matches!(
            check(0, i64::MAX, 1),
            Err(QueryError::TooManyBuckets(_))
        ));
        assert_eq!(check(0, 10, 3), Ok(4));
    }
}
