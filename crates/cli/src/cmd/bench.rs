//! `jdos bench api`: open-loop steady load of mixed read requests against a
//! running server; reports the achieved rate, latency percentiles and errors.
//!
//! Open loop: request `i` is due at `start + i / rate` whether or not earlier
//! ones have answered, and its latency is measured from that due time, so a
//! stalled server shows up as latency instead of silently lowering the load
//! (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_client::{Client, HostQuery};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to benchmark.
    #[command(subcommand)]
    pub what: What,
}

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Mixed read requests (a page of hosts, one host, whoami) at a fixed rate.
    Api(ApiArgs),
    /// Host loss → every container running elsewhere with its IP, on this
    /// machine's Docker engine with real agent processes.
    Failover(super::bench_failover::FailoverArgs),
}

/// `bench api` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Requests per second to send.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// How long to send, e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Most requests in flight at once; a request due while all are busy is
    /// counted as dropped (the server could not keep up).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Hosts per page for the list request.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Print the report as JSON (same as `-o json`).
    #[arg(long)]
    pub json: bool,
}

/// Latency summary of one kind of request (milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Completed requests (successes and errors).
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes samples (any order).
    pub fn from_samples(mut s: Vec<Duration>) -> Latency {
        if s.is_empty() {
            return Latency::default();
        }
        s.sort_unstable();
        let pick = |p: f64| {
            // Nearest-rank percentile: the smallest sample ≥ p of all samples.
            let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
            ms(s[rank - 1])
        };
        Latency {
            count: s.len(),
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: ms(s[s.len() - 1]),
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Latency of one kind of request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindLatency {
    /// Method and route, e.g. `GET /api/v1/whoami`.
    pub request: String,
    /// Its latency summary.
    #[serde(flatten)]
    pub latency: Latency,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Server address.
    pub addr: String,
    /// Requests per second asked for.
    pub target_rate: f64,
    /// Seconds of sending.
    pub duration_s: f64,
    /// In-flight cap.
    pub concurrency: usize,
    /// Requests sent.
    pub sent: usize,
    /// Requests due while `concurrency` were in flight, not sent.
    pub dropped: usize,
    /// Requests answered with an error or not answered.
    pub errors: usize,
    /// Completed requests per second of wall time (until the last answer).
    pub achieved_rate: f64,
    /// All requests.
    pub all: Latency,
    /// Per request kind.
    pub by_kind: Vec<KindLatency>,
    /// The first error seen, to explain a non-zero `errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ListHosts,
    GetHost,
    WhoAmI,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::ListHosts, "GET /api/v1/hosts?limit=N"),
    (Kind::GetHost, "GET /api/v1/hosts/{name}"),
    (Kind::WhoAmI, "GET /api/v1/whoami"),
];

/// Runs the benchmark.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let args = match a.what {
        What::Api(args) => args,
        What::Failover(f) => return super::bench_failover::run(f, g).await,
    };
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 1_000_000.0,
        "--rate must be between 0 and 1000000 requests per second"
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be more than 0");
    let client = super::client(g)?;
    // Warm up and learn host names (and fail early on a bad address or token).
    client.whoami().await?;
    let names: Vec<String> = client
        .list_hosts(&HostQuery {
            limit: Some(args.page_size),
            ..HostQuery::default()
        })
        .await?
        .items
        .into_iter()
        .map(|h| h.name)
        .collect();
    anyhow::ensure!(
        !names.is_empty(),
        "the server has no hosts to read: start it with `jdos dev` (it registers simulated hosts)"
    );
    if !args.json && g.output == crate::output::OutputFormat::Table {
        eprintln!(
            "sending {} req/s for {:?} to {} (open loop, at most {} in flight)…",
            args.rate,
            args.duration,
            client.addr(),
            args.concurrency
        );
    }
    let report = load(client, Arc::new(names), &args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    super::print(g, &report, || render(&report))
}

struct Sample {
    kind: usize,
    latency: Duration,
    error: Option<String>,
}

async fn load(client: Client, names: Arc<Vec<String>>, a: &ApiArgs) -> anyhow::Result<Report> {
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let total = (a.rate * a.duration.as_secs_f64()).round() as usize;
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let start = Instant::now();
    let mut dropped = 0usize;
    let mut sent = 0usize;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        sent += 1;
        let client = client.clone();
        let names = names.clone();
        let tx = tx.clone();
        let kind = i % KINDS.len();
        let page = a.page_size;
        tokio::spawn(async move {
            let r = match KINDS[kind].0 {
                Kind::ListHosts => client
                    .list_hosts(&HostQuery {
                        limit: Some(page),
                        ..HostQuery::default()
                    })
                    .await
                    .map(|_| ()),
                Kind::GetHost => client
                    .get_host(&names[(i / KINDS.len()) % names.len()])
                    .await
                    .map(|_| ()),
                Kind::WhoAmI => client.whoami().await.map(|_| ()),
            };
            let latency = due.elapsed();
            drop(permit);
            let _ = tx.send(Sample {
                kind,
                latency,
                error: r.err().map(|e| e.to_string()),
            });
        });
    }
    drop(tx);
    let mut all = Vec::with_capacity(sent);
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
    let mut errors = 0;
    let mut first_error = None;
    while let Some(s) = rx.recv().await {
        all.push(s.latency);
        per[s.kind].push(s.latency);
        if let Some(e) = s.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = all.len();
    Ok(Report {
        addr: client.addr().to_string(),
        target_rate: a.rate,
        duration_s: a.duration.as_secs_f64(),
        concurrency: a.concurrency,
        sent,
        dropped,
        errors,
        achieved_rate: ((completed - errors) as f64 / elapsed * 10.0).round() / 10.0,
        all: Latency::from_samples(all),
        by_kind: KINDS
            .iter()
            .zip(per)
            .map(|((_, name), s)| KindLatency {
                request: name.to_string(),
                latency: Latency::from_samples(s),
            })
            .collect(),
        first_error,
    })
}

/// The report for a person.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "target:     {} req/s for {}s against {} (open loop, at most {} in flight)\n\
         sent:       {} requests, {} errors, {} dropped\n\
         achieved:   {} req/s answered successfully\n\
         latency:    p50 {} ms   p90 {} ms   p99 {} ms   max {} ms\n",
        r.target_rate,
        r.duration_s,
        r.addr,
        r.concurrency,
        r.sent,
        r.errors,
        r.dropped,
        r.achieved_rate,
        r.all.p50_ms,
        r.all.p90_ms,
        r.all.p99_ms,
        r.all.max_ms
    );
    let mut t =
        crate::output::Table::new(["  REQUEST", "COUNT", "P50 MS", "P90 MS", "P99 MS", "MAX MS"]);
    for k in &r.by_kind {
        let l = &k.latency;
        t.row([
            format!("  {}", k.request),
            l.count.to_string(),
            l.p50_ms.to_string(),
            l.p90_ms.to_string(),
            l.p99_ms.to_string(),
            l.max_ms.to_string(),
        ]);
    }
    out.push_str(&t.render());
    if let Some(e) = &r.first_error {
        out.push_str(&format!("first error: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::from_samples(s);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        let one = Latency::from_samples(vec![Duration::from_micros(1500)]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Latency::from_samples(vec![]), Latency::default());
    }
}
