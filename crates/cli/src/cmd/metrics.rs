//! `jdos metrics METRIC [filters]`: one metric aggregated over a range, as a table of the
//! latest points and a sparkline per result series.

use std::time::Duration;

use jdos_types::metrics::{Aggregation, BucketFn, MetricQuery, QueryResult};

use super::GlobalOpts;
use crate::output::{now_ms, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Metric name, e.g. container_cpu_usage_cores, host_load1 (see docs/ARCHITECTURE.md).
    pub metric: String,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this env.
    #[arg(long)]
    pub env: Option<String>,
    /// Only this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this container (identity `app.env.group.N`).
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only this department.
    #[arg(long)]
    pub department: Option<String>,
    /// One result series per value of this label (instance, group, app, host, department …).
    #[arg(long)]
    pub by: Option<String>,
    /// Combine series with sum, avg, max, min or p95.
    #[arg(long, value_parser = parse_agg)]
    pub agg: Option<Aggregation>,
    /// Reduce each series within a step with mean, max, min, last or rate.
    #[arg(long = "fn", value_parser = parse_fn)]
    pub bucket: Option<BucketFn>,
    /// How far back (e.g. 1h, 30m, 7d).
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    pub since: Duration,
    /// Step (e.g. 1m, 1h; whole hours read the hourly downsample).
    #[arg(long, value_parser = super::parse_duration)]
    pub step: Option<Duration>,
    /// Points shown per series in the table (the sparkline shows all).
    #[arg(long, default_value_t = 5)]
    pub last: usize,
}

fn parse_agg(s: &str) -> Result<Aggregation, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown aggregation {s:?}: use sum, avg, max, min or p95"))
}

fn parse_fn(s: &str) -> Result<BucketFn, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown function {s:?}: use mean, max, min, last or rate"))
}

/// Runs the query and prints it.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let end = now_ms() as i64;
    let q = MetricQuery {
        metric: a.metric.clone(),
        app: a.app,
        env: a.env,
        group: a.group,
        instance: a.instance,
        host: a.host,
        department: a.department,
        by: a.by,
        agg: a.agg,
        bucket: a.bucket,
        start: Some(end - a.since.as_millis() as i64),
        end: Some(end),
        step: a.step.map(|s| s.as_millis() as i64),
        ..MetricQuery::default()
    };
    let r = client.query_metrics(&q).await?;
    super::print(g, &r, || render(&r, a.last))
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per step, scaled between the series' min and max; a gap for a step
/// without data.
pub fn sparkline(points: &[(i64, f64)], start: i64, end: i64, step: i64) -> String {
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let n = ((end - start - 1) / step + 1).clamp(0, 10_000) as usize;
    let mut out = vec![' '; n];
    for (t, v) in points {
        let k = ((t - start) / step) as usize;
        if k < n {
            let level = if hi > lo {
                (((v - lo) / (hi - lo)) * 7.0).round() as usize
            } else {
                3
            };
            out[k] = BARS[level.min(7)];
        }
    }
    out.into_iter().collect()
}

/// A compact number: 3 significant digits with k/M/G suffixes.
pub fn num(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x == x.trunc() && x.abs() < 1e4 {
        format!("{x:.0}{suffix}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.3}{suffix}")
    }
}

fn clock(t_ms: i64) -> String {
    let s = t_ms.div_euclid(1000);
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}")
}

/// The table: per result series its label, sparkline, then the last points.
pub fn render(r: &QueryResult, last: usize) -> String {
    if r.result.is_empty() {
        return format!(
            "no data for {} in this range (check the name and filters)\n",
            r.metric
        );
    }
    let mut out = format!(
        "{} {} of {} per {} s, {} … {} UTC\n",
        r.agg.as_str(),
        serde_json::to_value(r.bucket)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        r.metric,
        r.step / 1000,
        clock(r.start),
        clock(r.end)
    );
    let mut t = Table::new([
        r.by.clone()
            .unwrap_or_else(|| "series".into())
            .to_uppercase(),
        "N".into(),
        "TREND".into(),
        "TIME".into(),
        "VALUE".into(),
    ]);
    for s in &r.result {
        let pts: Vec<(i64, f64)> = s.points.iter().map(|p| (p.t, p.v)).collect();
        let spark = sparkline(&pts, r.start, r.end, r.step);
        let label = s.group.clone().unwrap_or_else(|| "-".into());
        let tail = &s.points[s.points.len().saturating_sub(last.max(1))..];
        for (i, p) in tail.iter().enumerate() {
            let first = i == 0;
            t.row([
                if first { label.clone() } else { String::new() },
                if first {
                    s.series.to_string()
                } else {
                    String::new()
                },
                if first { spark.clone() } else { String::new() },
                clock(p.t),
                num(p.v),
            ]);
        }
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::metrics::{MetricPoint, ResultSeries};

    #[test]
    fn sparkline_scales_and_leaves_gaps() {
        let s = sparkline(&[(0, 0.0), (20, 7.0), (30, 3.5)], 0, 40, 10);
        assert_eq!(s, "▁ █▅");
        assert_eq!(sparkline(&[(0, 2.0)], 0, 10, 10), "▄");
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(num(0.4567), "0.457");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(1_536_000.0), "1.536M");
        assert_eq!(num(250_000.0), "250k");
    }

    #[test]
    fn render_shows_groups_and_last_points() {
        let r = QueryResult {
            metric: "container_cpu_usage_cores".into(),
            start: 0,
            end: 180_000,
            step: 60_000,
            agg: Aggregation::Sum,
            bucket: BucketFn::Mean,
            by: Some("group".into()),
            result: vec![ResultSeries {
                group: Some("web".into()),
                series: 2,
                points: (0..3)
                    .map(|k| MetricPoint {
                        t: k * 60_000,
                        v: k as f64,
                        n: 2,
                    })
                    .collect(),
            }],
        };
        let text = render(&r, 2);
        assert!(text.starts_with("sum mean of container_cpu_usage_cores per 60 s"));
        assert!(text.contains("GROUP"));
        assert!(text.contains("web"));
        assert!(text.contains("00:02:00"));
        assert!(
            !text.contains("00:00:00  "),
            "only the last 2 points: {text}"
        );
    }
}
