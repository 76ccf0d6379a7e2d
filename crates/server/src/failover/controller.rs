//! The host health controller: judge, transition, brake, evacuate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::{keys, Container, Group, GroupKey, Host, HostState, InstanceId, UnixMillis};
use tokio::sync::watch;

use super::brake::{self, ACTOR};
use super::judge::{self, Transition, Verdict};
use super::{crash, store, FailoverConfig, FailoverMetrics};
use crate::error::HttpError;
use crate::events::{EventDraft, Mutation};
use crate::kv::{self, Versioned};
use crate::state::AppState;

/// What the controller asks of the platform layer.
#[async_trait]
pub trait Mover: Send + Sync {
    /// Re-places `ids` of `group` on hosts other than `avoid` (scheduler,
    /// spread kept), keeping each identity's IP; record, allocation,
    /// placement record and assignment move in one transaction per group.
    /// Returns the containers moved (a container no host fits is left out).
    async fn relocate(
        &self,
        group: &Group,
        ids: &[InstanceId],
        avoid: &[String],
        reason: &str,
    ) -> Result<Vec<Container>, HttpError>;

    /// Sets `desired: stopped` on the current assignments of `ids` (first
    /// half of a live migration: the IP is released on the old host before
    /// the new one starts it).
    async fn stop_in_place(&self, ids: &[InstanceId]) -> Result<(), HttpError>;
}

/// When each host last heartbeat (kept in memory by the agent endpoints).
pub trait Heartbeats: Send + Sync {
    /// Unix ms of the host's last heartbeat seen by this server.
    fn last_heartbeat(&self, host: &str) -> Option<UnixMillis>;
}

/// What one tick did (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Hosts made suspect.
    pub suspect: Vec<String>,
    /// Hosts made down and fenced.
    pub down: Vec<String>,
    /// Hosts made down but held by a brake.
    pub held: Vec<String>,
    /// Hosts back to ready.
    pub recovered: Vec<String>,
    /// Containers moved, by the down host they left.
    pub evacuated: BTreeMap<String, usize>,
    /// Containers no host was found for.
    pub unplaced: usize,
    /// Datacenters braked.
    pub brakes_engaged: Vec<String>,
    /// Datacenters whose brake cleared.
    pub brakes_cleared: Vec<String>,
    /// Crash-looping containers moved.
    pub crash_loop_moved: Vec<InstanceId>,
    /// Crash-looping containers given up.
    pub crash_loop_given_up: Vec<InstanceId>,
}

/// Retry state of a host whose evacuation left containers behind.
#[derive(Debug, Clone)]
struct Retry {
    next_ms: UnixMillis,
    delay_ms: u64,
    last_message: String,
}

const RETRY_FIRST_MS: u64 = 1_000;
const RETRY_MAX_MS: u64 = 30_000;

/// The host health controller. See the module docs.
pub struct Controller {
    st: AppState,
    cfg: FailoverConfig,
    mover: Arc<dyn Mover>,
    liveness: Arc<dyn Heartbeats>,
    watching_since: UnixMillis,
    retry: HashMap<String, Retry>,
    down_at: HashMap<String, UnixMillis>,
    next_sweep_ms: UnixMillis,
    held_marked: HashMap<String, UnixMillis>,
    // The earliest moment a judged host turns suspect or down, as of the
    // last tick: `run` wakes then rather than up to a tick later.
    next_due_ms: Option<UnixMillis>,
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// How often crash-loop records of deleted containers are removed.
const CRASH_SWEEP_MS: u64 = 60_000;

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("cfg", &self.cfg)
            .field("watching_since", &self.watching_since)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller that starts judging now (every host gets one down
    /// interval of grace from this moment).
    pub fn new(
        st: AppState,
        cfg: FailoverConfig,
        mover: Arc<dyn Mover>,
        liveness: Arc<dyn Heartbeats>,
    ) -> Self {
        let watching_since = st.now_ms();
        st.failover().set_config(cfg.clone());
        Controller {
            st,
            cfg,
            mover,
            liveness,
            watching_since,
            retry: HashMap::new(),
            down_at: HashMap::new(),
            next_sweep_ms: watching_since + CRASH_SWEEP_MS,
            held_marked: HashMap::new(),
            next_due_ms: None,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &FailoverConfig {
        &self.cfg
    }

    pub(super) fn state(&self) -> &AppState {
        &self.st
    }

    pub(super) fn mover(&self) -> &Arc<dyn Mover> {
        &self.mover
    }

    fn metrics(&self) -> &FailoverMetrics {
        &self.st.failover().metrics
    }

    /// Ticks until `stop` turns true: every `tick`, and also the moment a
    /// host's silence reaches the suspect or down interval (a host is
    /// declared down at its deadline, not up to a tick after it).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.cfg.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self.next_due_ms.map(|at| {
                let wait = at.saturating_sub(self.st.now_ms());
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = every.tick() => {}
                _ = tokio::time::sleep_until(due.unwrap_or_else(far_future)), if due.is_some() => {}
            }
            match self.tick().await {
                Ok(r) if r != TickReport::default() => {
                    tracing::debug!(report = ?r, "failover tick")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.body.message, "failover tick failed"),
            }
        }
    }

    /// One pass: judge every agent-backed host, engage or clear brakes, write
    /// host state changes, evacuate down hosts, move crash-looping containers.
    pub async fn tick(&mut self) -> Result<TickReport, HttpError> {
        let mut report = TickReport::default();
        let now = self.st.now_ms();
        let t = self.cfg.timings;
        let mut hosts = self.judged_hosts().await?;
        let verdict = |h: &Host| {
            judge::verdict(
                self.liveness.last_heartbeat(&h.name),
                self.watching_since,
                now,
                &t,
            )
        };
        let verdicts: HashMap<String, Verdict> = hosts
            .iter()
            .map(|h| (h.value.name.clone(), verdict(&h.value)))
            .collect();
        self.next_due_ms = hosts
            .iter()
            .filter_map(|h| {
                judge::next_change(
                    self.liveness.last_heartbeat(&h.value.name),
                    self.watching_since,
                    now,
                    &t,
                )
            })
            .min();
        let health = judge::datacenters(hosts.iter().map(|h| (&h.value, verdicts[&h.value.name])));

        // Brakes first, so that a host going down in a mass failure is held,
        // not evacuated onto the survivors.
        let mut brakes = store::brakes(self.st.store()).await?;
        let mut changed = false;
        let silent: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| **v == Verdict::Down)
            .map(|(h, _)| h.clone())
            .collect();
        for (dc, hl) in &health {
            let trips = self.cfg.brake.trips(hl.failing.len() as u32, hl.total);
            match (trips, brakes.get(dc)) {
                (true, None) => {
                    brake::engage(&self.st, dc, hl, self.cfg.brake.fraction, now).await?;
                    FailoverMetrics::add(&self.metrics().brakes, 1);
                    tracing::warn!(datacenter = %dc, failing = hl.failing.len(), total = hl.total, "failover braked");
                    report.brakes_engaged.push(dc.clone());
                    changed = true;
                }
                (false, Some(b)) => {
                    brake::clear(&self.st, b, Some(hl), &silent).await?;
                    report.brakes_cleared.push(dc.clone());
                    changed = true;
                }
                _ => {}
            }
        }
        for (dc, b) in &brakes {
            if !health.contains_key(dc) {
                brake::clear(&self.st, b, None, &silent).await?;
                report.brakes_cleared.push(dc.clone());
                changed = true;
            }
        }
        if changed {
            brakes = store::brakes(self.st.store()).await?;
            hosts = self.judged_hosts().await?;
        }

        // Host state changes.
        for h in &mut hosts {
            let v = verdicts
                .get(&h.value.name)
                .copied()
                .unwrap_or(Verdict::Alive);
            let Some(tr) = judge::transition(&h.value, v, engaged(&brakes, &h.value.datacenter))
            else {
                continue;
            };
            let name = h.value.name.clone();
            match tr {
                Transition::Down { fence: false } => {
                    let Some(b) = brakes.get(&h.value.datacenter) else {
                        continue;
                    };
                    let Some((host, b)) = brake::hold(&self.st, h, b).await? else {
                        continue;
                    };
                    *h = host;
                    brakes.insert(b.value.datacenter.clone(), b);
                    report.held.push(name.clone());
                    FailoverMetrics::add(&self.metrics().down, 1);
                }
                _ => {
                    let Some(written) = self.write_transition(h, tr, v, now).await? else {
                        continue;
                    };
                    *h = written;
                    match tr {
                        Transition::Suspect => {
                            FailoverMetrics::add(&self.metrics().suspect, 1);
                            report.suspect.push(name.clone());
                        }
                        Transition::Down { .. } => {
                            FailoverMetrics::add(&self.metrics().down, 1);
                            self.down_at.insert(name.clone(), now);
                            self.retry.remove(&name);
                            report.down.push(name.clone());
                        }
                        Transition::Recovered { .. } => {
                            FailoverMetrics::add(&self.metrics().recovered, 1);
                            self.retry.remove(&name);
                            self.down_at.remove(&name);
                            self.held_marked.remove(&name);
                            report.recovered.push(name.clone());
                        }
                    }
                }
            }
        }
        // Down hosts of a braked datacenter: their containers are lost, not moved.
        for h in &hosts {
            if h.value.state == HostState::Down && engaged(&brakes, &h.value.datacenter) {
                self.mark_held_lost(&h.value.name, now).await?;
            }
        }

        // Evacuation: level-triggered, so an interrupted one (a crash, no
        // room yet) is picked up again.
        let candidates: Vec<String> = hosts
            .iter()
            .filter(|h| {
                h.value.state == HostState::Down
                    && verdicts.get(&h.value.name) == Some(&Verdict::Down)
                    && !engaged(&brakes, &h.value.datacenter)
                    && self
                        .retry
                        .get(&h.value.name)
                        .is_none_or(|r| r.next_ms <= now)
            })
            .map(|h| h.value.name.clone())
            .collect();
        if !candidates.is_empty() {
            self.evacuate(&candidates, now, &mut report).await?;
        }

        crash::handle_all(self, &mut report).await?;
        if now >= self.next_sweep_ms {
            self.next_sweep_ms = now + CRASH_SWEEP_MS;
            crash::sweep(self).await?;
        }
        Ok(report)
    }

    async fn judged_hosts(&self) -> Result<Vec<Versioned<Host>>, HttpError> {
        Ok(store::hosts(self.st.store())
            .await?
            .into_iter()
            .filter(|h| judge::judged(&h.value))
            .collect())
    }

    /// Writes one state change with its event. `None` when the host changed
    /// meanwhile (the next tick judges it again).
    async fn write_transition(
        &self,
        cur: &Versioned<Host>,
        tr: Transition,
        v: Verdict,
        now: UnixMillis,
    ) -> Result<Option<Versioned<Host>>, HttpError> {
        let mut h = cur.value.clone();
        let silent_ms = now.saturating_sub(
            self.liveness
                .last_heartbeat(&h.name)
                .unwrap_or(0)
                .max(self.watching_since),
        );
        let silent = format!("{:.1} s", silent_ms as f64 / 1000.0);
        let event = match tr {
            Transition::Suspect => {
                h.state = HostState::Suspect;
                EventDraft::new(ACTOR, "host.suspect", "host", &h.name).message(format!(
                    "no heartbeat for {silent}: suspect, not schedulable"
                ))
            }
            Transition::Down { .. } => {
                h.state = HostState::Down;
                h.epoch += 1;
                EventDraft::new(ACTOR, "host.down", "host", &h.name).failed(format!(
                    "no heartbeat for {silent}: down, fenced at epoch {}; moving its containers to other hosts with their IPs",
                    h.epoch
                ))
            }
            Transition::Recovered { from } => {
                h.state = HostState::Ready;
                let msg = if from == HostState::Down {
                    format!(
                        "heartbeating again: ready under epoch {}; its agent destroys the containers moved away while it was down",
                        h.epoch
                    )
                } else {
                    "heartbeating again: ready".to_string()
                };
                EventDraft::new(ACTOR, "host.ready", "host", &h.name).message(msg)
            }
        };
        debug_assert!(v != Verdict::Alive || matches!(tr, Transition::Recovered { .. }));
        let key = keys::host(&h.name);
        let m = Mutation {
            compares: vec![Compare::mod_revision(key.as_str(), cur.mod_revision)],
            ops: vec![TxnOp::put(key.as_str(), json::encode(&h)?)],
            event,
        };
        match self.st.events().commit(self.st.store(), m, now).await? {
            crate::events::Commit::Done { revision, .. } => {
                tracing::info!(host = %h.name, state = h.state.as_str(), epoch = h.epoch, "host state changed");
                Ok(Some(Versioned {
                    value: h,
                    mod_revision: revision,
                }))
            }
            crate::events::Commit::Stale => Ok(None),
        }
    }

    /// Marks the containers of a held host lost (at most once per retry
    /// interval, the scan reads every container record).
    async fn mark_held_lost(&mut self, host: &str, now: UnixMillis) -> Result<(), HttpError> {
        if self.held_marked.get(host).is_some_and(|next| *next > now) {
            return Ok(());
        }
        if store::allocated(self.st.store(), host).await? > 0 {
            let cs = store::live_containers_on(self.st.store(), host).await?;
            let msg = format!("host {host} is down and its datacenter braked: not moved");
            store::mark_lost(self.st.store(), &cs, &msg, now).await?;
        }
        self.held_marked
            .insert(host.to_string(), now + RETRY_MAX_MS);
        Ok(())
    }

    /// Moves every live container of the `down` hosts elsewhere, keeping
    /// IPs: one relocation per group (containers of one group on several
    /// down hosts move together), up to `parallelism` groups at once.
    async fn evacuate(
        &mut self,
        down: &[String],
        now: UnixMillis,
        report: &mut TickReport,
    ) -> Result<(), HttpError> {
        let mut work: BTreeMap<GroupKey, (Vec<InstanceId>, BTreeSet<String>)> = BTreeMap::new();
        let mut on_host: BTreeMap<String, Vec<Versioned<Container>>> = BTreeMap::new();
        for host in down {
            if store::allocated(self.st.store(), host).await? == 0 {
                self.evacuated(host, now);
                continue;
            }
            let cs = store::live_containers_on(self.st.store(), host).await?;
            if cs.is_empty() {
                self.evacuated(host, now);
                continue;
            }
            for c in &cs {
                let w = work.entry(c.value.id.group_key()).or_default();
                w.0.push(c.value.id.clone());
                w.1.insert(host.clone());
            }
            on_host.insert(host.clone(), cs);
        }
        if work.is_empty() {
            return Ok(());
        }
        let st = self.st.clone();
        let mover = self.mover.clone();
        let results: Vec<(GroupKey, Result<Vec<InstanceId>, String>)> =
            futures_util::stream::iter(work)
                .map(|(gk, (ids, avoid))| {
                    let st = st.clone();
                    let mover = mover.clone();
                    async move {
                        let reason = format!(
                            "host {} down",
                            avoid.iter().cloned().collect::<Vec<_>>().join(", ")
                        );
                        let r = relocate_group(
                            &st,
                            mover.as_ref(),
                            &gk,
                            &ids,
                            &avoid,
                            "group.evacuate",
                            &reason,
                        )
                        .await;
                        (gk, r)
                    }
                })
                .buffer_unordered(self.cfg.parallelism.max(1))
                .collect()
                .await;
        let mut moved: BTreeSet<InstanceId> = BTreeSet::new();
        let mut errors: Vec<String> = Vec::new();
        for (gk, r) in results {
            match r {
                Ok(ids) => moved.extend(ids),
                Err(e) => errors.push(format!("{}/{}/{}: {e}", gk.app, gk.env, gk.group)),
            }
        }
        for (host, cs) in on_host {
            let n_moved = cs.iter().filter(|c| moved.contains(&c.value.id)).count();
            let left: Vec<Versioned<Container>> = cs
                .into_iter()
                .filter(|c| !moved.contains(&c.value.id))
                .collect();
            FailoverMetrics::add(&self.metrics().evacuated, n_moved as u64);
            report.evacuated.insert(host.clone(), n_moved);
            if left.is_empty() {
                let event = EventDraft::new(ACTOR, "host.evacuate", "host", &host).message(
                    format!("moved {n_moved} containers to other hosts, keeping their IPs"),
                );
                self.st.events().record(self.st.store(), event, now).await?;
                self.evacuated(&host, now);
                continue;
            }
            FailoverMetrics::add(&self.metrics().unplaced, left.len() as u64);
            report.unplaced += left.len();
            let msg = format!(
                "moved {n_moved}, {} left as lost: {}",
                left.len(),
                if errors.is_empty() {
                    "no host fits them".to_string()
                } else {
                    errors.join("; ")
                }
            );
            store::mark_lost(
                self.st.store(),
                &left,
                &format!("host {host} is down and no other host fits it yet"),
                now,
            )
            .await?;
            let r = self.retry.entry(host.clone()).or_insert(Retry {
                next_ms: 0,
                delay_ms: RETRY_FIRST_MS / 2,
                last_message: String::new(),
            });
            r.delay_ms = (r.delay_ms * 2).min(RETRY_MAX_MS);
            r.next_ms = now + r.delay_ms;
            // One failure event per streak (or when the reason changes), not
            // one per retry.
            if r.last_message != msg {
                r.last_message = msg.clone();
                let event = EventDraft::new(ACTOR, "host.evacuate", "host", &host).failed(msg);
                self.st.events().record(self.st.store(), event, now).await?;
            }
        }
        Ok(())
    }

    /// Notes that `host` has nothing left to move.
    fn evacuated(&mut self, host: &str, now: UnixMillis) {
        self.retry.remove(host);
        if let Some(at) = self.down_at.remove(host) {
            self.metrics()
                .last_evacuation_ms
                .store(now.saturating_sub(at), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn engaged(brakes: &BTreeMap<String, Versioned<jdos_types::failover::Brake>>, dc: &str) -> bool {
    brakes.get(dc).is_some_and(|b| b.value.engaged())
}

/// Relocates `ids` of one group away from `avoid`, with the group's event.
/// Returns the ids moved.
pub(super) async fn relocate_group(
    st: &AppState,
    mover: &dyn Mover,
    gk: &GroupKey,
    ids: &[InstanceId],
    avoid: &BTreeSet<String>,
    action: &str,
    reason: &str,
) -> Result<Vec<InstanceId>, String> {
    let object = format!("{}/{}/{}", gk.app, gk.env, gk.group);
    let group: Option<Versioned<Group>> = kv::get_json(st.store(), &keys::group(gk))
        .await
        .map_err(|e| e.to_string())?;
    let Some(group) = group else {
        return Err("group no longer exists".into());
    };
    let department = kv::get_json::<jdos_types::App>(st.store(), &keys::app(&gk.app))
        .await
        .ok()
        .flatten()
        .map(|a| a.value.department);
    let avoid: Vec<String> = avoid.iter().cloned().collect();
    let hosts = avoid.join(", ");
    let mut event = EventDraft::new(ACTOR, action, "group", &object);
    if let Some(d) = &department {
        event = event.app(&gk.app, d);
    }
    let started = std::time::Instant::now();
    let result = mover.relocate(&group.value, ids, &avoid, reason).await;
    let (event, out) = match result {
        Ok(moved) => {
            let moved_ids: Vec<InstanceId> = moved.iter().map(|c| c.id.clone()).collect();
            let targets: BTreeSet<&str> = moved.iter().filter_map(|c| c.host.as_deref()).collect();
            let mut msg = format!(
                "{reason}: moved {} of {} containers off {hosts} to {} with their IPs in {} ms",
                moved.len(),
                ids.len(),
                targets.into_iter().collect::<Vec<_>>().join(", "),
                started.elapsed().as_millis()
            );
            if moved.len() < ids.len() {
                msg.push_str(&format!(
                    "; {} fit nowhere and stay lost",
                    ids.len() - moved.len()
                ));
                (event.failed(msg), Ok(moved_ids))
            } else {
                (event.message(msg), Ok(moved_ids))
            }
        }
        Err(e) => {
            let msg = format!("{}: {}", e.body.code, e.body.message);
            (
                event.failed(format!("cannot move containers off {hosts}: {msg}")),
                Err(msg),
            )
        }
    };
    if let Err(e) = st.events().record(st.store(), event, st.now_ms()).await {
        tracing::warn!(error = %e, group = %object, "cannot record an evacuation event");
    }
    out
}
