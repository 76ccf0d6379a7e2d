//! The server's time-series store: one [`Tsdb`] fed by agents through
//! `POST /api/v1/metrics/ingest` and read by the query API, `jdos top`, the alert
//! evaluator and the Prometheus export.
//!
//! Persistent under `<data_dir>/tsdb` unless the state store is `memory://` (then it lives
//! in memory too). A background task closes due windows (which computes the hourly
//! downsample), applies retention and fsyncs the WAL every [`MAINTENANCE_EVERY`]; the head
//! is snapshotted on shutdown ([`MetricsStore::flush`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use jdos_monitor::{
    Aggregation, BucketFn, GroupedPoints, Labels, Options, RangeQuery, Sample, Selector, SeriesId,
    Tsdb, TsdbError, HOUR_MS,
};
use jdos_types::metrics::{
    self, IngestSummary, LatestSample, MetricBatch, MetricPoint, MetricQuery, QueryResult,
    ResultSeries, QUERY_LABELS,
};
use jdos_types::{Validate, ValidationErrors};

use crate::error::HttpError;
use crate::remote_write::RemoteWriter;

/// How often the background task seals due windows, applies retention and syncs the WAL.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Default query range when `start` is not given.
pub const DEFAULT_RANGE_MS: i64 = HOUR_MS;

/// The server's metrics store (cheap to share behind the [`crate::AppState`]).
#[derive(Debug)]
pub struct MetricsStore {
    db: RwLock<Tsdb>,
    remote: OnceLock<Arc<RemoteWriter>>,
}

impl Default for MetricsStore {
    fn default() -> Self {
        Self::in_memory()
    }
}

fn tsdb_error(e: TsdbError) -> HttpError {
    HttpError::internal(format!("metrics store: {e}"))
}

impl MetricsStore {
    /// An in-memory store with the default options.
    pub fn in_memory() -> Self {
        MetricsStore {
            db: RwLock::new(
                Tsdb::in_memory(Options::default()).expect("default options are valid"),
            ),
            remote: OnceLock::new(),
        }
    }

    /// Replaces the store by the persistent one in `dir` (at start-up, before serving).
    pub fn open_dir(&self, dir: &Path) -> Result<(), TsdbError> {
        let db = Tsdb::open(dir, Options::default())?;
        *self.write() = db;
        Ok(())
    }

    /// Forwards every accepted sample to `w` from now on (once; later calls are ignored).
    pub fn set_remote_writer(&self, w: Arc<RemoteWriter>) {
        let _ = self.remote.set(w);
    }

    /// The remote-write sender, when configured.
    pub fn remote_writer(&self) -> Option<&Arc<RemoteWriter>> {
        self.remote.get()
    }

    /// Shared access (queries).
    pub fn read(&self) -> RwLockReadGuard<'_, Tsdb> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive access (appends, maintenance).
    pub fn write(&self) -> RwLockWriteGuard<'_, Tsdb> {
        self.db.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves every series of `batch` to labels, refusing the whole batch when one is
    /// invalid (nothing written). `force` labels override the batch's (an agent may only
    /// write series of its own host).
    pub fn labels_of(
        batch: &MetricBatch,
        force: &[(&str, &str)],
    ) -> Result<Vec<Labels>, ValidationErrors> {
        batch.validate()?;
        let mut errs = ValidationErrors::new();
        let mut out = Vec::with_capacity(batch.series.len());
        for (i, s) in batch.series.iter().enumerate() {
            let mut pairs: BTreeMap<&str, &str> = batch
                .common
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for (k, v) in &s.labels {
                pairs.insert(k, v);
            }
            for (k, v) in force {
                pairs.insert(k, v);
            }
            match Labels::new(&s.name, pairs) {
                Ok(l) => out.push(l),
                Err(e) => {
                    errs.add(format!("series[{i}]"), "invalid", e.to_string());
                    if errs.errors.len() >= 20 {
                        break;
                    }
                }
            }
        }
        errs.into_result().map(|()| out)
    }

    /// Appends a batch whose labels were resolved by [`MetricsStore::labels_of`].
    pub fn ingest(
        &self,
        batch: &MetricBatch,
        labels: &[Labels],
    ) -> Result<IngestSummary, HttpError> {
        let mut samples: Vec<(SeriesId, Sample)> = Vec::with_capacity(batch.samples());
        let mut db = self.write();
        let before = db.index().len();
        let remote = self.remote.get();
        for (s, l) in batch.series.iter().zip(labels) {
            let id = db.series(l);
            samples.extend(s.t.iter().zip(&s.v).map(|(&t, &v)| (id, Sample::new(t, v))));
            if let Some(w) = remote {
                // Forward what the store will accept: strictly newer than the series'
                // newest sample, in order (the store's own rule).
                let mut last = db.latest(id).map_or(i64::MIN, |x| x.t);
                let fresh: Vec<(i64, f64)> =
                    s.t.iter()
                        .zip(&s.v)
                        .filter(|(&t, _)| {
                            let ok = t > last;
                            last = last.max(t);
                            ok
                        })
                        .map(|(&t, &v)| (t, v))
                        .collect();
                if !fresh.is_empty() {
                    w.enqueue(&Arc::new(l.clone()), fresh);
                }
            }
        }
        let new_series = (db.index().len() - before) as u64;
        let sum = db.append_batch(&samples).map_err(tsdb_error)?;
        Ok(IngestSummary {
            accepted: sum.accepted,
            out_of_order: sum.out_of_order,
            too_old: sum.too_old,
            invalid_series: sum.unknown_series,
            new_series,
        })
    }

    /// Closes windows whose grace has passed at `now_ms` (computing their hourly
    /// downsample), applies retention and fsyncs the WAL.
    pub fn maintain(&self, now_ms: i64) -> Result<(), TsdbError> {
        let mut db = self.write();
        let grace = db.options().close_grace_ms;
        db.seal_through(now_ms - grace)?;
        db.apply_retention(now_ms)?;
        db.sync_wal()
    }

    /// Snapshots the head (shutdown).
    pub fn flush(&self) -> Result<(), TsdbError> {
        self.write().flush_head()
    }

    /// Answers a query; `scope` is the department a developer token is limited to.
    pub fn query(
        &self,
        q: &MetricQuery,
        now_ms: i64,
        scope: Option<&str>,
    ) -> Result<QueryResult, HttpError> {
        let plan = plan(q, now_ms, scope)?;
        let groups = self
            .read()
            .query_by(&plan.range, q.by.as_deref())
            .map_err(|e| HttpError::invalid("step", e.to_string()))?;
        Ok(QueryResult {
            metric: q.metric.clone(),
            start: plan.range.start,
            end: plan.range.end,
            step: plan.range.step,
            agg: plan.agg,
            bucket: plan.bucket,
            by: q.by.clone(),
            result: groups.into_iter().map(result_series).collect(),
        })
    }

    /// The newest sample of every series matching the query's metric and filters (its
    /// range, step and aggregation are ignored).
    pub fn latest(
        &self,
        q: &MetricQuery,
        scope: Option<&str>,
    ) -> Result<Vec<LatestSample>, HttpError> {
        let sel = selector(q, scope)?;
        let db = self.read();
        Ok(db
            .select(&sel)
            .into_iter()
            .filter_map(|id| {
                let s = db.latest(id)?;
                let l = db.index().labels(id)?;
                Some(LatestSample {
                    name: l.metric().to_string(),
                    labels: l
                        .pairs()
                        .iter()
                        .filter(|(k, _)| k != jdos_monitor::METRIC_NAME)
                        .cloned()
                        .collect(),
                    t: s.t,
                    v: s.v,
                })
            })
            .collect())
    }

    /// Metric names held, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read()
            .index()
            .label_values(jdos_monitor::METRIC_NAME)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The store's own figures (and the remote writer's) in the Prometheus text format,
    /// for the server's `/metrics`.
    pub fn render_own(&self, out: &mut String) {
        use std::fmt::Write;
        let s = self.stats();
        for (name, help, v) in [
            ("jdos_tsdb_series", "Series in the metrics store.", s.series),
            (
                "jdos_tsdb_head_samples",
                "Samples in open (head) chunks.",
                s.head_samples,
            ),
            (
                "jdos_tsdb_closed_samples",
                "Samples in closed blocks.",
                s.closed_samples,
            ),
            (
                "jdos_tsdb_closed_bytes",
                "Compressed bytes of closed chunks.",
                s.closed_bytes,
            ),
            (
                "jdos_tsdb_hourly_points",
                "Hourly downsampled points held.",
                s.hourly_points,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Some(w) = self.remote.get() {
            w.render(out);
        }
    }

    /// The newest sample of every series matching `sel` and newer than `since_ms`, in the
    /// Prometheus text exposition format (one `gauge` family per metric, with timestamps).
    pub fn exposition(&self, sel: &Selector, since_ms: i64) -> String {
        use std::fmt::Write;
        let db = self.read();
        let mut rows: Vec<(&Labels, Sample)> = db
            .select(sel)
            .into_iter()
            .filter_map(|id| Some((db.index().labels(id)?, db.latest(id)?)))
            .filter(|(_, s)| s.t >= since_ms && s.v.is_finite())
            .collect();
        rows.sort_by(|a, b| a.0.metric().cmp(b.0.metric()).then_with(|| a.0.cmp(b.0)));
        let mut out = String::new();
        let mut current = "";
        for (l, s) in rows {
            if l.metric() != current {
                current = l.metric();
                let _ = writeln!(out, "# TYPE {current} gauge");
            }
            out.push_str(current);
            let mut first = true;
            for (k, v) in l
                .pairs()
                .iter()
                .filter(|(k, _)| k != jdos_monitor::METRIC_NAME)
            {
                out.push(if first { '{' } else { ',' });
                first = false;
                let _ = write!(out, "{k}=\"{}\"", crate::metrics::escape(v));
            }
            if !first {
                out.push('}');
            }
            let _ = writeln!(out, " {} {}", s.v, s.t);
        }
        out
    }

    /// The selector of a query's metric and filters, limited to `scope`; an empty metric
    /// selects every metric.
    pub fn selector_of(q: &MetricQuery, scope: Option<&str>) -> Result<Selector, HttpError> {
        if q.metric.is_empty() {
            let mut any = q.clone();
            any.metric = "_".into();
            let mut sel = selector(&any, scope)?;
            sel.matchers.remove(0);
            return Ok(sel);
        }
        selector(q, scope)
    }

    /// Sizes of the store.
    pub fn stats(&self) -> jdos_monitor::Stats {
        self.read().stats()
    }
}

fn result_series(g: GroupedPoints) -> ResultSeries {
    ResultSeries {
        group: g.group,
        series: g.series,
        points: g
            .points
            .into_iter()
            .map(|p| MetricPoint {
                t: p.t,
                v: p.value,
                n: p.series,
            })
            .collect(),
    }
}

/// A validated query.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The store query.
    pub range: RangeQuery,
    /// Aggregation in wire terms.
    pub agg: metrics::Aggregation,
    /// Reduction in wire terms.
    pub bucket: metrics::BucketFn,
}

/// Largest number of steps one query may ask for.
pub const MAX_STEPS: i64 = 11_000;

fn selector(q: &MetricQuery, scope: Option<&str>) -> Result<Selector, HttpError> {
    if q.metric.is_empty() {
        return Err(HttpError::invalid("metric", "metric is required"));
    }
    let mut sel = Selector::metric(&q.metric);
    for (k, v) in q.filters() {
        sel = sel.eq(k, v);
    }
    if let Some(dept) = scope {
        if q.department.as_deref().is_some_and(|d| d != dept) {
            return Err(HttpError::forbidden(format!(
                "this token sees only the metrics of department {dept:?}"
            )));
        }
        if q.department.is_none() {
            sel = sel.eq("department", dept);
        }
    }
    Ok(sel)
}

/// Validates `q` and fills its defaults: end = now, start = end − 1 h, step = range / 60
/// (at least 10 s), agg = sum, fn = rate for `_total` names else mean. A step of whole
/// hours starts on an hour so closed hours are answered from the hourly downsample.
pub fn plan(q: &MetricQuery, now_ms: i64, scope: Option<&str>) -> Result<Plan, HttpError> {
    let selector = selector(q, scope)?;
    if let Some(by) = q.by.as_deref() {
        if !QUERY_LABELS.contains(&by) {
            return Err(HttpError::invalid(
                "by",
                format!(
                    "cannot group by {by:?}: use one of {}",
                    QUERY_LABELS.join(", ")
                ),
            ));
        }
    }
    let end = q.end.unwrap_or(now_ms);
    let mut start = q.start.unwrap_or(end - DEFAULT_RANGE_MS);
    if end <= start {
        return Err(HttpError::invalid(
            "end",
            format!("end {end} must be after start {start}"),
        ));
    }
    let step = q.step.unwrap_or_else(|| ((end - start) / 60).max(10_000));
    if step <= 0 {
        return Err(HttpError::invalid("step", "step must be positive (ms)"));
    }
    if step % HOUR_MS == 0 {
        start = start.div_euclid(HOUR_MS) * HOUR_MS;
    }
    let steps = (end - start - 1) / step + 1;
    if steps > MAX_STEPS {
        return Err(HttpError::invalid(
            "step",
            format!("{steps} steps requested, at most {MAX_STEPS}: use a larger step"),
        ));
    }
    let agg = q.agg.unwrap_or(metrics::Aggregation::Sum);
    let bucket = q.bucket.unwrap_or(if q.metric.ends_with("_total") {
        metrics::BucketFn::Rate
    } else {
        metrics::BucketFn::Mean
    });
    Ok(Plan {
        range: RangeQuery {
            selector,
            start,
            end,
            step,
            bucket: match bucket {
                metrics::BucketFn::Last => BucketFn::Last,
                metrics::BucketFn::Mean => BucketFn::Mean,
                metrics::BucketFn::Max => BucketFn::Max,
                metrics::BucketFn::Min => BucketFn::Min,
                metrics::BucketFn::Rate => BucketFn::Rate,
            },
            aggregation: match agg {
                metrics::Aggregation::Sum => Aggregation::Sum,
                metrics::Aggregation::Avg => Aggregation::Avg,
                metrics::Aggregation::Max => Aggregation::Max,
                metrics::Aggregation::Min => Aggregation::Min,
                metrics::Aggregation::P95 => Aggregation::P95,
            },
        },
        agg,
        bucket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::metrics::SeriesSamples;

    fn batch() -> MetricBatch {
        let mut b = MetricBatch::default();
        b.common.insert("host".into(), "h1".into());
        for (i, g) in ["web", "web", "db"].iter().enumerate() {
            let labels: BTreeMap<String, String> = [
                ("app".to_string(), "shop".to_string()),
                ("group".to_string(), g.to_string()),
                ("instance".to_string(), format!("shop.prod.{g}.{i}")),
                ("department".to_string(), "retail".to_string()),
            ]
            .into();
            for k in 0..6 {
                b.push("cpu", &labels, k * 10_000, (i + 1) as f64);
            }
        }
        b
    }

    #[test]
    fn ingest_then_query_grouped_and_scoped() {
        let st = MetricsStore::in_memory();
        let b = batch();
        let labels = MetricsStore::labels_of(&b, &[]).unwrap();
        let sum = st.ingest(&b, &labels).unwrap();
        assert_eq!((sum.accepted, sum.new_series), (18, 3));
        let text = st.exposition(
            &MetricsStore::selector_of(&MetricQuery::default(), None).unwrap(),
            0,
        );
        assert!(text.starts_with("# TYPE cpu gauge\ncpu{app=\"shop\",department=\"retail\",group=\"db\",host=\"h1\",instance=\"shop.prod.db.2\"} 3 50000\n"), "{text}");
        assert_eq!(text.lines().count(), 4);
        assert!(st.exposition(&Selector::metric("cpu"), 60_000).is_empty());
        // Re-sending the same batch is harmless: everything is out of order.
        let again = st.ingest(&b, &labels).unwrap();
        assert_eq!((again.accepted, again.out_of_order), (0, 18));

        let mut q = MetricQuery::new("cpu");
        q.start = Some(0);
        q.end = Some(60_000);
        q.step = Some(60_000);
        q.by = Some("group".into());
        let r = st.query(&q, 60_000, None).unwrap();
        assert_eq!(r.result.len(), 2);
        assert_eq!(r.result[0].group.as_deref(), Some("db"));
        assert_eq!(r.result[0].points[0].v, 3.0);
        assert_eq!(r.result[1].points[0].v, 3.0); // 1 + 2
        assert_eq!(r.bucket, metrics::BucketFn::Mean);

        let scoped = st.query(&q, 60_000, Some("other")).unwrap();
        assert!(scoped.result.is_empty());
        let mut wrong = q.clone();
        wrong.department = Some("retail".into());
        assert_eq!(
            st.query(&wrong, 60_000, Some("other"))
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
        let latest = st.latest(&MetricQuery::new("cpu"), Some("retail")).unwrap();
        assert_eq!(latest.len(), 3);
        assert!(latest.iter().all(|l| l.t == 50_000));
        assert_eq!(latest[0].labels["host"], "h1");
        assert_eq!(st.names(), vec!["cpu".to_string()]);
    }

    #[test]
    fn bad_series_refuse_the_whole_batch() {
        let mut b = batch();
        b.series.push(SeriesSamples {
            name: "cpu".into(),
            labels: [("bad-label".to_string(), "x".to_string())].into(),
            t: vec![1],
            v: vec![1.0],
        });
        let e = MetricsStore::labels_of(&b, &[]).unwrap_err();
        assert_eq!(e.errors[0].field, "series[3]");
    }

    #[test]
    fn forced_labels_win() {
        let b = batch();
        let labels = MetricsStore::labels_of(&b, &[("host", "h9")]).unwrap();
        assert!(labels.iter().all(|l| l.get("host") == Some("h9")));
    }

    #[test]
    fn plan_defaults_and_refusals() {
        let q = MetricQuery::new("net_rx_total");
        let p = plan(&q, 7_200_000, None).unwrap();
        assert_eq!(
            (p.range.start, p.range.end, p.range.step),
            (3_600_000, 7_200_000, 60_000)
        );
        assert_eq!(p.bucket, metrics::BucketFn::Rate);
        let mut bad = q.clone();
        bad.by = Some("colour".into());
        assert_eq!(
            plan(&bad, 1, None).unwrap_err().body.field.as_deref(),
            Some("by")
        );
        let mut bad = q.clone();
        bad.start = Some(10);
        bad.end = Some(5);
        assert_eq!(
            plan(&bad, 1, None).unwrap_err().body.field.as_deref(),
            Some("end")
        );
        let mut bad = q.clone();
        bad.step = Some(1);
        assert_eq!(
            plan(&bad, 7_200_000, None)
                .unwrap_err()
                .body
                .field
                .as_deref(),
            Some("step")
        );
        assert_eq!(
            plan(&MetricQuery::default(), 1, None)
                .unwrap_err()
                .body
                .field
                .as_deref(),
            Some("metric")
        );
        let mut hourly = q;
        hourly.start = Some(HOUR_MS + 5);
        hourly.end = Some(30 * HOUR_MS);
        hourly.step = Some(HOUR_MS);
        assert_eq!(plan(&hourly, 1, None).unwrap().range.start, HOUR_MS);
    }
}
