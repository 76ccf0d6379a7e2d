//! `jdos top containers [--app X]` / `jdos top hosts`: the latest cpu, memory and network
//! sample per container or host, sorted.

use std::collections::BTreeMap;

use jdos_types::metrics::{names, LatestSample, MetricQuery};
use serde::Serialize;

use super::metrics::num;
use super::GlobalOpts;
use crate::output::{bytes, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to list.
    #[arg(value_enum)]
    pub what: What,
    /// Only this app (containers).
    #[arg(long)]
    pub app: Option<String>,
    /// Only this group (containers).
    #[arg(long)]
    pub group: Option<String>,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only this department (containers).
    #[arg(long)]
    pub department: Option<String>,
    /// Sort column, largest first.
    #[arg(long, value_enum, default_value_t = SortBy::Cpu)]
    pub sort: SortBy,
    /// Rows shown.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
}

/// Containers or hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// One row per container.
    Containers,
    /// One row per host.
    Hosts,
}

/// Sort column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Cpu (cores for containers, utilization for hosts).
    Cpu,
    /// Memory used.
    Mem,
    /// Received + sent bytes per second.
    Net,
    /// Name.
    Name,
}

/// One row of `jdos top`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// Container identity or host name.
    pub name: String,
    /// Host (containers) or datacenter (hosts).
    pub place: String,
    /// Cores used (containers) or busy fraction (hosts).
    pub cpu: Option<f64>,
    /// Memory used, bytes.
    pub mem: Option<f64>,
    /// Memory used / limit or total.
    pub mem_ratio: Option<f64>,
    /// Received bytes/s.
    pub rx: Option<f64>,
    /// Sent bytes/s.
    pub tx: Option<f64>,
    /// Age of the newest sample, ms.
    pub t: i64,
}

/// Runs the queries and prints the table.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let (key, metrics) = match a.what {
        What::Containers => (
            "instance",
            [
                names::CONTAINER_CPU_USAGE,
                names::CONTAINER_MEMORY_USAGE,
                names::CONTAINER_MEMORY_UTILIZATION,
                names::CONTAINER_NET_RX_BYTES,
                names::CONTAINER_NET_TX_BYTES,
            ],
        ),
        What::Hosts => (
            "host",
            [
                names::HOST_CPU_UTILIZATION,
                names::HOST_MEMORY_USED_BYTES,
                names::HOST_MEMORY_UTILIZATION,
                names::HOST_NET_RX_BYTES,
                names::HOST_NET_TX_BYTES,
            ],
        ),
    };
    let mut columns: Vec<Vec<LatestSample>> = Vec::new();
    for m in metrics {
        let q = MetricQuery {
            metric: m.to_string(),
            app: a.app.clone(),
            group: a.group.clone(),
            host: a.host.clone(),
            department: a.department.clone(),
            ..MetricQuery::default()
        };
        columns.push(client.latest_metrics(&q).await?);
    }
    let mut rows = merge(key, &columns);
    sort(&mut rows, a.sort);
    rows.truncate(a.limit);
    super::print(g, &rows, || render(a.what, &rows))
}

/// Joins the five latest-sample columns (cpu, mem, mem ratio, rx, tx) into rows keyed by
/// label `key`; network is summed over interfaces.
pub fn merge(key: &str, columns: &[Vec<LatestSample>]) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (c, samples) in columns.iter().enumerate() {
        for s in samples {
            let Some(name) = s.labels.get(key) else {
                continue;
            };
            let row = rows.entry(name.clone()).or_insert_with(|| Row {
                name: name.clone(),
                ..Row::default()
            });
            let place = if key == "host" { "datacenter" } else { "host" };
            if row.place.is_empty() {
                row.place = s.labels.get(place).cloned().unwrap_or_default();
            }
            row.t = row.t.max(s.t);
            let slot = match c {
                0 => &mut row.cpu,
                1 => &mut row.mem,
                2 => &mut row.mem_ratio,
                3 => &mut row.rx,
                _ => &mut row.tx,
            };
            *slot = Some(slot.unwrap_or(0.0) + s.v);
        }
    }
    rows.into_values().collect()
}

/// Sorts largest first (by name ascending for [`SortBy::Name`]).
pub fn sort(rows: &mut [Row], by: SortBy) {
    let key = |r: &Row| match by {
        SortBy::Cpu => r.cpu.unwrap_or(-1.0),
        SortBy::Mem => r.mem.unwrap_or(-1.0),
        SortBy::Net => r.rx.unwrap_or(0.0) + r.tx.unwrap_or(0.0),
        SortBy::Name => 0.0,
    };
    if by == SortBy::Name {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
    } else {
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The table.
pub fn render(what: What, rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no samples yet: agents push every 10 s by default\n".to_string();
    }
    let (name, place, cpu) = match what {
        What::Containers => ("INSTANCE", "HOST", "CPU (cores)"),
        What::Hosts => ("HOST", "DATACENTER", "CPU"),
    };
    let mut t = Table::new([name, place, cpu, "MEM", "MEM%", "RX/s", "TX/s"]);
    for r in rows {
        t.row([
            r.name.clone(),
            crate::output::or_dash(&r.place),
            opt(r.cpu, |v| match what {
                What::Containers => num(v),
                What::Hosts => format!("{:.1}%", v * 100.0),
            }),
            opt(r.mem, |v| bytes(v as u64)),
            opt(r.mem_ratio, |v| format!("{:.1}%", v * 100.0)),
            opt(r.rx, |v| bytes(v as u64)),
            opt(r.tx, |v| bytes(v as u64)),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, inst: &str, host: &str, v: f64) -> LatestSample {
        LatestSample {
            name: name.into(),
            labels: [("instance", inst), ("host", host)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            t: 1000,
            v,
        }
    }

    #[test]
    fn merge_joins_columns_and_sort_orders_rows() {
        let cols = vec![
            vec![s("cpu", "a", "h1", 0.5), s("cpu", "b", "h2", 1.5)],
            vec![s("mem", "a", "h1", 300.0), s("mem", "b", "h2", 100.0)],
            vec![],
            vec![s("rx", "a", "h1", 10.0)],
            vec![s("tx", "a", "h1", 5.0)],
        ];
        let mut rows = merge("instance", &cols);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].place, "h1");
        sort(&mut rows, SortBy::Cpu);
        assert_eq!(rows[0].name, "b");
        sort(&mut rows, SortBy::Mem);
        assert_eq!(rows[0].name, "a");
        assert_eq!(rows[0].rx, Some(10.0));
        assert_eq!(rows[1].rx, None);
        let text = render(What::Containers, &rows);
        assert!(text.contains("INSTANCE") && text.contains("h2"));
    }
}
