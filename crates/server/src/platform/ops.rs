//! Placing, publishing, retiring and stopping containers.

use std::collections::HashMap;

use jdos_scheduler::commit::{place_and_commit, ContainerSpec};
use jdos_scheduler::GroupRequest;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::Assignment;
use jdos_types::container::DesiredState;
use jdos_types::{keys, Container, Group, GroupKey, InstanceId, Network};

use super::placer;
use super::planner::{Extra, PlatformPlanner};
use super::{Platform, PlatformError, Result, MAX_ATTEMPTS, MAX_REPLANS};
use crate::events::{Commit, EventDraft, Mutation};

/// Actor of the platform's own events.
pub(super) const ACTOR: &str = "platform";

impl Platform {
    /// Brings the live containers (desired ≠ deleted) of `group` up to
    /// `replicas`: the scheduler places the missing ones (spread kept), each
    /// new identity gets its address, and the records are written with
    /// phase `scheduled` — not yet published to any agent. Returns every
    /// live container of the group, by index. Idempotent: with enough
    /// containers it writes nothing.
    ///
    /// Fails with [`PlatformError::Unplaced`] when some replicas fit
    /// nowhere (the others stay placed; a re-run places only the rest).
    #[tracing::instrument(skip_all, fields(group = %group.key(), replicas))]
    pub async fn place_missing(&self, group: &Group, replicas: u32) -> Result<Vec<Container>> {
        let key = group.key();
        let live = self.live(&key).await?;
        if live.len() as u32 >= replicas {
            return Ok(live);
        }
        let missing = replicas - live.len() as u32;
        let app = self.app(&group.app).await?;
        let networks = self.networks().await?;
        let req = GroupRequest::for_group(group, app.business_level, missing, Vec::new());
        let spec = ContainerSpec {
            image: group.template.image.clone(),
            network: None,
            created_at_ms: self.now_ms(),
        };
        let event = EventDraft::new(ACTOR, "container.place", "group", &key.to_string())
            .app(&app.name, &app.department);
        let mut slot = self.placer_slot().await;
        let placer = placer::ready(&mut slot, self.store(), &self.sched_config).await?;
        let planner = PlatformPlanner::new(
            self,
            Extra::Place {
                template: Box::new(group.template.clone()),
                networks,
                switches: placer.switches.clone(),
            },
            event.message(format!("placing {missing} container(s)")),
            placer.feed.take(),
        );
        let out = place_and_commit(
            &mut placer.sched,
            &mut placer.snap,
            &planner,
            &req,
            &spec,
            MAX_ATTEMPTS,
        )
        .await;
        let out = out.map_err(|e| planner.error(e));
        placer.feed = planner.into_feed();
        drop(slot);
        let out = out?;
        tracing::debug!(
            placed = out.placed.len(),
            conflicts = out.conflicts_retried,
            "placed"
        );
        if let Some(u) = out.unplaced {
            return Err(PlatformError::Unplaced {
                group: key,
                wanted: missing,
                placed: out.placed.len() as u32,
                unplaced: u.replicas,
                explanation: u.explanation,
            });
        }
        self.live(&key).await
    }

    /// Which `n` live containers of `group` a scale-in should retire so the
    /// survivors stay best spread (`jdos_scheduler::choose_victims` over the
    /// current snapshot), in removal order.
    pub async fn choose_victims(&self, group: &GroupKey, n: usize) -> Result<Vec<InstanceId>> {
        let live = self.live(group).await?;
        let members: Vec<(u32, String)> = live
            .iter()
            .map(|c| (c.id.index, c.host.clone().unwrap_or_default()))
            .collect();
        let mut slot = self.placer_slot().await;
        let placer = placer::ready(&mut slot, self.store(), &self.sched_config).await?;
        let victims = jdos_scheduler::choose_victims(&placer.snap, &members, n);
        Ok(victims
            .into_iter()
            .map(|i| InstanceId::new(group, i))
            .collect())
    }

    /// Writes the work orders (desired running) of `ids` that have none yet,
    /// or whose order no longer matches the record or `group`'s template; a
    /// record whose image differs from the template takes the template's.
    /// Containers without a host or retired are skipped. Idempotent.
    pub async fn publish(&self, group: &Group, ids: &[InstanceId]) -> Result<()> {
        self.write_orders(group, ids, OrderMode::Publish).await
    }

    /// Rewrites the work orders of `ids` from `group`'s current template
    /// (rolling update); with `bump_generation` the agent recreates each
    /// container even when its spec did not change (rolling restart). Not
    /// idempotent with the bump: a step re-run restarts once more.
    pub async fn republish(
        &self,
        group: &Group,
        ids: &[InstanceId],
        bump_generation: bool,
    ) -> Result<()> {
        let mode = if bump_generation {
            OrderMode::Bump
        } else {
            OrderMode::Publish
        };
        self.write_orders(group, ids, mode).await
    }

    #[tracing::instrument(skip_all, fields(group = %group.key(), n = ids.len()))]
    async fn write_orders(&self, group: &Group, ids: &[InstanceId], mode: OrderMode) -> Result<()> {
        let networks = self.networks().await?;
        let app = self.app(&group.app).await?;
        for _ in 0..MAX_REPLANS {
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut written = 0usize;
            for (mut rec, rev) in self.records(ids).await? {
                let Some(host) = rec.host.clone() else {
                    continue;
                };
                if rec.desired == DesiredState::Deleted {
                    continue;
                }
                let current = self.assignment(&host, &rec.id).await?;
                let mut record_changed = false;
                if rec.image != group.template.image {
                    rec.image = group.template.image.clone();
                    record_changed = true;
                }
                if rec.desired != DesiredState::Running {
                    rec.desired = DesiredState::Running;
                    record_changed = true;
                }
                let network = rec
                    .network
                    .as_ref()
                    .and_then(|n| networks.iter().find(|x| &x.name == n))
                    .map(Network::for_agent);
                let generation = match (&current, mode) {
                    (Some((a, _)), OrderMode::Bump) => a.generation + 1,
                    (Some((a, _)), OrderMode::Publish) => a.generation,
                    (None, _) => 0,
                };
                let order = Assignment {
                    container: rec.clone(),
                    template: group.template.clone(),
                    network,
                    generation,
                    // A pending snapshot order survives a republish.
                    snapshot: current.as_ref().and_then(|(a, _)| a.snapshot.clone()),
                };
                let unchanged = current.as_ref().is_some_and(|(a, _)| same_order(a, &order));
                if unchanged && !record_changed {
                    continue;
                }
                let akey = keys::assignment(&host, &rec.id);
                compares.push(Compare::mod_revision(
                    akey.clone(),
                    current.as_ref().map_or(0, |(_, r)| *r),
                ));
                compares.push(Compare::mod_revision(keys::container(&rec.id), rev));
                if record_changed {
                    rec.updated_at_ms = self.now_ms();
                    ops.push(TxnOp::put(keys::container(&rec.id), json::encode(&rec)?));
                }
                if !unchanged {
                    ops.push(TxnOp::put(akey, json::encode(&order)?));
                }
                written += 1;
            }
            if ops.is_empty() {
                return Ok(());
            }
            let action = match mode {
                OrderMode::Publish => "container.publish",
                OrderMode::Bump => "container.restart",
            };
            let event = EventDraft::new(ACTOR, action, "group", &group.key().to_string())
                .app(&app.name, &app.department)
                .message(format!("{written} work order(s) written"));
            if self.commit(compares, ops, event).await? {
                return Ok(());
            }
        }
        Err(PlatformError::Contention(format!(
            "publishing containers of {}",
            group.key()
        )))
    }

    /// Marks `ids` desired = deleted in their records and work orders: the
    /// agents remove them and report them gone, then [`Platform::finalize`]
    /// frees what they held. Idempotent.
    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    pub async fn retire(&self, ids: &[InstanceId]) -> Result<()> {
        self.set_desired(ids, DesiredState::Deleted, "container.retire")
            .await?;
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids.iter().cloned());
        Ok(())
    }

    /// Marks `ids` desired = stopped on their current host (the first phase
    /// of a live migration: stop, then [`Platform::relocate`]). Idempotent.
    #[tracing::instrument(skip_all, fields(n = ids.len()))]
    pub async fn stop_in_place(&self, ids: &[InstanceId]) -> Result<()> {
        self.set_desired(ids, DesiredState::Stopped, "container.stop")
            .await
    }

    async fn set_desired(
        &self,
        ids: &[InstanceId],
        desired: DesiredState,
        action: &str,
    ) -> Result<()> {
        for _ in 0..MAX_REPLANS {
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut groups: HashMap<GroupKey, usize> = HashMap::new();
            for (mut rec, rev) in self.records(ids).await? {
                // A retired container is not brought back by a stop.
                if rec.desired == desired || rec.desired == DesiredState::Deleted {
                    continue;
                }
                rec.desired = desired;
                rec.updated_at_ms = self.now_ms();
                compares.push(Compare::mod_revision(keys::container(&rec.id), rev));
                if let Some(host) = &rec.host {
                    if let Some((mut a, arev)) = self.assignment(host, &rec.id).await? {
                        a.container.desired = desired;
                        let akey = keys::assignment(host, &rec.id);
                        compares.push(Compare::mod_revision(akey.clone(), arev));
                        ops.push(TxnOp::put(akey, json::encode(&a)?));
                    }
                }
                ops.push(TxnOp::put(keys::container(&rec.id), json::encode(&rec)?));
                *groups.entry(rec.id.group_key()).or_default() += 1;
            }
            if ops.is_empty() {
                return Ok(());
            }
            let object = match groups.keys().next() {
                Some(g) if groups.len() == 1 => g.to_string(),
                _ => format!("{} groups", groups.len()),
            };
            let mut event = EventDraft::new(ACTOR, action, "group", &object).message(format!(
                "{} container(s) to {:?}",
                groups.values().sum::<usize>(),
                desired
            ));
            if let Some(g) = groups.keys().next().filter(|_| groups.len() == 1) {
                if let Ok(app) = self.app(&g.app).await {
                    event = event.app(&app.name, &app.department);
                }
            }
            if self.commit(compares, ops, event).await? {
                return Ok(());
            }
        }
        Err(PlatformError::Contention(format!(
            "{action} of {} container(s)",
            ids.len()
        )))
    }

    /// Commits writes with their event; `false` when a compared object moved.
    pub(super) async fn commit(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        event: EventDraft,
    ) -> Result<bool> {
        let m = Mutation {
            compares,
            ops,
            event,
        };
        match self.events.commit(self.store(), m, self.now_ms()).await? {
            Commit::Done { .. } => Ok(true),
            Commit::Stale => Ok(false),
        }
    }

    /// The group's containers not retired, by index.
    async fn live(&self, key: &GroupKey) -> Result<Vec<Container>> {
        Ok(self
            .containers(key)
            .await?
            .into_iter()
            .filter(|c| c.desired != DesiredState::Deleted)
            .collect())
    }

    /// Every network, by name.
    pub(super) async fn networks(&self) -> Result<Vec<Network>> {
        let mut n = self.ipam.list_networks().await?;
        n.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderMode {
    Publish,
    Bump,
}

/// True when two work orders would make the agent do the same thing: the
/// record's phase, restarts, messages and timestamps do not count.
fn same_order(a: &Assignment, b: &Assignment) -> bool {
    let (x, y) = (&a.container, &b.container);
    a.template == b.template
        && a.network == b.network
        && a.generation == b.generation
        && x.id == y.id
        && x.host == y.host
        && x.host_epoch == y.host_epoch
        && x.ip == y.ip
        && x.network == y.network
        && x.image == y.image
        && x.resources == y.resources
        && x.desired == y.desired
}
