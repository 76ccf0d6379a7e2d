//! Shared state of the API server, handed to every handler.

use std::sync::{Arc, OnceLock, RwLock, Weak};

use jdos_ipam::Ipam;
use jdos_store::Store;
use jdos_types::{Role, UnixMillis};

use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{Commit, EventDraft, EventRecorder, Mutation};
use crate::failover::FailoverShared;
use crate::liveness::{Liveness, Timings};
use crate::metrics::Metrics;
use crate::monitoring::MetricsStore;
use crate::platform::Platform;

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
    events: Arc<EventRecorder>,
    metrics: Metrics,
    failover: Arc<FailoverShared>,
    tsdb: Arc<MetricsStore>,
    clock: Clock,
    platform: Arc<Platform>,
    liveness: Liveness,
    timings: RwLock<Timings>,
    /// SHA-256 of the agents' join token, once configured.
    join_token_sha256: RwLock<Option<String>>,
    /// Set once after construction: the engine's operations hold a
    /// [`WeakState`], so state → engine → operations → state is no cycle.
    engine: OnceLock<Arc<jdos_workflow::Engine>>,
    /// The autoscaling controller, set once at start.
    autoscaler: OnceLock<Arc<crate::autoscale::Controller>>,
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
        let ipam = Arc::new(Ipam::new(store.clone()));
        let events = Arc::new(EventRecorder::new());
        let platform = Arc::new(Platform::new(
            store.clone(),
            ipam.clone(),
            events.clone(),
            clock.clone(),
        ));
        AppState {
            inner: Arc::new(Inner {
                ipam,
                store,
                events,
                metrics: Metrics::new(),
                failover: Arc::default(),
                tsdb: Arc::new(MetricsStore::in_memory()),
                clock,
                platform,
                liveness: Liveness::default(),
                timings: RwLock::new(Timings::default()),
                join_token_sha256: RwLock::new(None),
                engine: OnceLock::new(),
                autoscaler: OnceLock::new(),
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

    /// The platform layer (placement, work orders, relocation, finalize).
    pub fn platform(&self) -> &Arc<Platform> {
        &self.inner.platform
    }

    /// When each host's agent was last heard from (in memory: heartbeats
    /// do not write the store every second).
    pub fn liveness(&self) -> &Liveness {
        &self.inner.liveness
    }

    /// Agent timings in effect.
    pub fn timings(&self) -> Timings {
        *self.inner.timings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the agent timings (from [`crate::ServerConfig::timings`]).
    pub fn set_timings(&self, t: Timings) {
        *self
            .inner
            .timings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Sets the join token agents register with (only its hash is kept).
    pub fn set_join_token(&self, token: &str) {
        *self
            .inner
            .join_token_sha256
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(crate::auth::hash_secret(token));
    }

    /// SHA-256 of the join token, when one is configured.
    pub fn join_token_sha256(&self) -> Option<String> {
        self.inner
            .join_token_sha256
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The workflow engine, once [`AppState::set_engine`] was called (the
    /// server does it at start, see [`crate::ops::engine`]).
    pub fn engine(&self) -> Option<&Arc<jdos_workflow::Engine>> {
        self.inner.engine.get()
    }

    /// The workflow engine, or 503 when this state has none.
    pub fn require_engine(&self) -> Result<&Arc<jdos_workflow::Engine>, HttpError> {
        self.engine().ok_or_else(|| {
            HttpError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the workflow engine is not running on this server",
            )
        })
    }

    /// Installs the workflow engine; `false` when one was installed already.
    pub fn set_engine(&self, engine: Arc<jdos_workflow::Engine>) -> bool {
        self.inner.engine.set(engine).is_ok()
    }

    /// The autoscaling controller, once [`AppState::set_autoscaler`] was
    /// called (the server does it at start).
    pub fn autoscaler(&self) -> Option<&Arc<crate::autoscale::Controller>> {
        self.inner.autoscaler.get()
    }

    /// Installs the autoscaling controller; `false` when one was installed
    /// already.
    pub fn set_autoscaler(&self, c: Arc<crate::autoscale::Controller>) -> bool {
        self.inner.autoscaler.set(c).is_ok()
    }

    /// A handle that does not keep the state alive (for the engine's
    /// operations, which the state itself holds through the engine).
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.inner))
    }

    /// The event recorder.
    pub fn events(&self) -> &EventRecorder {
        &self.inner.events
    }

    /// Request metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What the failover controller shares with the API (counters, the
    /// crash-loop inbox).
    pub fn failover(&self) -> &Arc<FailoverShared> {
        &self.inner.failover
    }

    /// The container and host metrics store (in memory until [`crate::start_with_store`]
    /// opens `<data_dir>/tsdb` for a persistent state store).
    pub fn tsdb(&self) -> &Arc<MetricsStore> {
        &self.inner.tsdb
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

/// A [`AppState`] that does not keep it alive.
#[derive(Clone)]
pub struct WeakState(Weak<Inner>);

impl std::fmt::Debug for WeakState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakState").finish_non_exhaustive()
    }
}

impl WeakState {
    /// The state, while the server still holds it.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(|inner| AppState { inner })
    }
}
