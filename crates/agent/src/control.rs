//! The agent's view of the server: [`ControlPlane`], and its HTTP
//! implementation [`HttpControlPlane`]. The trait is the seam the agent's
//! tests (and in-process agents) plug their own server into.

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use jdos_client::Client;
use jdos_types::agent::{AgentRegister, AgentSession, AssignmentList, Heartbeat, HeartbeatReply};
use jdos_types::metrics::{IngestSummary, MetricBatch};

use crate::error::ControlPlaneError;

/// The three calls an agent makes.
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// Registers the host; the session's token authorizes the other calls.
    async fn register(&self, req: &AgentRegister) -> Result<AgentSession, ControlPlaneError>;

    /// Reports liveness and container state.
    async fn heartbeat(
        &self,
        host: &str,
        hb: &Heartbeat,
    ) -> Result<HeartbeatReply, ControlPlaneError>;

    /// The host's assignments: at once when they changed after revision
    /// `after` (0: always at once), else when they change or `wait` passes.
    /// Those unchanged since revision `known` (the list the agent holds; 0:
    /// none) may come as identities only, in [`AssignmentList::kept`].
    async fn assignments(
        &self,
        host: &str,
        after: u64,
        known: u64,
        wait: Duration,
    ) -> Result<AssignmentList, ControlPlaneError>;

    /// Pushes one round of the host's metrics.
    async fn push_metrics(
        &self,
        host: &str,
        batch: &MetricBatch,
    ) -> Result<IngestSummary, ControlPlaneError>;
}

/// Time limits of [`HttpControlPlane`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    /// Registration.
    pub register: Duration,
    /// One heartbeat: short, so a hung server counts toward fencing as an
    /// absent one does.
    pub heartbeat: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        CallTimeouts {
            register: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// [`ControlPlane`] over the server's HTTP API (`/api/v1/agents/…`).
#[derive(Debug)]
pub struct HttpControlPlane {
    join: Client,
    // The per-host token's client, set by each successful registration.
    session: RwLock<Option<Client>>,
    timeouts: CallTimeouts,
}

impl HttpControlPlane {
    /// A control plane at `server` (`host:port` or `http://…`), registering
    /// with `join_token`.
    pub fn new(server: &str, join_token: &str) -> Result<Self, ControlPlaneError> {
        let join = Client::new(server, Some(join_token.to_string()))
            .map_err(|e| ControlPlaneError::from_client("register", "", 0, e))?;
        Ok(HttpControlPlane {
            join,
            session: RwLock::new(None),
            timeouts: CallTimeouts::default(),
        })
    }

    /// Uses other time limits.
    pub fn with_timeouts(mut self, timeouts: CallTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    fn session(&self, host: &str) -> Result<Client, ControlPlaneError> {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ControlPlaneError::UnknownHost {
                host: host.to_string(),
                message: "not registered yet".into(),
            })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl ControlPlane for HttpControlPlane {
    async fn register(&self, req: &AgentRegister) -> Result<AgentSession, ControlPlaneError> {
        let t = self.timeouts.register;
        let session = self.join.agent_register(req, t).await.map_err(|e| {
            ControlPlaneError::from_client("register", &req.host.name, millis(t), e)
        })?;
        *self.session.write().unwrap_or_else(|p| p.into_inner()) =
            Some(self.join.with_token(session.token.clone()));
        Ok(session)
    }

    async fn heartbeat(
        &self,
        host: &str,
        hb: &Heartbeat,
    ) -> Result<HeartbeatReply, ControlPlaneError> {
        let t = self.timeouts.heartbeat;
        self.session(host)?
            .agent_heartbeat(host, hb, t)
            .await
            .map_err(|e| ControlPlaneError::from_client("heartbeat", host, millis(t), e))
    }

    async fn assignments(
        &self,
        host: &str,
        after: u64,
        known: u64,
        wait: Duration,
    ) -> Result<AssignmentList, ControlPlaneError> {
        self.session(host)?
            .agent_assignments(host, after, known, wait)
            .await
            .map_err(|e| ControlPlaneError::from_client("assignments", host, millis(wait), e))
    }

    async fn push_metrics(
        &self,
        host: &str,
        batch: &MetricBatch,
    ) -> Result<IngestSummary, ControlPlaneError> {
        // A round's batch is small; a slow push must not pile up behind the next round.
        let t = self.timeouts.register;
        self.session(host)?
            .agent_push_metrics(host, batch, t)
            .await
            .map_err(|e| ControlPlaneError::from_client("metrics", host, millis(t), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::api::RegisterHost;
    use jdos_types::Resources;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering every request with `status` and `body`
    /// (or never, when `status` is 0).
    async fn canned(status: u16, body: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = s.read(&mut buf).await;
                    if status == 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn register_req() -> AgentRegister {
        AgentRegister {
            host: RegisterHost {
                name: "h1".into(),
                datacenter: "dc".into(),
                switch: "sw".into(),
                rack: "r".into(),
                capacity: Resources::new(1000, 1 << 30),
                resource_zone: None,
                labels: Default::default(),
                driver: Some("fake".into()),
            },
            version: "test".into(),
        }
    }

    #[tokio::test]
    async fn errors_tell_refusals_from_an_unreachable_server() {
        let timeouts = CallTimeouts {
            register: Duration::from_millis(300),
            heartbeat: Duration::from_millis(300),
        };
        let refused = canned(401, r#"{"code":"unauthorized","message":"bad join token"}"#).await;
        let cp = HttpControlPlane::new(&refused, "wrong")
            .unwrap()
            .with_timeouts(timeouts);
        let e = cp.register(&register_req()).await.unwrap_err();
        assert!(
            matches!(&e, ControlPlaneError::Refused { status: 401, code, .. } if code == "unauthorized"),
            "{e:?}"
        );
        assert!(!e.is_unreachable() && !e.needs_register());
        // Before any registration there is no host token.
        let hb = cp.heartbeat("h1", &Heartbeat::default()).await.unwrap_err();
        assert!(hb.needs_register(), "{hb:?}");

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let gone = HttpControlPlane::new(&format!("127.0.0.1:{port}"), "t").unwrap();
        let e = gone.register(&register_req()).await.unwrap_err();
        assert!(
            matches!(e, ControlPlaneError::Unreachable(_)) && e.is_unreachable(),
            "{e:?}"
        );

        let wedged = canned(0, "").await;
        let cp = HttpControlPlane::new(&wedged, "t")
            .unwrap()
            .with_timeouts(timeouts);
        let e = cp.register(&register_req()).await.unwrap_err();
        assert_eq!(e, ControlPlaneError::Timeout { after_ms: 300 });
        assert!(e.is_unreachable());
    }

    #[tokio::test]
    async fn an_unknown_host_asks_for_a_new_registration() {
        let session = r#"{"host":{"name":"h1","datacenter":"dc","switch":"sw","rack":"r","capacity":{"cpu_millis":1000,"memory_bytes":1073741824}},"token":"tok","heartbeat_interval_ms":1000,"suspect_after_ms":3000,"down_after_ms":6000,"fence_after_ms":5000}"#;
        let ok = canned(200, session).await;
        let cp = HttpControlPlane::new(&ok, "join").unwrap();
        let s = cp.register(&register_req()).await.unwrap();
        assert_eq!(s.token, "tok");
        let missing = canned(404, r#"{"code":"not_found","message":"no host h1"}"#).await;
        let cp2 = HttpControlPlane::new(&missing, "join").unwrap();
        *cp2.session.write().unwrap() = Some(cp2.join.with_token("tok"));
        let e = cp2
            .heartbeat("h1", &Heartbeat::default())
            .await
            .unwrap_err();
        assert!(e.needs_register(), "{e:?}");
        let e = cp2
            .assignments("h1", 0, 0, Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(e.needs_register(), "{e:?}");
    }
}
