//! What the agent tells the server about its containers: one
//! [`ContainerReport`] per assignment, and the book of which reports the
//! server has acknowledged, so a heartbeat carries only what changed.

use std::collections::BTreeMap;

use jdos_runtime::{ContainerStatus, HealthStatus};
use jdos_types::agent::ContainerReport;
use jdos_types::container::DesiredState;
use jdos_types::{ContainerPhase, InstanceId};

use crate::plan::{generation_of, Tracker, Wanted};

/// The report of one assigned identity.
pub fn report(
    id: &InstanceId,
    wanted: &Wanted,
    observed: Option<&ContainerStatus>,
    tracker: Option<&Tracker>,
) -> ContainerReport {
    let mut r = ContainerReport {
        id: id.clone(),
        phase: ContainerPhase::Scheduled,
        gone: false,
        restarts: tracker.map_or(0, |t| t.restarts),
        crash_loop: tracker.is_some_and(|t| t.crash_loop),
        epoch: 0,
        generation: 0,
        message: tracker.map(|t| t.message.clone()).unwrap_or_default(),
        // While the order stands: the server keeps the outcome, then
        // withdraws the order.
        snapshot: tracker
            .and_then(|t| t.snapshot.as_ref())
            .filter(|s| wanted.snapshot.as_deref() == Some(s.reference.as_str()))
            .cloned(),
    };
    match observed {
        None => {
            if wanted.desired == DesiredState::Deleted {
                r.gone = true;
                r.phase = ContainerPhase::Stopped;
                r.message.clear();
            } else if wanted.spec.is_err() || r.crash_loop || !r.message.is_empty() {
                r.phase = ContainerPhase::Failed;
            } else if tracker.is_some_and(|t| t.in_flight) {
                r.phase = ContainerPhase::Starting;
            } else if wanted.desired == DesiredState::Stopped {
                r.phase = ContainerPhase::Stopped;
            }
        }
        Some(s) => {
            let health = tracker.and_then(|t| t.health.as_ref()).map(|h| h.status());
            r.phase = s.phase(health);
            r.epoch = s.epoch().unwrap_or(0);
            r.generation = generation_of(s);
            if r.crash_loop && !s.state.is_running() {
                r.phase = ContainerPhase::Failed;
            }
            if r.phase == ContainerPhase::Unhealthy {
                if let Some(h) = tracker.and_then(|t| t.health.as_ref()) {
                    r.message = format!(
                        "unhealthy: {}",
                        h.last_failure().unwrap_or("health check failed")
                    );
                }
            } else if r.phase == ContainerPhase::Running && health != Some(HealthStatus::Unhealthy)
            {
                r.message.clear();
            }
        }
    }
    r
}

/// Current reports and the ones the server acknowledged.
#[derive(Debug, Default)]
pub struct ReportBook {
    current: BTreeMap<InstanceId, ContainerReport>,
    acked: BTreeMap<InstanceId, ContainerReport>,
    full_due: bool,
    // The reports rest on a listing of the engine and a list of
    // assignments: before that, a full report would tell the server that
    // nothing runs here.
    ready: bool,
    // Every current report is acknowledged: a heartbeat has nothing to
    // send (worked out once per change, not on every heartbeat).
    synced: bool,
}

impl ReportBook {
    /// An empty book whose first heartbeat is full.
    pub fn new() -> Self {
        ReportBook {
            full_due: true,
            ..Default::default()
        }
    }

    /// Replaces the current reports (one per assignment). `ready`: they
    /// rest on a listing of the engine and the host's assignments; until
    /// the first ready set nothing is sent. True when there is something
    /// new to send.
    pub fn set(&mut self, reports: BTreeMap<InstanceId, ContainerReport>, ready: bool) -> bool {
        let differs = self.current != reports;
        let changed = differs || (ready && !self.ready);
        self.current = reports;
        if differs {
            self.synced = self.nothing_unacked();
        }
        self.ready |= ready;
        changed && self.ready
    }

    /// The next heartbeat should carry every report.
    pub fn want_full(&mut self) {
        self.full_due = true;
    }

    /// The reports to send and whether they are the full set.
    pub fn pending(&self) -> (Vec<ContainerReport>, bool) {
        if !self.ready {
            return (Vec::new(), false);
        }
        if self.full_due {
            return (self.current.values().cloned().collect(), true);
        }
        if self.synced {
            return (Vec::new(), false);
        }
        let changed = self
            .current
            .iter()
            .filter(|(id, r)| self.acked.get(*id) != Some(*r))
            .map(|(_, r)| r.clone())
            .collect();
        (changed, false)
    }

    /// The server accepted `sent` (a full set if `full`).
    pub fn ack(&mut self, sent: &[ContainerReport], full: bool) {
        if sent.is_empty() && !full {
            return;
        }
        if full {
            self.full_due = false;
            self.acked.clear();
        }
        for r in sent {
            self.acked.insert(r.id.clone(), r.clone());
        }
        let current = &self.current;
        self.acked.retain(|id, _| current.contains_key(id));
        self.synced = self.nothing_unacked();
    }

    fn nothing_unacked(&self) -> bool {
        self.current
            .iter()
            .all(|(id, r)| self.acked.get(id) == Some(r))
    }

    /// The current report of `id`.
    pub fn get(&self, id: &InstanceId) -> Option<&ContainerReport> {
        self.current.get(id)
    }

    /// Every current report.
    pub fn all(&self) -> impl Iterator<Item = &ContainerReport> {
        self.current.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(i: u32, phase: ContainerPhase) -> ContainerReport {
        ContainerReport {
            id: format!("a/e/g/{i}").parse().unwrap(),
            phase,
            gone: false,
            restarts: 0,
            crash_loop: false,
            epoch: 0,
            generation: 0,
            message: String::new(),
            snapshot: None,
        }
    }

    #[test]
    fn only_changes_are_sent_after_a_full_report() {
        let mut b = ReportBook::new();
        let set = |v: Vec<ContainerReport>| v.into_iter().map(|r| (r.id.clone(), r)).collect();
        b.set(set(vec![rep(0, ContainerPhase::Scheduled)]), false);
        assert_eq!(
            b.pending(),
            (vec![], false),
            "nothing before the first listing"
        );
        b.set(
            set(vec![
                rep(0, ContainerPhase::Starting),
                rep(1, ContainerPhase::Running),
            ]),
            true,
        );
        let (sent, full) = b.pending();
        assert!(full);
        assert_eq!(sent.len(), 2);
        b.ack(&sent, full);
        assert_eq!(b.pending(), (vec![], false));
        b.set(
            set(vec![
                rep(0, ContainerPhase::Running),
                rep(1, ContainerPhase::Running),
            ]),
            true,
        );
        let (sent, full) = b.pending();
        assert_eq!(
            (sent.clone(), full),
            (vec![rep(0, ContainerPhase::Running)], false)
        );
        // Not acknowledged (the heartbeat failed): sent again.
        assert_eq!(b.pending().0, sent);
        b.ack(&sent, false);
        assert!(b.pending().0.is_empty());
        b.want_full();
        assert_eq!(b.pending().0.len(), 2);
    }

    #[test]
    fn a_change_during_a_heartbeat_is_still_sent_and_a_revert_is_not() {
        let mut b = ReportBook::new();
        let set = |v: Vec<ContainerReport>| v.into_iter().map(|r| (r.id.clone(), r)).collect();
        b.set(set(vec![rep(0, ContainerPhase::Starting)]), true);
        let (sent, full) = b.pending();
        b.ack(&sent, full);
        assert!(b.pending().0.is_empty());
        // Running, then the heartbeat carrying it is under way when it
        // turns unhealthy: the ack of `running` leaves `unhealthy` due.
        b.set(set(vec![rep(0, ContainerPhase::Running)]), true);
        let (sent, full) = b.pending();
        b.set(set(vec![rep(0, ContainerPhase::Unhealthy)]), true);
        b.ack(&sent, full);
        assert_eq!(b.pending().0, vec![rep(0, ContainerPhase::Unhealthy)]);
        b.ack(&b.pending().0, false);
        // Back and forth between heartbeats: the server already has it.
        b.set(set(vec![rep(0, ContainerPhase::Running)]), true);
        b.set(set(vec![rep(0, ContainerPhase::Unhealthy)]), true);
        assert!(b.pending().0.is_empty());
        // An unassigned identity leaves nothing to send either.
        b.set(BTreeMap::new(), true);
        assert!(b.pending().0.is_empty());
    }
}
