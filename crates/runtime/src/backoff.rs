//! Restart back-off for crashed containers: exponential with a cap, reset
//! after the container has run stably, and a verdict to migrate after too
//! many failures in a row. Pure: time is passed in, so the agent and the
//! simulator get the same decisions.

use std::time::Duration;

use jdos_types::UnixMillis;
use serde::{Deserialize, Serialize};

/// How restarts back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// Delay before the first restart, ms.
    pub initial_ms: u64,
    /// Longest delay, ms.
    pub max_ms: u64,
    /// Growth factor per consecutive failure.
    pub multiplier: u32,
    /// A run at least this long counts as stable and resets the count, ms.
    pub reset_after_ms: u64,
    /// Consecutive failures after which the container should be moved to
    /// another host instead of restarted in place.
    pub migrate_after: u32,
}

impl Default for BackoffPolicy {
    /// 1 s, doubling, capped at 60 s; reset after 60 s of running; migrate
    /// after 5 failures in a row.
    fn default() -> Self {
        BackoffPolicy {
            initial_ms: 1_000,
            max_ms: 60_000,
            multiplier: 2,
            reset_after_ms: 60_000,
            migrate_after: 5,
        }
    }
}

impl BackoffPolicy {
    /// The delay before restart number `failures` (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(63);
        let factor = u64::from(self.multiplier.max(1)).saturating_pow(exp);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }
}

/// What to do about a container that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart in place after this delay.
    RestartAfter(Duration),
    /// Give up here: move it to another host.
    Migrate {
        /// Consecutive failures so far.
        failures: u32,
    },
}

/// Per-container restart bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartTracker {
    policy: BackoffPolicy,
    failures: u32,
    last_started_ms: Option<UnixMillis>,
}

impl RestartTracker {
    /// A tracker with no failures.
    pub fn new(policy: BackoffPolicy) -> Self {
        RestartTracker {
            policy,
            failures: 0,
            last_started_ms: None,
        }
    }

    /// The container was (re)started at `now_ms`.
    pub fn on_started(&mut self, now_ms: UnixMillis) {
        self.last_started_ms = Some(now_ms);
    }

    /// Called while it runs: resets the count once the run is stable.
    pub fn on_running(&mut self, now_ms: UnixMillis) {
        if self.is_stable(now_ms) {
            self.failures = 0;
        }
    }

    fn is_stable(&self, now_ms: UnixMillis) -> bool {
        self.last_started_ms
            .is_some_and(|s| now_ms.saturating_sub(s) >= self.policy.reset_after_ms)
    }

    /// The container exited (crashed or failed its health check) at `now_ms`.
    pub fn on_exit(&mut self, now_ms: UnixMillis) -> RestartDecision {
        if self.is_stable(now_ms) {
            self.failures = 0;
        }
        self.last_started_ms = None;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.policy.migrate_after {
            RestartDecision::Migrate {
                failures: self.failures,
            }
        } else {
            RestartDecision::RestartAfter(self.policy.delay(self.failures))
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let p = BackoffPolicy {
            max_ms: 5_000,
            migrate_after: 100,
            ..BackoffPolicy::default()
        };
        let d: Vec<u64> = (1..=5).map(|f| p.delay(f).as_millis() as u64).collect();
        assert_eq!(d, [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(5_000));
    }

    #[test]
    fn crash_loop_migrates_and_a_stable_run_resets() {
        let mut t = RestartTracker::new(BackoffPolicy {
            migrate_after: 3,
            ..BackoffPolicy::default()
        });
        t.on_started(0);
        assert_eq!(
            t.on_exit(100),
            RestartDecision::RestartAfter(Duration::from_secs(1))
        );
        t.on_started(1_100);
        assert_eq!(
            t.on_exit(1_200),
            RestartDecision::RestartAfter(Duration::from_secs(2))
        );
        // Runs for over a minute: stable, so the next crash starts over.
        t.on_started(3_200);
        t.on_running(70_000);
        assert_eq!(t.failures(), 0);
        assert_eq!(
            t.on_exit(70_100),
            RestartDecision::RestartAfter(Duration::from_secs(1))
        );
        t.on_started(71_100);
        t.on_exit(71_200);
        t.on_started(73_200);
        assert_eq!(t.on_exit(73_300), RestartDecision::Migrate { failures: 3 });
    }
}
