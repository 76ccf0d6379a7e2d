//! Health probes (tcp connect, http GET, exec through the driver) and the
//! bookkeeping that turns probe results into healthy / unhealthy.
//!
//! The agent runs probes itself rather than through the engine's
//! HEALTHCHECK: the same code then works on every driver, and the agent sees
//! results at once instead of polling the engine.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use jdos_types::{InstanceId, UnixMillis};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::{HealthCheck, Probe};
use crate::Driver;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The container answered as required.
    Healthy,
    /// It did not; why.
    Unhealthy(String),
}

impl ProbeOutcome {
    /// True for `Healthy`.
    pub fn is_healthy(&self) -> bool {
        matches!(self, ProbeOutcome::Healthy)
    }
}

/// Runs one probe of `check` against the container `id` at `ip`.
#[tracing::instrument(skip_all, fields(container = %id))]
pub async fn probe(
    check: &HealthCheck,
    ip: Option<Ipv4Addr>,
    driver: &dyn Driver,
    id: &InstanceId,
) -> ProbeOutcome {
    let timeout = Duration::from_millis(check.timeout_ms);
    if !driver.addresses_reachable() {
        if let Probe::Tcp { port } | Probe::Http { port, .. } = &check.probe {
            // A simulated container answers as its driver says (an exec
            // result); its address leads nowhere real.
            let what = vec![format!("probe:{port}")];
            return exec_outcome(&what, driver.exec(id, &what, timeout).await);
        }
    }
    match &check.probe {
        Probe::Tcp { port } => match ip {
            None => ProbeOutcome::Unhealthy("the container has no address".into()),
            Some(ip) => tcp_probe(SocketAddr::from((ip, *port)), timeout).await,
        },
        Probe::Http { port, path } => match ip {
            None => ProbeOutcome::Unhealthy("the container has no address".into()),
            Some(ip) => http_probe(SocketAddr::from((ip, *port)), path, timeout).await,
        },
        Probe::Exec { command } => exec_outcome(command, driver.exec(id, command, timeout).await),
    }
}

fn exec_outcome(
    command: &[String],
    result: Result<crate::ExecOutput, crate::DriverError>,
) -> ProbeOutcome {
    match result {
        Ok(out) if out.exit_code == 0 => ProbeOutcome::Healthy,
        Ok(out) => ProbeOutcome::Unhealthy(format!(
            "{command:?} exited with {}: {}",
            out.exit_code,
            out.stderr.trim()
        )),
        Err(e) => ProbeOutcome::Unhealthy(format!("exec failed: {e}")),
    }
}

/// Healthy when a TCP connection to `addr` opens within `timeout`.
pub async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> ProbeOutcome {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ProbeOutcome::Healthy,
        Ok(Err(e)) => ProbeOutcome::Unhealthy(format!("connect to {addr}: {e}")),
        Err(_) => ProbeOutcome::Unhealthy(format!("connect to {addr}: no answer in {timeout:?}")),
    }
}

/// Healthy when `GET path` on `addr` answers 2xx or 3xx within `timeout`.
pub async fn http_probe(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeOutcome {
    let run = async {
        let mut s = TcpStream::connect(addr).await?;
        // HTTP/1.0 with Connection: close: the simplest request every server
        // (busybox httpd included) answers, and the reply ends at EOF.
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: jdos-health\r\nConnection: close\r\n\r\n",
            addr.ip()
        );
        s.write_all(req.as_bytes()).await?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            ProbeOutcome::Unhealthy(format!("GET {path} on {addr}: no answer in {timeout:?}"))
        }
        Ok(Err(e)) => ProbeOutcome::Unhealthy(format!("GET {path} on {addr}: {e}")),
        Ok(Ok(head)) => {
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or_default();
            match parse_status(line) {
                Some(code) if (200..400).contains(&code) => ProbeOutcome::Healthy,
                Some(code) => {
                    ProbeOutcome::Unhealthy(format!("GET {path} on {addr}: status {code}"))
                }
                None => ProbeOutcome::Unhealthy(format!(
                    "GET {path} on {addr}: not an HTTP reply: {line:?}"
                )),
            }
        }
    }
}

fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A container's health as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No verdict yet (in the start period, or not enough probes).
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

/// Turns probe outcomes into a [`HealthStatus`], Docker's way: failures in
/// the start period do not count; a pass makes it healthy; `retries`
/// consecutive failures make it unhealthy. Time is passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    retries: u32,
    start_period_ms: u64,
    started_at_ms: UnixMillis,
    consecutive_failures: u32,
    status: HealthStatus,
    last_failure: Option<String>,
}

impl HealthTracker {
    /// A tracker for a container started at `started_at_ms`.
    pub fn new(check: &HealthCheck, started_at_ms: UnixMillis) -> Self {
        HealthTracker {
            retries: check.retries.max(1),
            start_period_ms: check.start_period_ms,
            started_at_ms,
            consecutive_failures: 0,
            status: HealthStatus::Starting,
            last_failure: None,
        }
    }

    /// Records an outcome observed at `now_ms`; returns the new status.
    pub fn record(&mut self, now_ms: UnixMillis, outcome: &ProbeOutcome) -> HealthStatus {
        match outcome {
            ProbeOutcome::Healthy => {
                self.consecutive_failures = 0;
                self.status = HealthStatus::Healthy;
            }
            ProbeOutcome::Unhealthy(why) => {
                self.last_failure = Some(why.clone());
                let in_start_period =
                    now_ms < self.started_at_ms.saturating_add(self.start_period_ms);
                if !in_start_period || self.status == HealthStatus::Healthy {
                    self.consecutive_failures += 1;
                    if self.consecutive_failures >= self.retries {
                        self.status = HealthStatus::Unhealthy;
                    }
                }
            }
        }
        self.status
    }

    /// Current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Why the last probe failed.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_reads_the_status() {
        let t = Duration::from_secs(2);
        let ok = serve_once("HTTP/1.0 200 OK\r\n\r\nhi").await;
        assert!(http_probe(ok, "/", t).await.is_healthy());
        let redirect = serve_once("HTTP/1.1 302 Found\r\n\r\n").await;
        assert!(http_probe(redirect, "/", t).await.is_healthy());
        let err = serve_once("HTTP/1.1 503 Unavailable\r\n\r\n").await;
        assert_eq!(
            http_probe(err, "/", t).await,
            ProbeOutcome::Unhealthy(format!("GET / on {err}: status 503"))
        );
        let junk = serve_once("SSH-2.0-x\r\n").await;
        assert!(!http_probe(junk, "/", t).await.is_healthy());
    }

    #[tokio::test]
    async fn tcp_probe_sees_open_and_closed_ports() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(tcp_probe(addr, Duration::from_secs(1)).await.is_healthy());
        drop(l);
        assert!(!tcp_probe(addr, Duration::from_secs(1)).await.is_healthy());
    }

    #[test]
    fn tracker_counts_failures_after_the_start_period() {
        let mut check = HealthCheck::new(Probe::Tcp { port: 80 });
        check.retries = 2;
        check.start_period_ms = 1_000;
        let mut t = HealthTracker::new(&check, 10_000);
        let bad = ProbeOutcome::Unhealthy("refused".into());
        assert_eq!(t.record(10_500, &bad), HealthStatus::Starting);
        assert_eq!(t.record(10_900, &bad), HealthStatus::Starting);
        assert_eq!(t.record(11_000, &bad), HealthStatus::Starting);
        assert_eq!(t.record(11_500, &bad), HealthStatus::Unhealthy);
        assert_eq!(
            t.record(12_000, &ProbeOutcome::Healthy),
            HealthStatus::Healthy
        );
        assert_eq!(t.consecutive_failures(), 0);
        assert_eq!(t.record(12_500, &bad), HealthStatus::Healthy);
        assert_eq!(t.record(13_000, &bad), HealthStatus::Unhealthy);
        assert_eq!(t.last_failure(), Some("refused"));
    }
}
