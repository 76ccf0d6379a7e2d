//! Finalizing retired containers, and the sweeper that does it in the
//! background.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jdos_scheduler::relocate::release_and_commit;
use jdos_store::json;
use jdos_types::container::DesiredState;
use jdos_types::{keys, Container, GroupKey, Host, HostState, InstanceId};
use serde::Deserialize;
use tokio::sync::watch;

use super::ops::ACTOR;
use super::placer;
use super::planner::{Extra, PlatformPlanner};
use super::{Platform, Result, MAX_ATTEMPTS};
use crate::dev::SIMULATED_DRIVER;
use crate::events::EventDraft;

/// A group's containers ready to finalize, and the work orders (key,
/// revision) to delete with them.
type Finalizable = (Vec<Container>, Vec<(String, u64)>);

/// How often the sweeper finalizes the retired containers it knows of.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often it re-reads every record to find retired containers it does
/// not know of (retired by another server, or before a restart).
pub const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(60);

impl Platform {
    /// Finalizes every retired container this server knows of (see
    /// [`Platform::finalize_ids`]); returns how many were finalized.
    pub async fn finalize(&self) -> Result<usize> {
        let ids: Vec<InstanceId> = self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.finalize_ids(&ids).await
    }

    /// For each container of `ids` that is retired (desired = deleted) and
    /// that its agent reported gone (its work order is deleted then) or
    /// whose host is down, unknown or simulated (no agent): deletes the record and any work
    /// order, releases its host allocation and placement-record entry, and
    /// puts its IP in quarantine — one transaction per group. Others are
    /// left for a later call. Returns how many were finalized. Idempotent.
    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    pub async fn finalize_ids(&self, ids: &[InstanceId]) -> Result<usize> {
        let mut ready: BTreeMap<GroupKey, Finalizable> = BTreeMap::new();
        let mut done = Vec::new();
        let mut hosts: BTreeMap<String, bool> = BTreeMap::new();
        for id in ids {
            let Some(kv) = self.store.get(&keys::container(id)).await? else {
                done.push(id.clone());
                continue;
            };
            let c: Container = json::decode(&kv)?;
            if c.desired != DesiredState::Deleted {
                done.push(id.clone());
                continue;
            }
            let mut orders = Vec::new();
            if let Some(host) = &c.host {
                if let Some((_, rev)) = self.assignment(host, id).await? {
                    let reporting = match hosts.get(host) {
                        Some(s) => *s,
                        None => {
                            let s = self
                                .store
                                .get(&keys::host(host))
                                .await?
                                .map(|kv| json::decode::<Host>(&kv))
                                .transpose()?
                                .is_some_and(|h| {
                                    h.state != HostState::Down && h.driver != SIMULATED_DRIVER
                                });
                            hosts.insert(host.clone(), s);
                            s
                        }
                    };
                    if reporting {
                        // Its agent has not removed it yet.
                        continue;
                    }
                    // Down, deleted, or simulated (no agent): nobody will
                    // report it gone.
                    orders.push((keys::assignment(host, id), rev));
                }
            }
            let e = ready.entry(id.group_key()).or_default();
            e.0.push(c);
            e.1.extend(orders);
        }
        let mut finalized = 0;
        for (group, (containers, orders)) in ready {
            let n = containers.len();
            let event = EventDraft::new(ACTOR, "container.finalize", "group", &group.to_string())
                .message(format!("{n} container(s) deleted, addresses to quarantine"));
            let event = match self.app(&group.app).await {
                Ok(app) => event.app(&app.name, &app.department),
                Err(_) => event,
            };
            let mut slot = self.placer_slot().await;
            let placer = placer::ready(&mut slot, self.store(), &self.sched_config).await?;
            let planner =
                PlatformPlanner::new(self, Extra::Release { orders }, event, placer.feed.take());
            let out = release_and_commit(
                &mut placer.snap,
                &planner,
                &group,
                &containers,
                MAX_ATTEMPTS,
            )
            .await
            .map_err(|e| planner.error(e));
            placer.feed = planner.into_feed();
            drop(slot);
            let out = out?;
            finalized += out.released.len();
            done.extend(out.released);
        }
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        for id in &done {
            retired.remove(id);
        }
        Ok(finalized)
    }

    /// Reads every container record and remembers the retired ones for
    /// [`Platform::finalize`]. Returns how many are retired.
    pub async fn scan_retired(&self) -> Result<usize> {
        #[derive(Deserialize)]
        struct Desired {
            id: InstanceId,
            #[serde(default)]
            desired: DesiredState,
        }
        let mut found = Vec::new();
        jdos_store::for_each_page(self.store(), keys::CONTAINERS, 4096, |kvs| {
            for kv in kvs {
                let d: Desired = json::decode(kv)?;
                if d.desired == DesiredState::Deleted {
                    found.push(d.id);
                }
            }
            Ok::<_, jdos_store::StoreError>(())
        })
        .await?;
        let n = found.len();
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(found);
        Ok(n)
    }

    /// Remembers `id` as retired (an agent reported it gone).
    pub(crate) fn note_retired(&self, id: InstanceId) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Runs the finalize sweeper until `stop` turns true: every
    /// [`SWEEP_INTERVAL`] it finalizes what it knows of, every
    /// [`FULL_SCAN_INTERVAL`] (and at once) it re-reads the records.
    pub fn start_sweeper(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let p = self.clone();
        tokio::spawn(async move {
            let mut last_scan: Option<std::time::Instant> = None;
            loop {
                if last_scan.is_none_or(|t| t.elapsed() >= FULL_SCAN_INTERVAL) {
                    match p.scan_retired().await {
                        Ok(n) => tracing::debug!(retired = n, "retired containers scanned"),
                        Err(e) => tracing::warn!(error = %e, "cannot scan for retired containers"),
                    }
                    last_scan = Some(std::time::Instant::now());
                }
                match p.finalize().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(finalized = n, "sweeper finalized containers"),
                    Err(e) => tracing::warn!(error = %e, "finalize sweep failed"),
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                }
            }
        })
    }
}
