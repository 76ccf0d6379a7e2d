//! Alert evaluation: a background reconciler that, every interval (15 s by
//! default), evaluates each enabled policy, moves its alerts through
//! pending → firing → resolved ([`lifecycle`]), applies silences, sends the
//! notifications that are due ([`grouping`], [`deliver`]) and writes the
//! alerts back to the store.
//!
//! Alerts live in the store (`keys::ALERTS`), together with what each
//! receiver was last told, so a restarted server neither forgets a pending
//! alert's start nor re-announces a firing one. Delivery is at least once: a
//! crash between a send and the write of its mark repeats that notification.
//!
//! Time comes from the [`AppState`]'s clock, so tests drive [`Evaluator::tick`]
//! with an injected clock.

pub mod conditions;
pub mod deliver;
pub mod feed;
pub mod grouping;
pub mod lifecycle;
pub mod source;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jdos_store::{json, StoreError, Txn, TxnOp};
use jdos_types::alert::{
    fingerprint, Alert, AlertPolicy, AlertState, Condition, NotifyMark, Receiver, Silence,
};
use jdos_types::keys;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::kv;
use crate::state::AppState;
use deliver::Notifier;
use feed::EventFeed;
use source::MetricSource;

/// How the evaluator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertingConfig {
    /// Time between evaluations (default 15 s).
    pub interval: Duration,
    /// How long a resolved alert stays listed once everyone was told (default 1 h).
    pub resolved_retention: Duration,
    /// An alert whose value alone changed is written back at most this often
    /// (default 60 s): state changes are written at once.
    pub refresh_every: Duration,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            interval: Duration::from_secs(15),
            resolved_retention: Duration::from_secs(3600),
            refresh_every: Duration::from_secs(60),
        }
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Policies evaluated.
    pub policies: usize,
    /// Policies whose condition could not be evaluated (their alerts kept as they were).
    pub failed_policies: usize,
    /// Alerts pending after the tick.
    pub pending: usize,
    /// Alerts firing after the tick.
    pub firing: usize,
    /// Notifications delivered.
    pub sent: usize,
    /// Notifications that failed (retried next tick).
    pub failed: usize,
    /// Alerts written to the store.
    pub written: usize,
    /// Alerts deleted from the store.
    pub deleted: usize,
    /// The earliest time a held notification group becomes due.
    pub next_due_ms: Option<u64>,
}

/// The alert evaluator.
pub struct Evaluator {
    st: AppState,
    source: Arc<dyn MetricSource>,
    notifier: Arc<dyn Notifier>,
    config: AlertingConfig,
    feed: Mutex<EventFeed>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Most writes in one store transaction (etcd's default limit is 128).
const TXN_OPS: usize = 100;

impl Evaluator {
    /// An evaluator over the server's state, reading metrics from `source`
    /// and delivering through `notifier`.
    pub fn new(
        st: AppState,
        source: Arc<dyn MetricSource>,
        notifier: Arc<dyn Notifier>,
        config: AlertingConfig,
    ) -> Self {
        Evaluator {
            st,
            source,
            notifier,
            config,
            feed: Mutex::new(EventFeed::new()),
        }
    }

    /// One evaluation of every policy at the state's current time.
    #[tracing::instrument(skip(self), name = "alerting.tick")]
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let now = self.st.now_ms();
        let store = self.st.store();
        let policies: BTreeMap<String, AlertPolicy> =
            kv::list_all::<AlertPolicy>(store, keys::ALERT_POLICIES)
                .await?
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect();
        let receivers: BTreeMap<String, Receiver> =
            kv::list_all::<Receiver>(store, keys::ALERT_RECEIVERS)
                .await?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect();
        let silences: Vec<Silence> = kv::list_all(store, keys::SILENCES).await?;
        let stored: BTreeMap<String, Alert> = kv::list_all::<Alert>(store, keys::ALERTS)
            .await?
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();

        let mut feed = self.feed.lock().await;
        let event_window = policies
            .values()
            .filter(|p| p.enabled)
            .filter_map(|p| match &p.condition {
                Condition::Event(e) => Some(e.window.ms()),
                _ => None,
            })
            .max();
        if let Some(keep) = event_window {
            feed.refresh(store, now, keep).await?;
        }

        let mut report = TickReport::default();
        let mut next: BTreeMap<String, Alert> = BTreeMap::new();
        let mut unknown: HashSet<&str> = HashSet::new();
        for p in policies.values().filter(|p| p.enabled) {
            report.policies += 1;
            match conditions::evaluate(p, self.source.as_ref(), &feed, now).await {
                Ok(observations) => {
                    for o in observations {
                        let fp = fingerprint(&p.name, &lifecycle::alert_labels(p, &o));
                        let a = lifecycle::holds(stored.get(&fp), p, &o, now);
                        next.insert(fp, a);
                    }
                }
                Err(e) => {
                    tracing::warn!(policy = %p.name, error = %e, "cannot evaluate policy: its alerts stay as they are");
                    report.failed_policies += 1;
                    unknown.insert(p.name.as_str());
                }
            }
        }
        drop(feed);
        for (fp, a) in &stored {
            if next.contains_key(fp) {
                continue;
            }
            if unknown.contains(a.policy.as_str()) {
                next.insert(fp.clone(), a.clone());
            } else if let Some(cleared) = lifecycle::clears(a, now) {
                next.insert(fp.clone(), cleared);
            }
        }
        for a in next.values_mut() {
            a.silenced_by = lifecycle::silenced_by(a, &silences, now);
        }

        let plan = grouping::plan(&next, &policies, now);
        report.next_due_ms = plan.next_due_ms;
        for due in plan.due {
            let n = &due.notification;
            let result = match receivers.get(&n.receiver) {
                Some(r) => self.notifier.send(r, n).await.map_err(|e| e.message),
                None => Err(format!(
                    "receiver {:?} does not exist: create it with POST /api/v1/alerting/receivers",
                    n.receiver
                )),
            };
            match &result {
                Ok(()) => {
                    report.sent += 1;
                    tracing::info!(receiver = %n.receiver, status = %n.status, alerts = n.alerts.len(), "notification sent");
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(receiver = %n.receiver, error = %e, "notification failed: retrying next evaluation");
                }
            }
            for fp in &due.fingerprints {
                let Some(a) = next.get_mut(fp) else { continue };
                match &result {
                    Ok(()) => {
                        a.notified.insert(
                            n.receiver.clone(),
                            NotifyMark {
                                state: a.state,
                                at_ms: now,
                            },
                        );
                        a.errors.remove(&n.receiver);
                    }
                    Err(e) => {
                        a.errors.insert(n.receiver.clone(), e.clone());
                    }
                }
            }
        }

        let retention = self.config.resolved_retention.as_millis() as u64;
        next.retain(|_, a| {
            !lifecycle::collectable(a, |r| receivers.contains_key(r), now, retention)
        });
        for a in next.values() {
            match a.state {
                AlertState::Pending => report.pending += 1,
                AlertState::Firing => report.firing += 1,
                AlertState::Resolved => {}
            }
        }

        let refresh = self.config.refresh_every.as_millis() as u64;
        let mut ops = Vec::new();
        for (fp, a) in &next {
            let write = match stored.get(fp) {
                None => true,
                Some(old) => {
                    significant_change(old, a)
                        || (old != a && now.saturating_sub(old.updated_at_ms) >= refresh)
                }
            };
            if write {
                ops.push(TxnOp::put(keys::alert(fp), json::encode(a)?));
                report.written += 1;
            }
        }
        for fp in stored.keys().filter(|fp| !next.contains_key(*fp)) {
            ops.push(TxnOp::delete(keys::alert(fp)));
            report.deleted += 1;
        }
        for chunk in ops.chunks(TXN_OPS) {
            let mut txn = Txn::new();
            txn.success = chunk.to_vec();
            store.txn(txn).await?;
        }
        Ok(report)
    }

    /// Runs [`Evaluator::tick`] every interval (sooner when a held
    /// notification group comes due) until `stopped` turns true.
    pub fn spawn(self: Arc<Self>, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let mut wait = self.config.interval;
                match self.tick().await {
                    Ok(r) => {
                        tracing::debug!(?r, "alerts evaluated");
                        if let Some(due) = r.next_due_ms {
                            let until = Duration::from_millis(due.saturating_sub(self.st.now_ms()));
                            wait = wait.min(until.max(Duration::from_millis(200)));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
                }
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// True when more than the value and the evaluation time changed.
fn significant_change(old: &Alert, new: &Alert) -> bool {
    old.state != new.state
        || old.labels != new.labels
        || old.notified != new.notified
        || old.errors != new.errors
        || old.silenced_by != new.silenced_by
        || old.severity != new.severity
        || old.department != new.department
        || old.active_since_ms != new.active_since_ms
}
