//! Metric collection: every `metrics_interval` the agent reads its host and each running
//! jdos container of its engine ([`jdos_monitor::collect::Collector`]: /proc, /sys,
//! cgroups v1/v2, the container's netns) and pushes one batch through the control plane.
//! A push that fails is dropped, not retried: the next round carries fresh gauges and rates,
//! and a backlog would only delay them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_monitor::collect::{Collector, ContainerTarget, Paths};
use jdos_runtime::{LabelFilter, RuntimeState};

use crate::agent::AgentContext;

/// Starts the collection task; it ends when the agent stops.
pub fn spawn(
    ctx: AgentContext,
    interval: Duration,
    datacenter: String,
    paths: Paths,
) -> tokio::task::JoinHandle<()> {
    let labels: BTreeMap<String, String> = [
        ("host".to_string(), ctx.host.clone()),
        ("datacenter".to_string(), datacenter),
    ]
    .into();
    let collector = Arc::new(Mutex::new(Collector::new(paths, labels)));
    let mut shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            round(&ctx, &collector).await;
        }
    })
}

/// The engine's running jdos containers of this host as collection targets.
async fn targets(ctx: &AgentContext) -> Vec<ContainerTarget> {
    let listed = match ctx.driver.list(&LabelFilter::host(&ctx.host)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "metrics: cannot list containers; host metrics only");
            return Vec::new();
        }
    };
    listed
        .into_iter()
        .filter(|c| c.state == RuntimeState::Running)
        .filter_map(|c| {
            let id = c.instance?;
            Some(ContainerTarget {
                engine_id: c.id,
                labels: [
                    ("app", id.app.clone()),
                    ("env", id.env.clone()),
                    ("group", id.group.clone()),
                    ("instance", id.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            })
        })
        .collect()
}

async fn round(ctx: &AgentContext, collector: &Arc<Mutex<Collector>>) {
    let targets = targets(ctx).await;
    let c = collector.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // File reads: off the async workers.
    let batch = match tokio::task::spawn_blocking(move || {
        c.lock()
            .unwrap_or_else(|p| p.into_inner())
            .collect(now, &targets)
    })
    .await
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: collection panicked");
            return;
        }
    };
    match ctx.control.push_metrics(&ctx.host, &batch).await {
        Ok(s) => tracing::debug!(
            samples = batch.samples(),
            accepted = s.accepted,
            "metrics pushed"
        ),
        Err(e) => tracing::debug!(error = %e, "metrics push failed: dropped this round"),
    }
}
