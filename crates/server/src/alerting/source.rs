//! Where metric conditions read their data: the [`MetricSource`] trait and
//! its implementation over the server's embedded [`Tsdb`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jdos_monitor::{BucketFn, Selector, Tsdb, METRIC_NAME};

/// How each series is reduced over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Mean of the samples (gauges).
    Mean,
    /// Per-second increase (counters).
    Rate,
    /// The newest sample and its time.
    Last,
}

/// Every series of a metric matching some labels, each reduced over
/// `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQuery {
    /// Metric name.
    pub metric: String,
    /// Label filters, all must hold.
    pub matchers: Vec<(String, String)>,
    /// Start, unix ms, inclusive.
    pub start: i64,
    /// End, unix ms, exclusive.
    pub end: i64,
    /// Reduction.
    pub reduce: Reduce,
}

/// One series' result.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValue {
    /// Its labels (the metric name left out).
    pub labels: BTreeMap<String, String>,
    /// The reduced value; `None` when it has no sample in the window.
    pub value: Option<f64>,
    /// Time of its newest sample in the window (for [`Reduce::Last`]).
    pub last_t: Option<i64>,
}

/// A metric query that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric query failed: {0}")]
pub struct SourceError(pub String);

/// What the evaluator reads metrics through.
#[async_trait::async_trait]
pub trait MetricSource: Send + Sync {
    /// Answers a window query.
    async fn window(&self, q: &WindowQuery) -> Result<Vec<SeriesValue>, SourceError>;
}

/// Answers a window query from a [`Tsdb`].
pub fn window_on(db: &Tsdb, q: &WindowQuery) -> Result<Vec<SeriesValue>, SourceError> {
    let mut sel = Selector::metric(&q.metric);
    for (k, v) in &q.matchers {
        sel = sel.eq(k, v);
    }
    let step = (q.end - q.start).max(1);
    let mut out = Vec::new();
    for id in db.select(&sel) {
        let labels: BTreeMap<String, String> = db
            .index()
            .labels(id)
            .map(|l| {
                l.pairs()
                    .iter()
                    .filter(|(k, _)| k != METRIC_NAME)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let (value, last_t) = match q.reduce {
            Reduce::Mean | Reduce::Rate => {
                let f = if q.reduce == Reduce::Mean {
                    BucketFn::Mean
                } else {
                    BucketFn::Rate
                };
                let v = db
                    .bucketize(id, q.start, q.end, step, f)
                    .map_err(|e| SourceError(e.to_string()))?;
                (v.first().copied().flatten(), None)
            }
            Reduce::Last => {
                let mut last = None;
                db.for_each_sample(id, q.start, q.end, |s| {
                    if !s.v.is_nan() {
                        last = Some((s.t, s.v));
                    }
                });
                (last.map(|l| l.1), last.map(|l| l.0))
            }
        };
        out.push(SeriesValue {
            labels,
            value,
            last_t,
        });
    }
    Ok(out)
}

type WindowFn = dyn Fn(&WindowQuery) -> Result<Vec<SeriesValue>, SourceError> + Send + Sync;

/// A [`Tsdb`] as a metric source, whatever lock the owner keeps it behind:
/// the query runs on a blocking thread through `read`.
#[derive(Clone)]
pub struct TsdbSource {
    read: Arc<WindowFn>,
}

impl std::fmt::Debug for TsdbSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsdbSource").finish_non_exhaustive()
    }
}

impl TsdbSource {
    /// A source that answers through `read`, which runs [`window_on`] on
    /// the store it guards.
    pub fn new(
        read: impl Fn(&WindowQuery) -> Result<Vec<SeriesValue>, SourceError> + Send + Sync + 'static,
    ) -> Self {
        TsdbSource {
            read: Arc::new(read),
        }
    }

    /// A source over a store behind a std `RwLock`.
    pub fn over_lock(db: Arc<RwLock<Tsdb>>) -> Self {
        Self::new(move |q| {
            let db = db.read().unwrap_or_else(|p| p.into_inner());
            window_on(&db, q)
        })
    }
}

#[async_trait::async_trait]
impl MetricSource for TsdbSource {
    async fn window(&self, q: &WindowQuery) -> Result<Vec<SeriesValue>, SourceError> {
        let read = self.read.clone();
        let q = q.clone();
        // Decoding chunks is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || read(&q))
            .await
            .map_err(|e| SourceError(format!("query worker failed: {e}")))?
    }
}
