//! Relocation: failover, drain and migrate move containers to other hosts
//! with the same IPs.

use std::collections::HashMap;

use jdos_scheduler::relocate::relocate_and_commit;
use jdos_scheduler::GroupRequest;
use jdos_types::container::DesiredState;
use jdos_types::{Container, Group, InstanceId};

use super::ops::ACTOR;
use super::placer;
use super::planner::{Extra, PlatformPlanner};
use super::{Platform, PlatformError, Result, MAX_ATTEMPTS};
use crate::events::EventDraft;

impl Platform {
    /// Re-places the containers of `ids` (members of `group`) whose host is
    /// in `avoid_hosts` (or who have none) on other hosts, keeping their IPs
    /// and the group's spread caps: each record gets its new host and that
    /// host's epoch and phase `scheduled`, the allocations move, the
    /// placement record follows, and a published container's work order
    /// moves from the old host's key to the new host's (desired running) —
    /// one transaction for the group. The old host's agent, no longer
    /// holding the order, destroys its copy (fencing).
    ///
    /// Containers already off `avoid_hosts` are left alone, which is what
    /// makes a re-run after a crash a no-op: to move a container off its
    /// current host, name that host in `avoid_hosts`. Returns the records of
    /// every container of `ids` as they now are. Fails with
    /// [`PlatformError::Unplaced`] when some fit nowhere (the others moved).
    #[tracing::instrument(skip_all, fields(group = %group.key(), n = ids.len(), reason))]
    pub async fn relocate(
        &self,
        group: &Group,
        ids: &[InstanceId],
        avoid_hosts: &[String],
        reason: &str,
    ) -> Result<Vec<Container>> {
        let key = group.key();
        let records = self.records(ids).await?;
        let moving: Vec<Container> = records
            .iter()
            .map(|(c, _)| c)
            .filter(|c| c.id.group_key() == key && c.desired != DesiredState::Deleted)
            .filter(|c| c.host.as_ref().is_none_or(|h| avoid_hosts.contains(h)))
            .cloned()
            .collect();
        if moving.is_empty() {
            return Ok(records.into_iter().map(|(c, _)| c).collect());
        }
        let app = self.app(&group.app).await?;
        let mut orders = HashMap::new();
        for c in &moving {
            if let Some(host) = &c.host {
                if let Some((a, rev)) = self.assignment(host, &c.id).await? {
                    orders.insert(
                        c.id.clone(),
                        (jdos_types::keys::assignment(host, &c.id), a, rev),
                    );
                }
            }
        }
        let req = GroupRequest::for_group(group, app.business_level, 0, Vec::new());
        let event = EventDraft::new(ACTOR, "container.relocate", "group", &key.to_string())
            .app(&app.name, &app.department)
            .message(format!(
                "moving {} container(s) off {}: {reason}",
                moving.len(),
                avoid_hosts.join(", ")
            ));
        let now = self.now_ms();
        let mut slot = self.placer_slot().await;
        let placer = placer::ready(&mut slot, self.store(), &self.sched_config).await?;
        let planner =
            PlatformPlanner::new(self, Extra::Relocate { orders }, event, placer.feed.take());
        let out = relocate_and_commit(
            &mut placer.sched,
            &mut placer.snap,
            &planner,
            &req,
            &moving,
            avoid_hosts,
            now,
            MAX_ATTEMPTS,
        )
        .await
        .map_err(|e| planner.error(e));
        placer.feed = planner.into_feed();
        drop(slot);
        let out = out?;
        tracing::info!(
            moved = out.moved.len(),
            conflicts = out.conflicts_retried,
            "relocated"
        );
        if let Some(u) = out.unplaced {
            return Err(PlatformError::Unplaced {
                group: key,
                wanted: moving.len() as u32,
                placed: out.moved.len() as u32,
                unplaced: u.replicas,
                explanation: u.explanation,
            });
        }
        Ok(self
            .records(ids)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect())
    }
}
