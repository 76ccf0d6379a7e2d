//! What the agent tells the server about its containers: one
//! [`ContainerReport`] per assignment, and the book of which reports the
//! server has acknowledged, so a heartbeat carries only what changed.

use std::collections::{BTreeMap, BTreeSet};

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
///
/// Work is in proportion to what changed: `set` compares each new report
/// with the current one once, and the ids whose current report the server
/// does not have yet are kept apart, so a heartbeat neither diffs nor
/// clones the unchanged ones.
#[derive(Debug, Default)]
pub struct ReportBook {
    current: BTreeMap<InstanceId, ContainerReport>,
    acked: BTreeMap<InstanceId, ContainerReport>,
    // Ids whose current report differs from the acknowledged one.
    unacked: BTreeSet<InstanceId>,
    full_due: bool,
    // The reports rest on a listing of the engine and a list of
    // assignments: before that, a full report would tell the server that
    // nothing runs here.
    ready: bool,
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
        let mut differs = false;
        // Gone from the assignments: nothing more to send about them.
        for id in self.current.keys() {
            if !reports.contains_key(id) {
                differs = true;
                self.unacked.remove(id);
                self.acked.remove(id);
            }
        }
        for (id, r) in &reports {
            if self.current.get(id) == Some(r) {
                continue;
            }
            differs = true;
            if self.acked.get(id) == Some(r) {
                self.unacked.remove(id);
            } else {
                self.unacked.insert(id.clone());
            }
        }
        self.current = reports;
        let changed = differs || (ready && !self.ready);
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
        let changed = self
            .unacked
            .iter()
            .filter_map(|id| self.current.get(id).cloned())
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
            self.unacked = self.current.keys().cloned().collect();
        }
        for r in sent {
            if !self.current.contains_key(&r.id) {
                continue;
            }
            // The server has `r` now; the current report may have moved on.
            if self.current.get(&r.id) == Some(r) {
                self.unacked.remove(&r.id);
            } else {
                self.unacked.insert(r.id.clone());
            }
            self.acked.insert(r.id.clone(), r.clone());
        }
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

    /// The book against a model that diffs everything every time: the
    /// reports a heartbeat carries are the same.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            // Reports for ids 0..n with these phases (by index).
            Set(Vec<(u32, u8)>),
            // Send what is pending; `true`: the server acknowledges it.
            Beat(bool),
            // Send what is pending, then a set, then the acknowledgement.
            BeatAcrossSet(Vec<(u32, u8)>),
            WantFull,
        }

        const PHASES: [ContainerPhase; 3] = [
            ContainerPhase::Starting,
            ContainerPhase::Running,
            ContainerPhase::Failed,
        ];

        fn reports(v: &[(u32, u8)]) -> BTreeMap<InstanceId, ContainerReport> {
            v.iter()
                .map(|(i, p)| {
                    let r = rep(*i, PHASES[*p as usize % 3]);
                    (r.id.clone(), r)
                })
                .collect()
        }

        #[derive(Default)]
        struct Naive {
            current: BTreeMap<InstanceId, ContainerReport>,
            acked: BTreeMap<InstanceId, ContainerReport>,
            full_due: bool,
        }

        impl Naive {
            // An id that leaves the assignments is forgotten: if it comes
            // back, the server hears its report again.
            fn set(&mut self, v: &[(u32, u8)]) {
                self.current = reports(v);
                let current = &self.current;
                self.acked.retain(|id, _| current.contains_key(id));
            }
            fn pending(&self) -> (Vec<ContainerReport>, bool) {
                if self.full_due {
                    return (self.current.values().cloned().collect(), true);
                }
                let v = self
                    .current
                    .iter()
                    .filter(|(id, r)| self.acked.get(*id) != Some(*r))
                    .map(|(_, r)| r.clone())
                    .collect();
                (v, false)
            }
            fn ack(&mut self, sent: &[ContainerReport], full: bool) {
                if full {
                    self.full_due = false;
                    self.acked.clear();
                }
                for r in sent {
                    self.acked.insert(r.id.clone(), r.clone());
                }
                let current = &self.current;
                self.acked.retain(|id, _| current.contains_key(id));
            }
        }

        fn op() -> impl Strategy<Value = Op> {
            let set = proptest::collection::vec((0u32..6, 0u8..3), 0..6);
            prop_oneof![
                set.clone().prop_map(Op::Set),
                any::<bool>().prop_map(Op::Beat),
                set.prop_map(Op::BeatAcrossSet),
                Just(Op::WantFull),
            ]
        }

        proptest! {
            #[test]
            fn heartbeats_carry_what_a_full_diff_would(ops in proptest::collection::vec(op(), 1..40)) {
                let mut book = ReportBook::new();
                let mut naive = Naive { full_due: true, ..Default::default() };
                book.set(BTreeMap::new(), true);
                for op in ops {
                    match op {
                        Op::Set(v) => {
                            book.set(reports(&v), true);
                            naive.set(&v);
                        }
                        Op::Beat(ok) => {
                            let sent = book.pending();
                            prop_assert_eq!(&sent, &naive.pending());
                            if ok {
                                book.ack(&sent.0, sent.1);
                                naive.ack(&sent.0, sent.1);
                            }
                        }
                        Op::BeatAcrossSet(v) => {
                            let sent = book.pending();
                            prop_assert_eq!(&sent, &naive.pending());
                            book.set(reports(&v), true);
                            naive.set(&v);
                            book.ack(&sent.0, sent.1);
                            naive.ack(&sent.0, sent.1);
                        }
                        Op::WantFull => {
                            book.want_full();
                            naive.full_due = true;
                        }
                    }
                    prop_assert_eq!(book.pending(), naive.pending());
                }
            }
        }
    }
}
