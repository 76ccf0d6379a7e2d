//! Leader election for the server's singleton controllers.
//!
//! Several servers may share one store; the failover controller, the alert
//! evaluator and the autoscaling controller must each act in one of them
//! only. Each runs under a named lock `keys::LOCKS/leader/<controller>`,
//! taken the way the workflow engine takes its app locks: the key is created
//! only if absent, attached to the candidate's lease, so the store deletes it
//! when the holder's lease expires.
//!
//! - **Acquire.** Every period (TTL / 3) a candidate keeps its own lease
//!   alive and tries "create the key if absent"; the one that succeeds
//!   starts the controller task.
//! - **Renew.** The leader keeps its lease alive every period and checks that
//!   the key is still attached to it.
//! - **Fence.** The store may expire the lease TTL after it received the last
//!   renewal, so never earlier than TTL after the leader *sent* it. The leader
//!   aborts its controller a margin (TTL / 5) before that instant, whether
//!   renewals fail, hang or the key was taken: a successor cannot start
//!   before the old controller has stopped.
//! - **Hand over.** On server stop the leader aborts its controller and
//!   revokes its lease: a follower takes over within one period. After a
//!   crash it takes over within TTL + one period.
//!
//! Every change of leadership is logged (span `leader` with the controller
//! and holder) and recorded as an event (`leader.acquire` / `leader.lose`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_store::{Compare, LeaseId, OpResponse, Store, StoreError, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::events::EventDraft;
use crate::state::AppState;

/// Why a leader steps down when its server stops.
const STOPPING: &str = "server stopping";

/// Controller names, one lock each.
pub const FAILOVER: &str = "failover";
/// The alert evaluator.
pub const ALERTING: &str = "alerting";
/// The autoscaling controller.
pub const AUTOSCALE: &str = "autoscale";

/// The key of a controller's leader lock.
pub fn key(controller: &str) -> String {
    format!("{}leader/{controller}", jdos_types::keys::LOCKS)
}

/// What the leader lock holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leading server (its workflow worker id).
    pub holder: String,
    /// When it took the lead.
    pub since_ms: u64,
}

/// Who leads `controller` now, if anyone.
pub async fn current(
    store: &dyn Store,
    controller: &str,
) -> Result<Option<LeaderRecord>, StoreError> {
    Ok(match store.get(&key(controller)).await? {
        Some(kv) => serde_json::from_slice(&kv.value).ok(),
        None => None,
    })
}

/// Election timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Lease time to live: a crashed leader is replaced within TTL plus one
    /// period.
    pub ttl: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            ttl: Duration::from_secs(6),
        }
    }
}

impl LeaderConfig {
    /// How often the lease is renewed (and the lock tried by followers).
    pub fn period(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(10))
    }

    /// How long before the lease could expire the leader stops acting.
    fn margin(&self) -> Duration {
        self.ttl / 5
    }
}

/// A running election for one controller; aborts the election (and the
/// controller, if leading) when dropped without a server stop, as a crash
/// would (the lease then expires on its own).
#[derive(Debug)]
pub struct Elector {
    fence: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<()>,
}

impl Elector {
    /// True while this server leads and its lease is surely alive.
    pub fn is_leader(&self) -> bool {
        lock(&self.fence).is_some_and(|f| Instant::now() < f)
    }

    /// Waits for the election to end (after the server stop).
    pub async fn join(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Aborts a controller task when dropped: stepping down (or the election
/// being aborted) stops the controller at its next await point.
struct Led {
    task: JoinHandle<()>,
    _stop: watch::Sender<bool>,
}

impl Drop for Led {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs an election for `controller` on behalf of `holder`; while it leads,
/// runs the task `start` spawns (given a stop channel that never turns true:
/// the task is aborted when leadership ends). The election ends when `stop`
/// turns true, releasing the lock.
pub fn spawn<F>(
    st: &AppState,
    controller: &str,
    holder: &str,
    cfg: LeaderConfig,
    stop: watch::Receiver<bool>,
    start: F,
) -> Elector
where
    F: FnMut(watch::Receiver<bool>) -> JoinHandle<()> + Send + 'static,
{
    let fence = Arc::new(Mutex::new(None));
    let election = Election {
        st: st.clone(),
        controller: controller.to_string(),
        holder: holder.to_string(),
        cfg,
        fence: fence.clone(),
        lease: None,
        led: None,
        first_try: true,
    };
    let span = tracing::info_span!("leader", controller = %controller, holder = %holder);
    let task = tokio::spawn(election.run(stop, start).instrument(span));
    Elector { fence, task }
}

struct Election {
    st: AppState,
    controller: String,
    holder: String,
    cfg: LeaderConfig,
    /// Shared with the [`Elector`]: the instant leadership ends unless renewed.
    fence: Arc<Mutex<Option<Instant>>>,
    lease: Option<LeaseId>,
    led: Option<Led>,
    /// No attempt to take the lock was made yet.
    first_try: bool,
}

impl Election {
    async fn run<F>(mut self, mut stop: watch::Receiver<bool>, mut start: F)
    where
        F: FnMut(watch::Receiver<bool>) -> JoinHandle<()>,
    {
        let mut every = tokio::time::interval(self.cfg.period());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let fence = *lock(&self.fence);
            tokio::select! {
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                    self.step_down(STOPPING).await;
                    if let Some(lease) = self.lease.take() {
                        // Hands the lock over now rather than after the TTL.
                        if let Err(e) = self.st.store().lease_revoke(lease).await {
                            tracing::debug!(error = %e, "leader lease not revoked at stop");
                        }
                    }
                    return;
                }
                _ = tokio::time::sleep_until(fence.unwrap_or_else(Instant::now)), if fence.is_some() => {
                    self.step_down("lease not renewed in time").await;
                    continue;
                }
                _ = every.tick() => {}
            }
            let sent = Instant::now();
            // A hung store must not keep a stale leader acting: the attempt
            // is bounded by the fence (by the TTL when following).
            let bound = fence.unwrap_or(sent + self.cfg.ttl);
            let held = match tokio::time::timeout_at(bound, self.attempt()).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Backend("store did not answer in time".into())),
            };
            match held {
                Ok(true) => {
                    let until = sent + self.cfg.ttl - self.cfg.margin();
                    *lock(&self.fence) = Some(until);
                    if self.led.is_none() {
                        self.take_lead(&mut start, until).await;
                    }
                }
                Ok(false) => self.step_down("lock lost").await,
                // Still leading until the fence; the next period retries.
                Err(e) if self.led.is_some() => {
                    tracing::warn!(error = %e, "leader lease not renewed")
                }
                Err(e) => tracing::debug!(error = %e, "leader lock not tried"),
            }
        }
    }

    /// Renews (or grants) the lease and, when following, tries the lock.
    /// `Ok(true)`: this server holds the lock on a live lease.
    async fn attempt(&mut self) -> Result<bool, StoreError> {
        let store = self.st.store();
        let lease = match self.lease {
            Some(id) => match store.lease_keep_alive(id).await {
                Ok(()) => id,
                Err(StoreError::LeaseNotFound(_)) => {
                    self.lease = None;
                    if self.led.is_some() {
                        return Ok(false);
                    }
                    store.lease_grant(self.cfg.ttl).await?
                }
                Err(e) => return Err(e),
            },
            None => store.lease_grant(self.cfg.ttl).await?,
        };
        self.lease = Some(lease);
        let key = key(&self.controller);
        if self.led.is_some() {
            // The key could have been deleted by hand, or taken after that.
            let kv = store.get(&key).await?;
            return Ok(kv.is_some_and(|kv| kv.lease == Some(lease)));
        }
        let record = LeaderRecord {
            holder: self.holder.clone(),
            since_ms: self.st.now_ms(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let txn = Txn::new()
            .when(Compare::absent(key.clone()))
            .and_then(TxnOp::Put {
                key: key.clone(),
                value,
                lease: Some(lease),
            })
            .or_else(TxnOp::Get { key });
        let r = store.txn(txn).await?;
        if r.succeeded {
            return Ok(true);
        }
        let Some(OpResponse::Get { kv: Some(kv) }) = r.responses.first() else {
            return Ok(false);
        };
        // A retried create whose first answer was lost finds the key ours.
        if kv.lease == Some(lease) {
            return Ok(true);
        }
        // Holders are unique among the servers sharing the store, so the
        // lock under this server's own name is its previous run's: release it
        // at start rather than wait out its lease (once only, so two servers
        // misconfigured with one name do not take turns).
        let first = std::mem::replace(&mut self.first_try, false);
        let theirs: Option<LeaderRecord> = serde_json::from_slice(&kv.value).ok();
        if let (true, Some(rec), Some(old)) = (first, theirs, kv.lease) {
            if rec.holder == self.holder {
                tracing::info!(lease = old, "releasing this server's previous lead");
                match store.lease_revoke(old).await {
                    Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(false)
    }

    async fn take_lead<F>(&mut self, start: &mut F, until: Instant)
    where
        F: FnMut(watch::Receiver<bool>) -> JoinHandle<()>,
    {
        let (tx, rx) = watch::channel(false);
        self.led = Some(Led {
            task: start(rx),
            _stop: tx,
        });
        tracing::info!(lease = self.lease, "took the lead");
        let message = format!("{} leads {}", self.holder, self.controller);
        // Bounded by the fence, which the loop watches only between rounds.
        self.record("leader.acquire", message, until).await;
    }

    /// Stops the controller, if leading.
    async fn step_down(&mut self, why: &str) {
        *lock(&self.fence) = None;
        if self.led.take().is_some() {
            // A stop is the normal way out; anything else is worth a warning.
            if why == STOPPING {
                tracing::info!(reason = why, "stepped down");
            } else {
                tracing::warn!(reason = why, "stepped down");
            }
            let message = format!("{} no longer leads {}: {why}", self.holder, self.controller);
            // The store may be why: give up on the event rather than wait.
            let until = Instant::now() + self.cfg.period();
            self.record("leader.lose", message, until).await;
        }
    }

    /// Records the change as an event, giving up at `until`.
    async fn record(&self, action: &str, message: String, until: Instant) {
        let draft =
            EventDraft::new(&self.holder, action, "controller", &self.controller).message(message);
        let st = &self.st;
        let fut = st.events().record(st.store(), draft, st.now_ms());
        match tokio::time::timeout_at(until, fut).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "leadership event not recorded"),
            Err(_) => tracing::debug!("leadership event not recorded in time"),
        }
    }
}

#[cfg(test)]
mod tests;
