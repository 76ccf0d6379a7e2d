//! Agent reports applied to container records.

use jdos_store::{json, Compare, TxnOp};
use jdos_types::agent::{Assignment, ContainerReport, SnapshotReport};
use jdos_types::container::DesiredState;
use jdos_types::{keys, Container, ContainerPhase};

use super::{Platform, PlatformError, Result, MAX_REPLANS};
use crate::events::EventDraft;

/// What applying one heartbeat's reports did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    /// Records changed.
    pub applied: usize,
    /// Reports ignored: no such container, not placed on this host, or from
    /// a stale epoch (a container the host ran before it was fenced).
    pub ignored: usize,
    /// Retired containers reported gone (their work orders were deleted;
    /// finalize frees them).
    pub gone: usize,
}

impl Platform {
    /// Applies an agent's reports to the records of containers placed on
    /// `host`, in one transaction with one event. A report is ignored when
    /// the container is not placed on `host` or its epoch differs from the
    /// record's `host_epoch` (a copy left from before a move). A report
    /// that changes nothing writes nothing. A retired container reported
    /// gone has its work order deleted, so [`Platform::finalize`] proceeds.
    #[tracing::instrument(skip_all, fields(host, n = reports.len()))]
    pub async fn apply_reports(
        &self,
        host: &str,
        reports: &[ContainerReport],
    ) -> Result<ReportOutcome> {
        if reports.is_empty() {
            return Ok(ReportOutcome::default());
        }
        for (r, s) in reports
            .iter()
            .filter_map(|r| r.snapshot.as_ref().map(|s| (r, s)))
        {
            self.record_snapshot(host, r, s).await?;
        }
        for _ in 0..MAX_REPLANS {
            let mut out = ReportOutcome::default();
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut changes = Vec::new();
            let mut gone_ids = Vec::new();
            for r in reports {
                let Some(kv) = self.store.get(&keys::container(&r.id)).await? else {
                    out.ignored += 1;
                    continue;
                };
                let rec: Container = json::decode(&kv)?;
                if rec.host.as_deref() != Some(host) || r.epoch != rec.host_epoch {
                    out.ignored += 1;
                    continue;
                }
                let mut next = rec.clone();
                next.phase = if r.gone && rec.desired != DesiredState::Deleted {
                    // Removed while it should exist: the agent recreates it.
                    ContainerPhase::Pending
                } else if r.gone {
                    ContainerPhase::Stopped
                } else {
                    r.phase
                };
                next.restarts = r.restarts;
                next.message = if r.crash_loop && r.message.is_empty() {
                    "crash loop: the restart back-off gave up".to_string()
                } else {
                    r.message.clone()
                };
                let retired_gone = r.gone && rec.desired == DesiredState::Deleted;
                let akey = keys::assignment(host, &r.id);
                let order = if retired_gone {
                    self.store.get(&akey).await?
                } else {
                    None
                };
                if next == rec && order.is_none() {
                    continue;
                }
                if next != rec {
                    next.updated_at_ms = self.now_ms();
                    compares.push(Compare::mod_revision(
                        keys::container(&r.id),
                        kv.mod_revision,
                    ));
                    ops.push(TxnOp::put(keys::container(&r.id), json::encode(&next)?));
                    changes.push(format!("{} {}", r.id.index, next.phase.as_str()));
                    out.applied += 1;
                }
                if let Some(o) = order {
                    compares.push(Compare::mod_revision(akey.clone(), o.mod_revision));
                    ops.push(TxnOp::delete(akey));
                    out.gone += 1;
                    gone_ids.push(r.id.clone());
                }
            }
            if ops.is_empty() {
                return Ok(out);
            }
            changes.truncate(20);
            let event = EventDraft::new(&format!("agent:{host}"), "container.report", "host", host)
                .message(format!(
                    "{} record(s) updated, {} gone: {}",
                    out.applied,
                    out.gone,
                    changes.join(", ")
                ));
            if self.commit(compares, ops, event).await? {
                for id in gone_ids {
                    self.note_retired(id);
                }
                return Ok(out);
            }
        }
        Err(PlatformError::Contention(format!(
            "applying reports of {host}"
        )))
    }

    /// Keeps the outcome of a snapshot order at [`keys::snapshot`] — once,
    /// and only while `host`'s work order for the container asks for that
    /// reference (an agent cannot write outcomes nobody ordered).
    async fn record_snapshot(
        &self,
        host: &str,
        r: &ContainerReport,
        s: &SnapshotReport,
    ) -> Result<()> {
        let key = keys::snapshot(&s.reference);
        if self.store.get(&key).await?.is_some() {
            return Ok(());
        }
        let Some(kv) = self.store.get(&keys::assignment(host, &r.id)).await? else {
            return Ok(());
        };
        let order: Assignment = json::decode(&kv)?;
        if order.snapshot.as_deref() != Some(s.reference.as_str()) {
            return Ok(());
        }
        let mut event = EventDraft::new(
            &format!("agent:{host}"),
            "container.snapshot",
            "container",
            &r.id.to_string(),
        );
        event.app = Some(r.id.app.clone());
        let event = if s.error.is_empty() {
            event.message(format!("committed to {} ({})", s.reference, s.image_id))
        } else {
            event.failed(format!("commit to {} failed: {}", s.reference, s.error))
        };
        // Absent (revision 0) when compared: a concurrent heartbeat with
        // the same outcome loses harmlessly.
        self.commit(
            vec![Compare::mod_revision(key.as_str(), 0)],
            vec![TxnOp::put(key.as_str(), json::encode(s)?)],
            event,
        )
        .await?;
        Ok(())
    }
}
