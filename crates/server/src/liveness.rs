//! Agent liveness, kept in memory, and the timings agents and the failure
//! detector share.

use std::collections::HashMap;
use std::sync::Mutex;

use jdos_types::UnixMillis;

/// Agent timings (defaults after the issue: heartbeat 1 s, suspect 3 s,
/// down 6 s, agent self-fence 5 s — less than down, so an agent has stopped
/// its containers before the server moves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Agents heartbeat this often.
    pub heartbeat_interval_ms: u64,
    /// A host is suspect after this long without a heartbeat.
    pub suspect_after_ms: u64,
    /// A host is down (its containers move) after this long.
    pub down_after_ms: u64,
    /// An agent that has not reached the server this long stops its
    /// containers by itself.
    pub fence_after_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat_interval_ms: 1_000,
            suspect_after_ms: 3_000,
            down_after_ms: 6_000,
            fence_after_ms: 5_000,
        }
    }
}

impl Timings {
    /// Checks the orderings the failure handling relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat interval must be greater than 0".into());
        }
        if self.suspect_after_ms <= self.heartbeat_interval_ms {
            return Err("suspect-after must be longer than the heartbeat interval".into());
        }
        if self.down_after_ms <= self.suspect_after_ms {
            return Err("down-after must be longer than suspect-after".into());
        }
        if self.fence_after_ms >= self.down_after_ms {
            return Err(
                "fence-after must be shorter than down-after (an agent must stop its containers before they are moved)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What the server last heard from one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Server time of the last heartbeat (or registration).
    pub last_seen_ms: UnixMillis,
    /// The epoch that agent runs under.
    pub epoch: u64,
    /// `last_heartbeat_ms` last written to the host record.
    pub persisted_ms: UnixMillis,
}

/// Last-seen time per host.
#[derive(Debug, Default)]
pub struct Liveness {
    hosts: Mutex<HashMap<String, Seen>>,
}

impl Liveness {
    /// Records a heartbeat; returns the previous entry.
    pub fn touch(&self, host: &str, now_ms: UnixMillis, epoch: u64) -> Option<Seen> {
        let mut m = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(host.to_string()).or_default();
        let prev = (e.last_seen_ms != 0).then_some(*e);
        e.last_seen_ms = now_ms;
        e.epoch = epoch;
        prev
    }

    /// Records that `last_heartbeat_ms` was written to the host record.
    pub fn persisted(&self, host: &str, at_ms: UnixMillis) {
        if let Some(e) = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(host)
        {
            e.persisted_ms = at_ms;
        }
    }

    /// One host's entry.
    pub fn get(&self, host: &str) -> Option<Seen> {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .copied()
    }

    /// When each host was last heard from (hosts never heard from since this
    /// server started are absent: judge them by the record's
    /// `last_heartbeat_ms`).
    pub fn last_seen(&self) -> Vec<(String, UnixMillis)> {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(h, s)| (h.clone(), s.last_seen_ms))
            .collect()
    }

    /// Forgets a host (deleted).
    pub fn forget(&self, host: &str) {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
    }
}
