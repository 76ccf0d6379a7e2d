//! Agent endpoints: register a host, heartbeat, long-poll work orders.
//!
//! Registration is authorized by the server's join token; the other calls by
//! the per-host token the registration answers with (build a second client
//! with [`Client::with_token`]). Each call takes its own time limit: an agent
//! must learn quickly that the server is gone (it self-fences), while a
//! long-poll legitimately waits.

use std::time::Duration;

use jdos_types::agent::{AgentRegister, AgentSession, AssignmentList, Heartbeat, HeartbeatReply};
use reqwest::Method;
use serde::Serialize;

use crate::{seg, Client, ClientError};

/// Extra time a long-poll request is given beyond `wait_ms` before the client
/// gives up on it (the server answers at `wait_ms` at the latest).
const LONG_POLL_SLACK: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct AssignmentsQuery {
    after: u64,
    wait_ms: u64,
    known: u64,
}

impl Client {
    /// The same server and connection pool with another bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()).filter(|t| !t.is_empty()),
        }
    }

    /// `POST /api/v1/agents/register`: registers (or re-registers) the
    /// agent's host. The client's token must be the server's join token.
    pub async fn agent_register(
        &self,
        req: &AgentRegister,
        timeout: Duration,
    ) -> Result<AgentSession, ClientError> {
        let rb = self
            .request(Method::POST, "/api/v1/agents/register")
            .timeout(timeout)
            .json(req);
        self.call(rb).await
    }

    /// `POST /api/v1/agents/{host}/heartbeat`, with the host's agent token.
    pub async fn agent_heartbeat(
        &self,
        host: &str,
        hb: &Heartbeat,
        timeout: Duration,
    ) -> Result<HeartbeatReply, ClientError> {
        let rb = self
            .request(
                Method::POST,
                &format!("/api/v1/agents/{}/heartbeat", seg(host)),
            )
            .timeout(timeout)
            .json(hb);
        self.call(rb).await
    }

    /// `GET /api/v1/agents/{host}/assignments?after=REV&wait_ms=N&known=REV`:
    /// the host's work orders, at once when they changed after `after`, else
    /// when they change or `wait` passes; those unchanged since `known` (the
    /// revision of the list the caller holds, 0 for none) by identity only.
    pub async fn agent_assignments(
        &self,
        host: &str,
        after: u64,
        known: u64,
        wait: Duration,
    ) -> Result<AssignmentList, ClientError> {
        let q = AssignmentsQuery {
            after,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            known,
        };
        let rb = self
            .request(
                Method::GET,
                &format!("/api/v1/agents/{}/assignments", seg(host)),
            )
            .timeout(wait + LONG_POLL_SLACK)
            .query(&q);
        self.call(rb).await
    }
}
