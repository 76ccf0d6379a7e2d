//! The application operations as workflow tasks: `deploy`, `scale`,
//! `snapshot_scale`, `batch_scale`, `resize`, `migrate`, `rolling`, `delete_group`,
//! `delete_app`, each an [`Operation`] of named, convergent steps over the
//! platform layer ([`crate::platform::Platform`]) and the hooks executor.
//!
//! Every step reads the current state and does only what is missing, so a
//! step re-run after a crash (the engine runs steps at least once) changes
//! nothing twice; what a step must remember (which containers this task
//! placed, whose hooks already ran, which victims it chose) goes into the
//! task's scratch data before the side effect it guards is repeated.
//! Waiting steps return [`StepOutcome::Wait`] (the worker slot is freed
//! between polls) and fail after their timeout naming the containers that
//! did not get there and why. A step that found nothing to do returns
//! `StepOutcome::Nothing`: its end rides on the task's next write.
//!
//! The operations hold a [`WeakState`]: the state holds the engine, the
//! engine holds the operations, so a strong handle would be a cycle that
//! keeps a dropped server alive.

mod batch;
mod common;
mod delete;
mod migrate;
pub mod params;
mod resize;
mod rolling;
mod scale;
mod snapshot;

use std::sync::Arc;

use async_trait::async_trait;
use jdos_store::{Compare, Revision, Store, StoreError, TxnOp};
use jdos_workflow::{Engine, EngineConfig, EventResult, Task, TaskEvents, TransitionEvent};

use crate::events::{Commit, EventDraft, Mutation};
use crate::hooks::HookExecutor;
use crate::state::{AppState, WeakState};

pub use params::{
    BatchScaleParams, DeleteAppParams, DeleteGroupParams, DeployParams, MigrateParams,
    ReplicaChange, ResizeParams, RollingParams, ScaleParams, Selector, SnapshotScaleParams,
};

/// Kind of the deploy task.
pub const DEPLOY: &str = "deploy";
/// Kind of the scale task.
pub const SCALE: &str = "scale";
/// Kind of the snapshot scale-out task.
pub const SNAPSHOT_SCALE: &str = "snapshot_scale";
/// Kind of the batch scale task.
pub const BATCH_SCALE: &str = "batch_scale";
/// Kind of the resize task.
pub const RESIZE: &str = "resize";
/// Kind of the migrate task.
pub const MIGRATE: &str = "migrate";
/// Kind of the rolling restart / update task.
pub const ROLLING: &str = "rolling";
/// Kind of the group deletion task.
pub const DELETE_GROUP: &str = "delete_group";
/// Kind of the app deletion task.
pub const DELETE_APP: &str = "delete_app";
/// The pseudo-app batch tasks run under: not a valid app name, so its
/// mutex is never an app's; batches run one at a time.
pub const BATCH_APP: &str = "_batch";

/// What every operation shares: the server state (weakly) and the hooks
/// executor.
#[derive(Debug, Clone)]
pub struct OpsContext {
    st: WeakState,
    hooks: HookExecutor,
}

impl OpsContext {
    /// A context over `st` with the default hook back-off.
    pub fn new(st: &AppState) -> Self {
        Self::with_hooks(st, HookExecutor::default())
    }

    /// A context with a given hooks executor (tests shorten its back-off).
    pub fn with_hooks(st: &AppState, hooks: HookExecutor) -> Self {
        OpsContext {
            st: st.downgrade(),
            hooks,
        }
    }

    /// The state, while the server lives.
    fn state(&self) -> Result<AppState, jdos_workflow::StepError> {
        self.st.upgrade().ok_or_else(|| {
            jdos_workflow::StepError::retry("the server is shutting down: the task resumes later")
        })
    }
}

/// Registers every operation on `engine`.
pub fn register(engine: &mut Engine, cx: &OpsContext) {
    let cx = Arc::new(cx.clone());
    engine.register(Arc::new(scale::ScaleOp::deploy(cx.clone())));
    engine.register(Arc::new(scale::ScaleOp::scale(cx.clone())));
    engine.register(Arc::new(batch::BatchScaleOp::new(cx.clone())));
    engine.register(Arc::new(snapshot::SnapshotScaleOp::new(cx.clone())));
    engine.register(Arc::new(resize::ResizeOp::new(cx.clone())));
    engine.register(Arc::new(migrate::MigrateOp::new(cx.clone())));
    engine.register(Arc::new(rolling::RollingOp::new(cx.clone())));
    engine.register(Arc::new(delete::DeleteGroupOp::new(cx.clone())));
    engine.register(Arc::new(delete::DeleteAppOp::new(cx)));
}

/// Builds the server's engine with every operation registered, installs it
/// on `st` ([`AppState::engine`]) and returns it, not started
/// ([`Engine::start`] it with the server's shutdown signal).
pub fn engine(st: &AppState, config: EngineConfig, cx: &OpsContext) -> Arc<Engine> {
    let mut engine = Engine::new(
        st.store_arc(),
        config,
        Arc::new(ServerTaskEvents(st.downgrade())),
    );
    register(&mut engine, cx);
    let engine = Arc::new(engine);
    if !st.set_engine(engine.clone()) {
        tracing::warn!("an engine was installed already; the new one is not the state's");
    }
    engine
}

/// Records task transitions as events (`task.submit`, `task.step` …), with
/// the task's actor, app and department.
#[derive(Debug, Clone)]
pub struct ServerTaskEvents(WeakState);

impl ServerTaskEvents {
    /// Events into `st`'s recorder.
    pub fn new(st: &AppState) -> Self {
        ServerTaskEvents(st.downgrade())
    }
}

/// The event of a transition of `task`.
fn task_draft(task: &Task, action: &str, result: EventResult, message: &str) -> EventDraft {
    let mut d = EventDraft::new(&task.actor, action, "task", &task.id);
    if task.app != BATCH_APP {
        d.app = Some(task.app.clone());
    }
    d.department = task.department.clone();
    let text = if task.object.is_empty() {
        format!("{}: {message}", task.kind)
    } else {
        format!("{} {}: {message}", task.kind, task.object)
    };
    match result {
        EventResult::Success => d.message(text),
        EventResult::Failure => d.failed(text),
    }
}

/// The `task.submit` events of `tasks`, for a caller that commits them with
/// its own write ([`crate::events::EventRecorder::commit_with`]) instead of
/// after it ([`jdos_workflow::Engine::record_submitted`]).
pub fn submitted_events(tasks: &[Task]) -> Vec<EventDraft> {
    tasks
        .iter()
        .map(|t| {
            task_draft(
                t,
                jdos_workflow::actions::SUBMIT,
                EventResult::Success,
                &jdos_workflow::submitted_message(t),
            )
        })
        .collect()
}

#[async_trait]
impl TaskEvents for ServerTaskEvents {
    async fn record(&self, task: &Task, action: &str, result: EventResult, message: String) {
        let Some(st) = self.0.upgrade() else { return };
        let d = task_draft(task, action, result, &message);
        if let Err(e) = st.events().record(st.store(), d, st.now_ms()).await {
            tracing::warn!(task = %task.id, error = %e, "cannot record a task event");
        }
    }

    /// The task write and its event in one of the recorder's combined
    /// transactions: concurrent steps of many tasks share one commit.
    async fn commit(
        &self,
        store: &dyn Store,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        event: TransitionEvent<'_>,
    ) -> Result<Option<Revision>, StoreError> {
        let Some(st) = self.0.upgrade() else {
            return Err(StoreError::Backend("the server is shutting down".into()));
        };
        // Earlier transitions (steps that changed nothing) first, in order.
        let mut drafts: Vec<EventDraft> = event
            .earlier
            .iter()
            .map(|e| task_draft(event.task, e.action, e.result, &e.message))
            .collect();
        drafts.push(task_draft(
            event.task,
            event.action,
            event.result,
            event.message,
        ));
        let also = drafts.split_off(1);
        let m = Mutation {
            compares,
            ops,
            event: drafts.remove(0),
        };
        Ok(
            match st.events().commit_with(store, m, also, st.now_ms()).await? {
                Commit::Done { revision, .. } => Some(revision),
                Commit::Stale => None,
            },
        )
    }
}
