//! Container and host metrics: push a batch, query aggregated ranges, read the latest
//! sample per series.

use jdos_types::metrics::{IngestSummary, LatestSample, MetricBatch, MetricQuery, QueryResult};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `POST /api/v1/metrics/ingest`: appends a batch (agent or admin token).
    pub async fn push_metrics(&self, batch: &MetricBatch) -> Result<IngestSummary, ClientError> {
        self.send_json(Method::POST, "/api/v1/metrics/ingest", batch)
            .await
    }

    /// `GET /api/v1/metrics/query`: one metric aggregated over a range at a step.
    pub async fn query_metrics(&self, q: &MetricQuery) -> Result<QueryResult, ClientError> {
        self.get_json("/api/v1/metrics/query", q).await
    }

    /// `GET /api/v1/metrics/latest`: the newest sample of each series of `q.metric`
    /// matching its filters.
    pub async fn latest_metrics(&self, q: &MetricQuery) -> Result<Vec<LatestSample>, ClientError> {
        self.get_json("/api/v1/metrics/latest", q).await
    }
}

impl Client {
    /// `POST /api/v1/agents/{host}/metrics`: an agent's batch of its host's samples (the
    /// client's token must be that host's agent token).
    pub async fn agent_push_metrics(
        &self,
        host: &str,
        batch: &MetricBatch,
        timeout: std::time::Duration,
    ) -> Result<IngestSummary, ClientError> {
        let rb = self
            .request(
                Method::POST,
                &format!("/api/v1/agents/{}/metrics", crate::seg(host)),
            )
            .timeout(timeout)
            .json(batch);
        self.call(rb).await
    }
}
