//! The pure half of the failover controller: what a host's heartbeat age
//! says about it, which state change that asks for, and whether a
//! datacenter's failures are many enough to brake. No IO, no clock: `now` and
//! the last heartbeat are arguments, so tests drive time by hand.

use std::collections::BTreeMap;

use jdos_types::{Host, HostState, UnixMillis};

/// How long missed heartbeats may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTimings {
    /// Without a heartbeat this long a host is suspect (not schedulable).
    pub suspect_after_ms: u64,
    /// And this long it is down: fenced and evacuated.
    pub down_after_ms: u64,
}

impl Default for HealthTimings {
    fn default() -> Self {
        HealthTimings {
            suspect_after_ms: 3_000,
            down_after_ms: 6_000,
        }
    }
}

/// What the heartbeats say about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Heartbeating.
    Alive,
    /// Missed heartbeats for the suspect interval.
    Suspect,
    /// Missed heartbeats for the down interval.
    Down,
}

/// Judges a host from its last heartbeat. `watching_since` is when this
/// server started judging: liveness is kept in memory, so after a restart
/// every host gets one full down interval to heartbeat before it is judged
/// (a restarted server must not evacuate a healthy datacenter).
pub fn verdict(
    last_heartbeat: Option<UnixMillis>,
    watching_since: UnixMillis,
    now: UnixMillis,
    t: &HealthTimings,
) -> Verdict {
    let seen = last_heartbeat.unwrap_or(0).max(watching_since);
    let age = now.saturating_sub(seen);
    if age >= t.down_after_ms {
        Verdict::Down
    } else if age >= t.suspect_after_ms {
        Verdict::Suspect
    } else {
        Verdict::Alive
    }
}

/// When the verdict on a host last seen at `last_heartbeat` next worsens
/// (suspect, then down) if no heartbeat comes; `None` once it is down.
pub fn next_change(
    last_heartbeat: Option<UnixMillis>,
    watching_since: UnixMillis,
    now: UnixMillis,
    t: &HealthTimings,
) -> Option<UnixMillis> {
    let seen = last_heartbeat.unwrap_or(0).max(watching_since);
    [seen + t.suspect_after_ms, seen + t.down_after_ms]
        .into_iter()
        .find(|at| *at > now)
}

/// True for hosts the controller judges: those an agent stands for. Hosts
/// registered by hand or simulated by `jdos dev` never heartbeat.
pub fn judged(host: &Host) -> bool {
    !host.driver.is_empty() && host.driver != crate::dev::SIMULATED_DRIVER
}

/// A host state change the controller must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Ready (or draining, degraded) → suspect: not schedulable any more.
    Suspect,
    /// → down. `fence`: bump its epoch now and evacuate it; otherwise the
    /// datacenter is braked and the host is held (epoch kept, containers
    /// left in place as lost).
    Down {
        /// Fence and evacuate now.
        fence: bool,
    },
    /// Suspect or down → ready: heartbeating again. An agent fenced while
    /// down learns its new epoch from the heartbeat reply and reconciles to
    /// its (emptied) assignments, destroying the moved containers.
    Recovered {
        /// The state it leaves.
        from: HostState,
    },
}

/// The change `v` asks of `host`, if any. Draining and degraded hosts keep
/// their state while alive (the drain or the hardware check owns it) but go
/// down like any other when their agent stops.
pub fn transition(host: &Host, v: Verdict, braked: bool) -> Option<Transition> {
    match (v, host.state) {
        (Verdict::Alive, HostState::Suspect | HostState::Down) => {
            Some(Transition::Recovered { from: host.state })
        }
        (Verdict::Alive, _) => None,
        (Verdict::Suspect, HostState::Ready) => Some(Transition::Suspect),
        (Verdict::Suspect, _) => None,
        (Verdict::Down, HostState::Down) => None,
        (Verdict::Down, _) => Some(Transition::Down { fence: !braked }),
    }
}

/// When too many hosts fail at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrakePolicy {
    /// Share of a datacenter's judged hosts (suspect or down) above which
    /// evacuation stops.
    pub fraction: f64,
    /// Fewest failing hosts that can engage it (a 3-host datacenter losing
    /// one is a host failure, not a mass failure).
    pub min_hosts: u32,
}

impl Default for BrakePolicy {
    fn default() -> Self {
        BrakePolicy {
            fraction: 0.3,
            min_hosts: 3,
        }
    }
}

impl BrakePolicy {
    /// True when `failing` of `total` hosts is a mass failure.
    pub fn trips(&self, failing: u32, total: u32) -> bool {
        total > 0
            && failing >= self.min_hosts
            && f64::from(failing) > self.fraction * f64::from(total)
    }
}

/// A datacenter's judged hosts and which of them fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatacenterHealth {
    /// Judged hosts.
    pub total: u32,
    /// Suspect or down hosts, sorted.
    pub failing: Vec<String>,
}

/// Counts failing (suspect or down) hosts per datacenter from each judged
/// host's verdict.
pub fn datacenters<'a>(
    judged: impl IntoIterator<Item = (&'a Host, Verdict)>,
) -> BTreeMap<String, DatacenterHealth> {
    let mut out: BTreeMap<String, DatacenterHealth> = BTreeMap::new();
    for (h, v) in judged {
        let d = out.entry(h.datacenter.clone()).or_default();
        d.total += 1;
        if v != Verdict::Alive {
            d.failing.push(h.name.clone());
        }
    }
    for d in out.values_mut() {
        d.failing.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::Resources;

    fn host(name: &str, dc: &str, state: HostState) -> Host {
        Host {
            name: name.into(),
            datacenter: dc.into(),
            switch: "s1".into(),
            rack: "r1".into(),
            capacity: Resources::new(1000, 1 << 30),
            resource_zone: "general".into(),
            labels: Default::default(),
            state,
            cordoned: false,
            epoch: 0,
            last_heartbeat_ms: 0,
            registered_at_ms: 0,
            driver: "docker".into(),
        }
    }

    const T: HealthTimings = HealthTimings {
        suspect_after_ms: 3_000,
        down_after_ms: 6_000,
    };

    #[test]
    fn the_next_change_is_the_next_deadline_still_ahead() {
        assert_eq!(next_change(Some(10_000), 0, 11_000, &T), Some(13_000));
        assert_eq!(next_change(Some(10_000), 0, 13_000, &T), Some(16_000));
        assert_eq!(next_change(Some(10_000), 0, 16_000, &T), None);
        // Never seen: counted from when watching began.
        assert_eq!(next_change(None, 5_000, 5_000, &T), Some(8_000));
    }

    #[test]
    fn heartbeat_age_gives_the_verdict() {
        assert_eq!(verdict(Some(10_000), 0, 12_999, &T), Verdict::Alive);
        assert_eq!(verdict(Some(10_000), 0, 13_000, &T), Verdict::Suspect);
        assert_eq!(verdict(Some(10_000), 0, 15_999, &T), Verdict::Suspect);
        assert_eq!(verdict(Some(10_000), 0, 16_000, &T), Verdict::Down);
    }

    #[test]
    fn a_restarted_server_gives_every_host_one_down_interval() {
        // Never heard of since the restart at 100 s: not judged before 106 s.
        assert_eq!(verdict(None, 100_000, 102_999, &T), Verdict::Alive);
        assert_eq!(verdict(None, 100_000, 103_000, &T), Verdict::Suspect);
        assert_eq!(verdict(None, 100_000, 105_999, &T), Verdict::Suspect);
        assert_eq!(verdict(None, 100_000, 106_000, &T), Verdict::Down);
        // A heartbeat older than the restart counts from the restart.
        assert_eq!(verdict(Some(1), 100_000, 105_000, &T), Verdict::Suspect);
    }

    #[test]
    fn transitions_follow_the_verdict() {
        let ready = host("h", "dc", HostState::Ready);
        let suspect = host("h", "dc", HostState::Suspect);
        let down = host("h", "dc", HostState::Down);
        let draining = host("h", "dc", HostState::Draining);
        assert_eq!(transition(&ready, Verdict::Alive, false), None);
        assert_eq!(
            transition(&ready, Verdict::Suspect, false),
            Some(Transition::Suspect)
        );
        assert_eq!(transition(&suspect, Verdict::Suspect, false), None);
        assert_eq!(
            transition(&suspect, Verdict::Down, false),
            Some(Transition::Down { fence: true })
        );
        assert_eq!(
            transition(&ready, Verdict::Down, true),
            Some(Transition::Down { fence: false })
        );
        assert_eq!(transition(&down, Verdict::Down, false), None);
        assert_eq!(
            transition(&down, Verdict::Alive, false),
            Some(Transition::Recovered {
                from: HostState::Down
            })
        );
        assert_eq!(
            transition(&suspect, Verdict::Alive, true),
            Some(Transition::Recovered {
                from: HostState::Suspect
            })
        );
        // A drain owns the state of a live host, not of a dead one.
        assert_eq!(transition(&draining, Verdict::Suspect, false), None);
        assert_eq!(
            transition(&draining, Verdict::Down, false),
            Some(Transition::Down { fence: true })
        );
    }

    #[test]
    fn the_brake_needs_both_the_share_and_the_count() {
        let p = BrakePolicy::default();
        assert!(!p.trips(1, 3), "one host of three is a host failure");
        assert!(!p.trips(2, 3), "below the minimum count");
        assert!(p.trips(3, 9), "a third of nine");
        assert!(!p.trips(3, 10), "exactly 30 % does not trip");
        assert!(p.trips(4, 10));
        assert!(!p.trips(0, 0));
        let strict = BrakePolicy {
            fraction: 0.5,
            min_hosts: 1,
        };
        assert!(!strict.trips(1, 2));
        assert!(strict.trips(2, 3));
    }

    #[test]
    fn datacenters_count_failing_hosts() {
        let hs = [
            host("a1", "a", HostState::Ready),
            host("a2", "a", HostState::Ready),
            host("a3", "a", HostState::Down),
            host("b1", "b", HostState::Ready),
        ];
        let v = [
            Verdict::Alive,
            Verdict::Suspect,
            Verdict::Down,
            Verdict::Alive,
        ];
        let d = datacenters(hs.iter().zip(v));
        assert_eq!(d["a"].total, 3);
        assert_eq!(d["a"].failing, ["a2", "a3"]);
        assert_eq!(d["b"].total, 1);
        assert!(d["b"].failing.is_empty());
    }
}
