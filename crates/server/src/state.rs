//! Shared state of the API server, handed to every handler.

use std::sync::Arc;

use jdos_ipam::Ipam;
use jdos_store::Store;
use jdos_types::{Role, UnixMillis};

use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{Commit, EventDraft, EventRecorder, Mutation};
use crate::metrics::Metrics;

/// A source of "now" in unix milliseconds. Injected so that tests control time.
pub type Clock = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

struct Inner {
    store: Arc<dyn Store>,
    ipam: Arc<Ipam>,
    events: EventRecorder,
    metrics: Metrics,
    clock: Clock,
}

/// The server's state: the store, the event recorder, metrics and a clock.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// How many times a mutation is re-planned when a concurrent writer changed
/// one of the objects it read.
const MAX_REPLANS: usize = 16;

impl AppState {
    /// State over a store, with the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, system_clock())
    }

    /// State over a store with an injected clock.
    pub fn with_clock(store: Arc<dyn Store>, clock: Clock) -> Self {
        AppState {
            inner: Arc::new(Inner {
                ipam: Arc::new(Ipam::new(store.clone())),
                store,
                events: EventRecorder::new(),
                metrics: Metrics::new(),
                clock,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The store, shared.
    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The address allocator: one per server, its index rebuilt from the
    /// store at start-up (see [`crate::start_with_store`]).
    pub fn ipam(&self) -> &Arc<Ipam> {
        &self.inner.ipam
    }

    /// The event recorder.
    pub fn events(&self) -> &EventRecorder {
        &self.inner.events
    }

    /// Request metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Now, in unix ms.
    pub fn now_ms(&self) -> UnixMillis {
        (self.inner.clock)()
    }

    /// Optimistic write loop: `plan` reads what it needs and returns the
    /// mutation (with compares on what it read) plus the value to answer
    /// with; the mutation and its event commit atomically, and the plan is
    /// re-run if a concurrent writer got there first. A plan that finds the
    /// request cannot be done returns the error (404, 409…), nothing written.
    pub async fn mutate<T, F, Fut>(&self, mut plan: F) -> Result<T, HttpError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(Mutation, T), HttpError>>,
    {
        for _ in 0..MAX_REPLANS {
            let (m, out) = plan().await?;
            match self.events().commit(self.store(), m, self.now_ms()).await? {
                Commit::Done { .. } => return Ok(out),
                Commit::Stale => continue,
            }
        }
        Err(HttpError::conflict(
            "the object kept changing under this request: try again",
        ))
    }

    /// Runs a mutating request and, when it fails for a reason worth
    /// auditing (forbidden, not found, conflict, internal), records a
    /// failure event. Bad input (400) is not recorded: it writes nothing at all.
    pub async fn audited<T, Fut>(&self, draft: EventDraft, fut: Fut) -> Result<T, HttpError>
    where
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let result = fut.await;
        if let Err(e) = &result {
            if e.status.as_u16() != 400 && e.status.as_u16() != 401 {
                let draft = draft.failed(format!("{}: {}", e.body.code, e.body.message));
                if let Err(store_err) = self
                    .events()
                    .record(self.store(), draft, self.now_ms())
                    .await
                {
                    tracing::warn!(error = %store_err, "cannot record a failure event");
                }
            }
        }
        result
    }

    /// The event draft for `caller` doing `action` on an object; a developer's
    /// events carry its department so that it can see them. An admin or ops
    /// token may also name a department, but its actions (on hosts, tokens,
    /// networks…) must not show up in that department's developers' trail.
    pub fn draft(&self, caller: &Caller, action: &str, kind: &str, object: &str) -> EventDraft {
        let mut d = EventDraft::new(&caller.name, action, kind, object);
        if caller.role == Role::Developer {
            d.department = caller.department.clone();
        }
        d
    }
}
