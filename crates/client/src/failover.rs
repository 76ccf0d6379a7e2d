//! Failover: status, releasing a brake, host drains.

use jdos_types::failover::{Brake, Drain, DrainRequest, FailoverStatus, ResumeFailover};
use reqwest::Method;

use crate::{seg, Client, ClientError};

impl Client {
    /// `GET /api/v1/failover`: timings, brakes, crash-looping containers.
    /// Admin or ops.
    pub async fn failover_status(&self) -> Result<FailoverStatus, ClientError> {
        self.get_json("/api/v1/failover", &()).await
    }

    /// `POST /api/v1/failover/resume`: releases a datacenter's brake. Admin
    /// or ops.
    pub async fn resume_failover(&self, datacenter: &str) -> Result<Brake, ClientError> {
        let body = ResumeFailover {
            datacenter: datacenter.to_string(),
        };
        self.send_json(Method::POST, "/api/v1/failover/resume", &body)
            .await
    }

    /// `POST /api/v1/hosts/{name}/drain`: cordons the host and starts moving
    /// its containers elsewhere (same IPs); answers the drain at once (a
    /// running one when it was already draining). Admin or ops.
    pub async fn drain_host(&self, name: &str, req: &DrainRequest) -> Result<Drain, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/api/v1/hosts/{}/drain", seg(name)),
            req,
        )
        .await
    }

    /// `GET /api/v1/hosts/{name}/drain`: the host's latest drain and its progress.
    pub async fn get_drain(&self, name: &str) -> Result<Drain, ClientError> {
        self.get_json(&format!("/api/v1/hosts/{}/drain", seg(name)), &())
            .await
    }
}
