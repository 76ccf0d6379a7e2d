//! Carries out the planner's actions through the driver, at most
//! `parallelism` at a time (actions of one pass concern different
//! identities, so they never race each other).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use jdos_runtime::{DestroyOptions, Driver, DriverError, NetworkRealization};
use jdos_types::agent::SnapshotReport;
use jdos_types::{InstanceId, Network};
use tokio::sync::{Mutex, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::plan::{Action, DestroyReason, StopReason};

/// What came of one action.
#[derive(Debug)]
pub struct Outcome {
    /// The identity acted on.
    pub id: InstanceId,
    /// `create`, `start`, `stop`, `recreate`, `destroy`.
    pub kind: &'static str,
    /// The container is now running (created and started, or restarted).
    pub started: bool,
    /// The container is now gone.
    pub destroyed: bool,
    /// For a live update: the spec hash whose limits it applied (or tried
    /// to).
    pub updated_to: Option<String>,
    /// For a commit: its outcome.
    pub snapshot: Option<SnapshotReport>,
    /// The error, if it failed.
    pub error: Option<DriverError>,
    /// How long it took.
    pub took: std::time::Duration,
}

/// Runs actions against one driver.
pub struct Executor {
    driver: Arc<dyn Driver>,
    realization: NetworkRealization,
    // Docker networks known to exist with the right shape: one
    // `ensure_network` per network per agent life, not one per container.
    networks: Mutex<HashSet<String>>,
    limit: Semaphore,
    parallelism: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("driver", &self.driver.name())
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

impl Executor {
    /// An executor over `driver`, realizing networks as `realization` says,
    /// running at most `parallelism` actions at once.
    pub fn new(
        driver: Arc<dyn Driver>,
        realization: NetworkRealization,
        parallelism: usize,
    ) -> Self {
        let parallelism = parallelism.max(1);
        Executor {
            driver,
            realization,
            networks: Mutex::new(HashSet::new()),
            limit: Semaphore::new(parallelism),
            parallelism,
        }
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Runs every action, at most `parallelism` at once, and returns their
    /// outcomes (in completion order).
    pub async fn run_all(&self, actions: Vec<Action>) -> Vec<Outcome> {
        futures_util::stream::iter(actions)
            .map(|a| self.execute(a))
            .buffer_unordered(self.parallelism)
            .collect()
            .await
    }

    /// Runs one action once a slot is free.
    pub async fn execute(&self, action: Action) -> Outcome {
        let id = action.id().clone();
        let kind = action.kind();
        let span = tracing::info_span!("action", container = %id, action = kind);
        async {
            let _permit = self.limit.acquire().await;
            let t = Instant::now();
            let (started, destroyed) = match &action {
                Action::Create { start, .. } => (*start, false),
                Action::Start { .. } | Action::Recreate { .. } => (true, false),
                Action::Stop { .. } | Action::Update { .. } | Action::Commit { .. } => {
                    (false, false)
                }
                Action::Destroy { .. } => (false, true),
            };
            let updated_to = match &action {
                Action::Update { hash, .. } => Some(hash.clone()),
                _ => None,
            };
            let (result, snapshot) = match &action {
                Action::Commit { id, reference } => {
                    info!(image = %reference, "committing");
                    let r = self.driver.commit(id, reference).await;
                    let report = SnapshotReport {
                        reference: reference.clone(),
                        image_id: r.as_ref().cloned().unwrap_or_default(),
                        error: r.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                    };
                    (r.map(|_| ()), Some(report))
                }
                _ => (self.apply(&action).await, None),
            };
            let took = t.elapsed();
            match &result {
                Ok(()) => debug!(took_ms = took.as_millis() as u64, "done"),
                Err(e) => warn!(error = %e, "failed"),
            }
            Outcome {
                id,
                kind,
                started: started && result.is_ok(),
                destroyed: destroyed && result.is_ok(),
                updated_to,
                snapshot,
                error: result.err(),
                took,
            }
        }
        .instrument(span)
        .await
    }

    async fn apply(&self, action: &Action) -> Result<(), DriverError> {
        let d = &self.driver;
        match action {
            Action::Create {
                spec,
                network,
                start,
            } => {
                self.ensure_network(network.as_ref()).await?;
                self.create(spec, network.as_ref()).await?;
                if *start {
                    d.start(&spec.instance).await?;
                }
                Ok(())
            }
            Action::Start { id } => d.start(id).await,
            Action::Stop { id, grace, reason } => {
                match reason {
                    StopReason::Fenced => {
                        warn!("killing: the server has not been reached for too long")
                    }
                    StopReason::Unhealthy => info!("stopping: unhealthy"),
                    StopReason::Desired => info!("stopping: assignment says stopped"),
                }
                d.stop(id, *grace).await
            }
            Action::Update { spec, .. } => {
                info!(
                    cpu_millis = spec.resources.cpu_millis,
                    memory_mib = spec.resources.memory_bytes >> 20,
                    "updating limits live"
                );
                d.update_resources(&spec.instance, &spec.resources, &spec.isolation)
                    .await
            }
            Action::Recreate { spec, network, why } => {
                info!(why = %why, "recreating");
                d.destroy(&spec.instance, DestroyOptions { remove_data: false })
                    .await?;
                self.ensure_network(network.as_ref()).await?;
                self.create(spec, network.as_ref()).await?;
                d.start(&spec.instance).await
            }
            Action::Commit { id, reference } => d.commit(id, reference).await.map(|_| ()),
            Action::Destroy { id, reason } => {
                match reason {
                    DestroyReason::Deleted => info!("destroying: assignment says deleted"),
                    DestroyReason::Unassigned => {
                        info!("destroying: no assignment on this host (fencing)")
                    }
                }
                d.destroy(id, DestroyOptions::purge()).await
            }
        }
    }

    async fn create(
        &self,
        spec: &jdos_runtime::ContainerSpec,
        network: Option<&Network>,
    ) -> Result<(), DriverError> {
        match self.driver.create(spec).await {
            Ok(h) => {
                for w in &h.warnings {
                    warn!(warning = %w, "engine warning");
                }
                Ok(())
            }
            Err(e) => {
                if e.is_not_found() {
                    // The network went away behind our back: realize it
                    // again next time.
                    if let Some(n) = network {
                        self.networks.lock().await.remove(&network_key(n));
                    }
                }
                Err(e)
            }
        }
    }

    async fn ensure_network(&self, network: Option<&Network>) -> Result<(), DriverError> {
        let Some(n) = network else { return Ok(()) };
        let key = network_key(n);
        let mut known = self.networks.lock().await;
        if known.contains(&key) {
            return Ok(());
        }
        let info = self.driver.ensure_network(n, &self.realization).await?;
        if info.created {
            info!(network = %n.name, docker_network = %info.name, "realized network");
        }
        known.insert(key);
        Ok(())
    }
}

fn network_key(n: &Network) -> String {
    format!("{}|{}|{}|{}", n.name, n.vlan, n.subnet, n.gateway)
}
