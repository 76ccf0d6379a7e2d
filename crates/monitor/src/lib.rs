//! jdos-monitor: the embedded time-series store behind jdos monitoring (DESIGN.md §8).
//!
//! - [`gorilla`]: the Gorilla chunk codec (delta-of-delta timestamps, XOR values) over a
//!   hand-written [`bits`] writer/reader.
//! - [`Tsdb`]: series index (metric name + sorted labels → [`SeriesId`], postings per label
//!   value), head chunks per 2-hour window with a write-ahead log, closed blocks persisted
//!   as checksummed files, retention, hourly downsampling (count/sum/min/max/last per series
//!   and hour).
//! - [`collect`]: host metrics from `/proc` and `/sys`, container metrics from cgroups
//!   (v1 or v2) and the container's network namespace, as rates between rounds.
//! - [`synth`]: synthetic container metrics shaped like cgroup readouts (benchmarks, demos).
//! - [`query`]: raw ranges per series and aggregations (sum, avg, max, min, p95) over a
//!   [`Selector`] at a step, each series first reduced per bucket (last, mean, max, min or
//!   counter rate).
//!
//! ```
//! use jdos_monitor::{Aggregation, BucketFn, Labels, Options, RangeQuery, Sample, Selector, Tsdb};
//!
//! let mut db = Tsdb::in_memory(Options::default())?;
//! let id = db.series(&Labels::new("cpu_usage", [("app", "shop"), ("container", "c1")])?);
//! db.append_batch(&[(id, Sample::new(0, 0.5)), (id, Sample::new(10_000, 0.7))])?;
//! let pts = db.query(&RangeQuery {
//!     selector: Selector::metric("cpu_usage").eq("app", "shop"),
//!     start: 0,
//!     end: 60_000,
//!     step: 60_000,
//!     bucket: BucketFn::Mean,
//!     aggregation: Aggregation::Sum,
//! })?;
//! assert!((pts[0].value - 0.6).abs() < 1e-12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bits;
pub mod collect;
pub mod downsample;
pub mod gorilla;
pub mod labels;
pub mod query;
mod segment;
pub mod synth;
pub mod tsdb;

pub use downsample::{HourlyPoint, HOUR_MS};
pub use gorilla::{Chunk, ChunkEncoder, OutOfOrder, Sample};
pub use labels::{Labels, LabelsError, Matcher, Selector, SeriesId, METRIC_NAME};
pub use query::{Aggregation, BucketFn, GroupedPoints, Point, QueryError, RangeQuery};
pub use tsdb::{
    AppendSummary, Options, RetentionReport, Stats, Tsdb, TsdbError, MAX_TIMESTAMP, MIN_TIMESTAMP,
};
