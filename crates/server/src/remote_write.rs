//! Prometheus remote write (protocol 1.0): every sample the server ingests is also sent to
//! a Prometheus-compatible store (`--remote-write-url`), as snappy-compressed protobuf
//! `WriteRequest`s.
//!
//! Ingest hands accepted samples to a bounded queue ([`RemoteWriter::enqueue`], never
//! blocking ingest); one sender task drains it in batches of up to
//! [`RemoteWriteConfig::max_samples_per_send`], retrying 5xx, 429 and transport errors with
//! exponential back-off, and dropping a batch the receiver refuses (4xx) or still fails
//! after [`RemoteWriteConfig::max_retries`]. When the queue is full the oldest samples are
//! dropped. Counts of sent, failed and dropped samples are exported on `/metrics`.
//!
//! The protobuf messages are encoded by hand (four small messages, no protoc):
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_monitor::Labels;
use tokio::sync::{watch, Notify};

/// Settings of the remote-write sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWriteConfig {
    /// Receiver URL, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// Samples held at most while the receiver is slow or down (oldest dropped beyond).
    pub queue_capacity: usize,
    /// Samples per request.
    pub max_samples_per_send: usize,
    /// Wait at most this long to fill a batch.
    pub batch_wait: Duration,
    /// Attempts after the first before a batch is dropped.
    pub max_retries: u32,
    /// First back-off; doubles per retry up to `max_backoff`.
    pub min_backoff: Duration,
    /// Back-off cap.
    pub max_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl RemoteWriteConfig {
    /// Defaults for `url`: 500,000 queued samples, 5,000 per send, 1 s batch wait, 8
    /// retries from 100 ms up to 10 s, 30 s per request.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteWriteConfig {
            url: url.into(),
            queue_capacity: 500_000,
            max_samples_per_send: 5_000,
            batch_wait: Duration::from_secs(1),
            max_retries: 8,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

/// One queued sample: its series and value.
#[derive(Debug, Clone)]
struct Queued {
    labels: Arc<Labels>,
    t: i64,
    v: f64,
}

/// Counters of the sender, for `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteWriteStats {
    /// Samples the receiver accepted.
    pub sent: AtomicU64,
    /// Samples in batches the receiver refused or that failed after every retry.
    pub failed: AtomicU64,
    /// Samples dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Retried requests.
    pub retries: AtomicU64,
}

/// The queue plus the sender's state; shared by ingest and the sender task.
#[derive(Debug)]
pub struct RemoteWriter {
    config: RemoteWriteConfig,
    queue: Mutex<VecDeque<Queued>>,
    wake: Notify,
    /// Counters.
    pub stats: RemoteWriteStats,
}

impl RemoteWriter {
    /// A writer for `config` (start its sender with [`RemoteWriter::spawn`]).
    pub fn new(config: RemoteWriteConfig) -> Arc<Self> {
        Arc::new(RemoteWriter {
            config,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stats: RemoteWriteStats::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RemoteWriteConfig {
        &self.config
    }

    /// Samples waiting.
    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues samples of one series; drops the oldest queued samples beyond capacity.
    pub fn enqueue(&self, labels: &Arc<Labels>, samples: impl IntoIterator<Item = (i64, f64)>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for (t, v) in samples {
            q.push_back(Queued {
                labels: labels.clone(),
                t,
                v,
            });
        }
        let over = q.len().saturating_sub(self.config.queue_capacity);
        if over > 0 {
            q.drain(..over);
            self.stats.dropped.fetch_add(over as u64, Ordering::Relaxed);
        }
        let ready = q.len() >= self.config.max_samples_per_send;
        drop(q);
        if ready {
            self.wake.notify_one();
        }
    }

    fn take_batch(&self) -> Vec<Queued> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(self.config.max_samples_per_send);
        q.drain(..n).collect()
    }

    /// Starts the sender task; it sends what is queued when stopped, then ends.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let http = match reqwest::Client::builder()
                .timeout(me.config.timeout)
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "remote write: cannot build an HTTP client");
                    return;
                }
            };
            loop {
                let stopping = *stop.borrow();
                if !stopping && me.queued() < me.config.max_samples_per_send {
                    tokio::select! {
                        _ = me.wake.notified() => {}
                        _ = tokio::time::sleep(me.config.batch_wait) => {}
                        _ = stop.changed() => {}
                    }
                }
                let batch = me.take_batch();
                if batch.is_empty() {
                    if stopping || *stop.borrow() {
                        return;
                    }
                    continue;
                }
                let stopping = *stop.borrow();
                me.send(&http, &batch, stopping).await;
            }
        })
    }

    async fn send(&self, http: &reqwest::Client, batch: &[Queued], stopping: bool) {
        let body = match snap::raw::Encoder::new().compress_vec(&encode_write_request(batch)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "remote write: snappy failed");
                self.stats
                    .failed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return;
            }
        };
        let n = batch.len() as u64;
        let mut backoff = self.config.min_backoff;
        // While shutting down, one attempt only: do not hold the server up.
        let attempts = if stopping {
            1
        } else {
            self.config.max_retries + 1
        };
        for attempt in 0..attempts {
            let res = http
                .post(&self.config.url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("User-Agent", concat!("jdos/", env!("CARGO_PKG_VERSION")))
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await;
            let retry = match res {
                Ok(r) if r.status().is_success() => {
                    self.stats.sent.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    format!("status {}", r.status())
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(%status, samples = n, body = %text.trim(), "remote write refused a batch: dropped");
                    self.stats.failed.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) => e.to_string(),
            };
            if attempt + 1 < attempts {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(attempt, error = %retry, "remote write failed: retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            } else {
                tracing::warn!(error = %retry, samples = n, "remote write failed after every retry: dropped");
            }
        }
        self.stats.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// The sender's counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for (name, help, v) in [
            (
                "jdos_remote_write_sent_samples_total",
                "Samples the remote-write receiver accepted.",
                &self.stats.sent,
            ),
            (
                "jdos_remote_write_failed_samples_total",
                "Samples in batches refused or failed after every retry.",
                &self.stats.failed,
            ),
            (
                "jdos_remote_write_dropped_samples_total",
                "Samples dropped because the queue was full.",
                &self.stats.dropped,
            ),
            (
                "jdos_remote_write_retries_total",
                "Remote-write requests retried.",
                &self.stats.retries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jdos_remote_write_queued_samples Samples waiting to be sent.\n# TYPE jdos_remote_write_queued_samples gauge\njdos_remote_write_queued_samples {}",
            self.queued()
        );
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited).
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes `samples` as a `WriteRequest`, one `TimeSeries` per run of samples of the
/// same series (samples of a series stay in time order).
fn encode_write_request(samples: &[Queued]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 24);
    let mut ts = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let labels = &samples[i].labels;
        let mut j = i;
        while j < samples.len() && Arc::ptr_eq(&samples[j].labels, labels) {
            j += 1;
        }
        ts.clear();
        let mut l = Vec::new();
        for (name, value) in labels.pairs() {
            l.clear();
            bytes_field(&mut l, 1, name.as_bytes());
            bytes_field(&mut l, 2, value.as_bytes());
            bytes_field(&mut ts, 1, &l);
        }
        for s in &samples[i..j] {
            l.clear();
            key(&mut l, 1, 1);
            l.extend_from_slice(&s.v.to_le_bytes());
            key(&mut l, 2, 0);
            varint(&mut l, s.t as u64);
            bytes_field(&mut ts, 2, &l);
        }
        bytes_field(&mut out, 1, &ts);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_request_encoding_matches_protobuf() {
        let l = Arc::new(Labels::new("up", [("job", "a")]).unwrap());
        let enc = encode_write_request(&[Queued {
            labels: l,
            t: 1,
            v: 1.0,
        }]);
        // Hand-checked: TimeSeries{labels: [__name__=up, job=a], samples: [{1.0, 1}]}.
        let mut want = vec![0x0a, 0x27];
        want.extend([0x0a, 0x0e, 0x0a, 0x08]);
        want.extend(b"__name__");
        want.extend([0x12, 0x02]);
        want.extend(b"up");
        want.extend([0x0a, 0x08, 0x0a, 0x03]);
        want.extend(b"job");
        want.extend([0x12, 0x01, b'a']);
        want.extend([0x12, 0x0b, 0x09]);
        want.extend(1.0f64.to_le_bytes());
        want.extend([0x10, 0x01]);
        assert_eq!(enc, want);
    }

    #[test]
    fn queue_is_bounded_and_counts_drops() {
        let mut c = RemoteWriteConfig::new("http://127.0.0.1:9/");
        c.queue_capacity = 3;
        let w = RemoteWriter::new(c);
        let l = Arc::new(Labels::new("m", [("a", "b")]).unwrap());
        w.enqueue(&l, (0..5).map(|t| (t, 0.0)));
        assert_eq!(w.queued(), 3);
        assert_eq!(w.stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(w.take_batch()[0].t, 2, "the oldest were dropped");
    }

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, vec![0xac, 0x02]);
        v.clear();
        varint(&mut v, (-1i64) as u64);
        assert_eq!(v.len(), 10);
    }
}
