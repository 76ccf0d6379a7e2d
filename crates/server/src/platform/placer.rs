//! The scheduler state one server plans against: a [`Snapshot`] kept fresh
//! from store watches instead of reloaded per operation.

use std::collections::HashMap;
use std::sync::Arc;

use jdos_scheduler::store_planner::{load_snapshot, SnapshotFeed};
use jdos_scheduler::{Scheduler, SchedulerConfig, Snapshot};
use jdos_store::Store;

use super::Result;

/// Scheduler, snapshot and the feed that keeps the snapshot current.
pub(super) struct Placer {
    pub(super) sched: Scheduler,
    pub(super) snap: Snapshot,
    /// Lent to the planner during a commit (it drains it after a conflict).
    pub(super) feed: Option<SnapshotFeed>,
    /// Host → switch name, for the network choice.
    pub(super) switches: Arc<HashMap<String, String>>,
}

impl Placer {
    /// Loads the snapshot and starts its feed.
    pub(super) async fn load(store: &dyn Store, config: &SchedulerConfig) -> Result<Placer> {
        let started = std::time::Instant::now();
        let (snap, rev) = load_snapshot(store).await?;
        let feed = SnapshotFeed::start_with_topology(store, rev + 1).await?;
        tracing::debug!(
            hosts = snap.len(),
            ms = started.elapsed().as_millis() as u64,
            "placement snapshot loaded"
        );
        let switches: HashMap<String, String> = snap
            .hosts()
            .iter()
            .map(|e| (e.name.clone(), snap.switch_name(e.switch).to_string()))
            .collect();
        Ok(Placer {
            switches: Arc::new(switches),
            sched: Scheduler::new(config.clone()),
            snap,
            feed: Some(feed),
        })
    }

    /// Applies what the store changed since the last call; `false` when the
    /// snapshot must be rebuilt (topology changed or the watch ended).
    pub(super) fn refresh(&mut self) -> bool {
        let Some(feed) = self.feed.as_mut() else {
            return false;
        };
        match feed.drain_all(&mut self.snap) {
            Ok(s) => !s.rebuild,
            Err(e) => {
                tracing::debug!(error = %e, "snapshot feed ended: rebuilding");
                false
            }
        }
    }
}

/// Brings `slot` to a current placer: loads it on first use, refreshes it
/// from its feed, rebuilds it when the topology changed.
pub(super) async fn ready<'a>(
    slot: &'a mut Option<Placer>,
    store: &dyn Store,
    config: &SchedulerConfig,
) -> Result<&'a mut Placer> {
    let fresh = match slot.as_mut() {
        Some(p) => p.refresh(),
        None => false,
    };
    if !fresh {
        *slot = Some(Placer::load(store, config).await?);
    }
    Ok(slot.as_mut().expect("just loaded"))
}
