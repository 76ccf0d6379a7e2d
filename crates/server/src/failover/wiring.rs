//! The controller over the real platform layer and liveness table, started
//! with the server.

use std::sync::Arc;

use async_trait::async_trait;
use jdos_types::{Container, Group, InstanceId, UnixMillis};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Controller, FailoverConfig, HealthTimings, Heartbeats, Mover};
use crate::error::HttpError;
use crate::platform::{Platform, PlatformError};
use crate::state::AppState;

#[async_trait]
impl Mover for Platform {
    async fn relocate(
        &self,
        group: &Group,
        ids: &[InstanceId],
        avoid: &[String],
        reason: &str,
    ) -> Result<Vec<Container>, HttpError> {
        let off = |recs: Vec<Container>| -> Vec<Container> {
            recs.into_iter()
                .filter(|c| c.host.as_ref().is_some_and(|h| !avoid.contains(h)))
                .collect()
        };
        match Platform::relocate(self, group, ids, avoid, reason).await {
            Ok(recs) => Ok(off(recs)),
            // Some fit nowhere; the others moved.
            Err(e @ PlatformError::Unplaced { .. }) => {
                tracing::warn!(group = %group.key(), error = %e, "relocation left containers behind");
                let recs = self.records(ids).await.map_err(HttpError::from)?;
                Ok(off(recs.into_iter().map(|(c, _)| c).collect()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn stop_in_place(&self, ids: &[InstanceId]) -> Result<(), HttpError> {
        Platform::stop_in_place(self, ids)
            .await
            .map_err(HttpError::from)
    }
}

/// The server's in-memory liveness table as the controller reads it.
struct StateHeartbeats(AppState);

impl Heartbeats for StateHeartbeats {
    fn last_heartbeat(&self, host: &str) -> Option<UnixMillis> {
        self.0.liveness().get(host).map(|s| s.last_seen_ms)
    }
}

/// A controller over `st`'s platform and liveness table, judging with the
/// suspect and down intervals `st` runs with ([`AppState::timings`]).
pub fn controller(st: &AppState, mut cfg: FailoverConfig) -> Controller {
    let t = st.timings();
    cfg.timings = HealthTimings {
        suspect_after_ms: t.suspect_after_ms,
        down_after_ms: t.down_after_ms,
    };
    Controller::new(
        st.clone(),
        cfg,
        st.platform().clone(),
        Arc::new(StateHeartbeats(st.clone())),
    )
}

/// Starts the controller; it stops when `stop` turns true. One per server:
/// with several servers on one store it must run under a leader lock in
/// `keys::LOCKS` (see the module docs).
pub fn start(st: &AppState, cfg: FailoverConfig, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(controller(st, cfg).run(stop))
}
