//! One store watch over every work order, fanned out per host, so that
//! thousands of agents long-polling their assignments cost one watch, not
//! one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_store::{Revision, Store};
use jdos_types::keys;
use tokio::sync::{watch, OnceCell};

use super::Result;

/// Per-host revision of the last change to its work orders.
pub struct AssignmentHub {
    store: Arc<dyn Store>,
    inner: OnceCell<Arc<HubState>>,
}

struct HubState {
    /// Changes before this revision are not tracked per host (the hub
    /// started, or its watch restarted, at it).
    since: Mutex<Revision>,
    hosts: Mutex<HashMap<String, watch::Sender<Revision>>>,
}

impl HubState {
    fn sender(&self, host: &str) -> watch::Sender<Revision> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }
}

impl std::fmt::Debug for AssignmentHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignmentHub").finish_non_exhaustive()
    }
}

impl AssignmentHub {
    /// A hub over `store`; its watch starts on first use.
    pub fn new(store: Arc<dyn Store>) -> Self {
        AssignmentHub {
            store,
            inner: OnceCell::new(),
        }
    }

    async fn state(&self) -> Result<&Arc<HubState>> {
        self.inner
            .get_or_try_init(|| async {
                let rev = self.store.revision().await?;
                let state = Arc::new(HubState {
                    since: Mutex::new(rev),
                    hosts: Mutex::new(HashMap::new()),
                });
                let w = self.store.watch(keys::ASSIGN, rev + 1).await?;
                tokio::spawn(run(self.store.clone(), Arc::downgrade(&state), w));
                Ok(state)
            })
            .await
    }

    /// The revision of the last change to `host`'s work orders as far as
    /// the hub knows (at least the revision it started tracking at).
    pub async fn revision_of(&self, host: &str) -> Result<Revision> {
        let state = self.state().await?;
        let since = *state.since.lock().unwrap_or_else(|p| p.into_inner());
        let known = state
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .map_or(0, |tx| *tx.borrow());
        Ok(known.max(since))
    }

    /// Waits until `host`'s work orders changed after revision `after`, or
    /// `wait` passed. Returns at once when they did, when `after` is 0, or
    /// when `after` predates what the hub tracks (it cannot tell then).
    pub async fn wait_change(&self, host: &str, after: Revision, wait: Duration) -> Result<()> {
        let state = self.state().await?;
        if after == 0 || after < *state.since.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(());
        }
        let mut rx = state.sender(host).subscribe();
        let changed = |r: &Revision| *r > after;
        let _ = tokio::time::timeout(wait, rx.wait_for(changed)).await;
        Ok(())
    }
}

/// Feeds per-host revisions from the watch; restarts the watch when it ends.
async fn run(store: Arc<dyn Store>, state: std::sync::Weak<HubState>, mut w: jdos_store::Watch) {
    loop {
        match w.next().await {
            Some(Ok(batch)) => {
                let Some(state) = state.upgrade() else { return };
                for ev in batch {
                    let Some(rest) = ev.kv.key.strip_prefix(keys::ASSIGN) else {
                        continue;
                    };
                    let host = rest.split('/').next().unwrap_or_default();
                    let rev = ev.kv.mod_revision;
                    state.sender(host).send_if_modified(|r| {
                        let newer = rev > *r;
                        if newer {
                            *r = rev;
                        }
                        newer
                    });
                }
            }
            ended => {
                if let Some(Err(e)) = ended {
                    tracing::warn!(error = %e, "assignment watch failed; restarting");
                }
                let Some(state) = state.upgrade() else { return };
                // Re-watch from now; anything before counts as changed, so
                // every waiter answers with a fresh list.
                let rev = loop {
                    match store.revision().await {
                        Ok(r) => break r,
                        Err(jdos_store::StoreError::Closed) => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                *state.since.lock().unwrap_or_else(|p| p.into_inner()) = rev;
                for tx in state
                    .hosts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                {
                    tx.send_modify(|r| *r = (*r).max(rev));
                }
                match store.watch(keys::ASSIGN, rev + 1).await {
                    Ok(nw) => w = nw,
                    Err(_) => return,
                }
            }
        }
    }
}
