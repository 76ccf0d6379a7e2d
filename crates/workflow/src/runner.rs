//! One task run on this worker: claim it (take the app lock and mark it
//! running in one transaction), run its unfinished steps, compensate on
//! failure or cancel, and write its end, each transition before the next.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use jdos_store::{json, Compare, OpResponse, Revision, StoreError, Txn, TxnOp};
use jdos_types::{keys, EventResult, Task, TaskState};
use tracing::Instrument;

use crate::context::{Flag, PersistError, StepContext};
use crate::mirror::WatchOn;
use crate::{
    actions, app_lock_key, queue_key, Engine, LockInfo, Operation, PendingEvent, StepError,
    StepOutcome,
};

/// How a run ended, for the dispatcher.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// The task reached a final state (or was found finished).
    Finished,
    /// Not claimed: the app is locked, or the queue changed; do not try the
    /// app again before the named watch has delivered `until`.
    Blocked { until: Revision, on: WatchOn },
    /// Dropped without finishing: fenced by another worker, or shutdown.
    Released,
}

/// The run cannot go on here (fenced or shutting down); the task stays in
/// the store for whoever claims it next.
struct Stop;

/// Claims and runs one task.
pub(crate) async fn run_task(
    engine: Arc<Engine>,
    id: String,
    app: String,
    cancel: Arc<Flag>,
) -> RunEnd {
    let span = tracing::info_span!("task", task = %id, app = %app);
    async move {
        let mut ctx = match claim(&engine, &id, &app, cancel).await {
            Ok(ctx) => ctx,
            Err(end) => return end,
        };
        match drive(&engine, &mut ctx).await {
            Ok(end) => end,
            Err(Stop) => {
                tracing::info!(
                    fenced = ctx.fenced,
                    "task left unfinished on this worker; it resumes wherever it is claimed next"
                );
                RunEnd::Released
            }
        }
    }
    .instrument(span)
    .await
}

async fn claim(
    engine: &Engine,
    id: &str,
    app: &str,
    cancel: Arc<Flag>,
) -> Result<StepContext, RunEnd> {
    let mut delay = Duration::from_millis(50);
    loop {
        if engine.shutdown.is_set() {
            return Err(RunEnd::Released);
        }
        match try_claim(engine, id, app, &cancel).await {
            Ok(Some(Ok(ctx))) => return Ok(ctx),
            Ok(Some(Err(end))) => return Err(end),
            // The task changed between the read and the claim: read again.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the task; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = engine.shutdown.wait() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

type ClaimResult = Result<Option<Result<StepContext, RunEnd>>, StoreError>;

async fn try_claim(engine: &Engine, id: &str, app: &str, cancel: &Arc<Flag>) -> ClaimResult {
    let store = &engine.store;
    let task_key = keys::task(id);
    let lock_key = app_lock_key(app);
    let Some(kv) = store.get(&task_key).await? else {
        // A queue entry without its task (removed by hand): drop the entry.
        let resp = store
            .txn(
                Txn::new()
                    .when(Compare::absent(&task_key))
                    .and_then(TxnOp::delete(queue_key(id))),
            )
            .await?;
        if !resp.succeeded {
            return Ok(None);
        }
        tracing::warn!("dropped a queue entry whose task does not exist");
        return Ok(Some(Err(blocked_on_queue(
            &resp.responses,
            resp.revision,
            0,
        ))));
    };
    let mut task: Task = json::decode(&kv)?;
    if task.state.is_terminal() {
        // Finished before our queue watch told us: its final write deleted
        // the entry at the task's revision (or we drop a stray entry now).
        let resp = store
            .txn(
                Txn::new()
                    .when(Compare::mod_revision(&task_key, kv.mod_revision))
                    .and_then(TxnOp::delete(queue_key(id))),
            )
            .await?;
        if !resp.succeeded {
            return Ok(None);
        }
        return Ok(Some(Err(blocked_on_queue(
            &resp.responses,
            resp.revision,
            kv.mod_revision,
        ))));
    }
    let now = crate::now_ms();
    let previous = task
        .worker
        .clone()
        .filter(|_| task.state == TaskState::Running);
    task.state = TaskState::Running;
    task.worker = Some(engine.worker_id.to_string());
    task.updated_at_ms = now;
    // A resumed step runs at once: a wait is a poll and a back-off was for
    // the previous run; both are safe to cut short.
    task.not_before_ms = 0;
    if let Some(s) = task
        .steps
        .iter_mut()
        .find(|s| s.state != TaskState::Succeeded)
    {
        if s.state == TaskState::Pending {
            s.state = TaskState::Running;
            s.started_at_ms = now;
        }
    }
    let lock = LockInfo {
        worker: engine.worker_id.to_string(),
        task: id.to_string(),
    };
    let resp = store
        .txn(
            Txn::new()
                .when(Compare::absent(&lock_key))
                .when(Compare::mod_revision(&task_key, kv.mod_revision))
                .and_then(TxnOp::Put {
                    key: lock_key.clone(),
                    value: json::encode(&lock)?,
                    lease: Some(engine.lease.load(Ordering::SeqCst)),
                })
                .and_then(TxnOp::put(&task_key, json::encode(&task)?))
                .or_else(TxnOp::Get {
                    key: lock_key.clone(),
                }),
        )
        .await?;
    if !resp.succeeded {
        return Ok(match resp.responses.as_slice() {
            [OpResponse::Get { kv: Some(l) }] => Some(Err(RunEnd::Blocked {
                until: l.mod_revision,
                on: WatchOn::Locks,
            })),
            _ => None,
        });
    }
    match &previous {
        Some(w) => tracing::info!(previous_worker = %w, "resuming task"),
        None => tracing::debug!("task claimed"),
    }
    if task.cancel_requested {
        cancel.set();
    }
    Ok(Some(Ok(StepContext {
        task,
        store: engine.store.clone(),
        task_rev: resp.revision,
        lock_key,
        lock_rev: resp.revision,
        fenced: false,
        cancel: cancel.clone(),
        step: String::new(),
        attempt: 0,
        worker_id: engine.worker_id.clone(),
        last_progress_ms: 0,
        pending: Vec::new(),
        events: engine.events.clone(),
    })))
}

/// Blocked until the queue watch has seen the entry's delete: ours if it
/// deleted something, else the earlier one at `deleted_at`.
fn blocked_on_queue(responses: &[OpResponse], rev: Revision, deleted_at: Revision) -> RunEnd {
    let ours = matches!(responses, [OpResponse::Delete { deleted }] if *deleted > 0);
    RunEnd::Blocked {
        until: if ours { rev } else { deleted_at },
        on: WatchOn::Queue,
    }
}

/// Runs the task's unfinished steps to its end.
async fn drive(engine: &Engine, ctx: &mut StepContext) -> Result<RunEnd, Stop> {
    let Some(op) = engine.ops.get(ctx.task.kind.as_str()).cloned() else {
        ctx.task.error = format!(
            "no operation of kind {:?} is registered on worker {}",
            ctx.task.kind, engine.worker_id
        );
        return finish(engine, ctx, TaskState::Failed).await;
    };
    let cfg = &engine.config;
    loop {
        if engine.shutdown.is_set() {
            return Err(Stop);
        }
        let Some(idx) = ctx
            .task
            .steps
            .iter()
            .position(|s| s.state != TaskState::Succeeded)
        else {
            return finish(engine, ctx, TaskState::Succeeded).await;
        };
        let name = ctx.task.steps[idx].name.clone();
        match ctx.task.steps[idx].state {
            // Failed or cancelled there: the compensation is due (again,
            // if a crash interrupted it).
            TaskState::Failed => {
                return compensate(engine, op.as_ref(), ctx, idx, TaskState::Failed).await
            }
            TaskState::Cancelled => {
                return compensate(engine, op.as_ref(), ctx, idx, TaskState::Cancelled).await
            }
            _ => {}
        }
        if ctx.cancel.is_set() || ctx.task.cancel_requested {
            ctx.task.cancel_requested = true;
            let reason = format!("cancelled at step {name}");
            end_step(ctx, idx, TaskState::Cancelled, reason.clone());
            save(engine, ctx, Vec::new()).await?;
            tracing::info!(step = %name, "task cancelled; compensating");
            continue;
        }
        let now = crate::now_ms();
        if ctx.task.not_before_ms > now {
            pause(
                engine,
                &ctx.cancel.clone(),
                Duration::from_millis(ctx.task.not_before_ms - now),
            )
            .await;
            continue;
        }
        if ctx.task.steps[idx].state != TaskState::Running {
            let s = &mut ctx.task.steps[idx];
            s.state = TaskState::Running;
            s.started_at_ms = now;
            save(engine, ctx, Vec::new()).await?;
        }
        let attempts = ctx.task.steps[idx].attempts;
        ctx.step = name.clone();
        ctx.attempt = attempts + 1;
        let span = tracing::info_span!("step", step = %name, attempt = attempts + 1);
        let result = AssertUnwindSafe(op.run_step(ctx, &name))
            .catch_unwind()
            .instrument(span)
            .await
            .unwrap_or_else(|p| {
                Err(StepError::Retry(format!(
                    "step panicked: {}",
                    panic_text(&p)
                )))
            });
        if ctx.fenced {
            return Err(Stop);
        }
        let now = crate::now_ms();
        let changed = !matches!(result, Ok(StepOutcome::Nothing(_)));
        match result {
            Ok(StepOutcome::Done(message) | StepOutcome::Nothing(message)) => {
                let s = &mut ctx.task.steps[idx];
                s.attempts += 1;
                s.state = TaskState::Succeeded;
                s.finished_at_ms = now;
                s.message = message.clone();
                ctx.task.progress = None;
                ctx.task.not_before_ms = 0;
                let Some(next) = ctx.task.steps.get_mut(idx + 1) else {
                    tracing::debug!(step = %name, "last step done");
                    return finish(engine, ctx, TaskState::Succeeded).await;
                };
                next.state = TaskState::Running;
                next.started_at_ms = now;
                let msg = step_message(&name, &message);
                if changed {
                    let event = (actions::STEP, EventResult::Success, msg.as_str());
                    save_with(engine, ctx, Vec::new(), Some(event)).await?;
                    tracing::debug!(step = %name, "step done");
                } else {
                    // Nothing to make durable: the transition and its event
                    // go with the next write (a crash before it re-runs the
                    // step, which changes nothing either).
                    ctx.pending.push(PendingEvent {
                        action: actions::STEP,
                        result: EventResult::Success,
                        message: msg,
                    });
                    tracing::debug!(step = %name, "step done, nothing changed");
                }
            }
            Ok(StepOutcome::Wait { after, message }) => {
                ctx.task.not_before_ms = now + after.as_millis() as u64;
                // Only a new message is worth a write; the re-run needs none.
                if ctx.task.steps[idx].message != message {
                    ctx.task.steps[idx].message = message;
                    save(engine, ctx, Vec::new()).await?;
                }
            }
            Err(StepError::Retry(message)) => {
                let s = &mut ctx.task.steps[idx];
                s.attempts += 1;
                s.message = message.clone();
                let attempts = s.attempts;
                if attempts >= cfg.max_attempts {
                    let reason = format!("step {name} failed after {attempts} attempts: {message}");
                    fail_step(engine, ctx, idx, reason).await?;
                    continue;
                }
                let backoff = cfg.backoff(attempts);
                ctx.task.not_before_ms = now + backoff.as_millis() as u64;
                let msg = format!(
                    "step {name} attempt {attempts} failed (retrying in {backoff:?}): {message}"
                );
                let event = (actions::STEP, EventResult::Failure, msg.as_str());
                save_with(engine, ctx, Vec::new(), Some(event)).await?;
                tracing::warn!(step = %name, attempts, ?backoff, error = %message, "step failed; retrying");
            }
            Err(StepError::Fatal(message)) => {
                ctx.task.steps[idx].attempts += 1;
                fail_step(engine, ctx, idx, format!("step {name} failed: {message}")).await?;
            }
        }
    }
}

fn step_message(name: &str, message: &str) -> String {
    if message.is_empty() {
        format!("step {name} done")
    } else {
        format!("step {name} done: {message}")
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn end_step(ctx: &mut StepContext, idx: usize, state: TaskState, reason: String) {
    let s = &mut ctx.task.steps[idx];
    s.state = state;
    s.finished_at_ms = crate::now_ms();
    s.message = reason.clone();
    ctx.task.error = reason;
    ctx.task.progress = None;
    ctx.task.not_before_ms = 0;
}

/// Marks a step failed (the marker that makes a resumed run compensate).
async fn fail_step(
    engine: &Engine,
    ctx: &mut StepContext,
    idx: usize,
    reason: String,
) -> Result<(), Stop> {
    tracing::warn!(step = %ctx.task.steps[idx].name, error = %reason, "step failed; compensating");
    end_step(ctx, idx, TaskState::Failed, reason.clone());
    let event = (actions::STEP, EventResult::Failure, reason.as_str());
    save_with(engine, ctx, Vec::new(), Some(event)).await?;
    Ok(())
}

/// Runs the operation's compensation for the step the task stopped at
/// (retried like a step), then ends the task.
async fn compensate(
    engine: &Engine,
    op: &dyn Operation,
    ctx: &mut StepContext,
    idx: usize,
    end: TaskState,
) -> Result<RunEnd, Stop> {
    let name = ctx.task.steps[idx].name.clone();
    let max = engine.config.max_attempts.max(1);
    ctx.step = name.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        ctx.attempt = attempt;
        let span = tracing::info_span!("compensate", step = %name, attempt);
        let r = AssertUnwindSafe(op.compensate(ctx, &name))
            .catch_unwind()
            .instrument(span)
            .await
            .unwrap_or_else(|p| {
                Err(StepError::Retry(format!(
                    "compensation panicked: {}",
                    panic_text(&p)
                )))
            });
        if ctx.fenced {
            return Err(Stop);
        }
        match r {
            Ok(()) => break,
            Err(StepError::Retry(m)) if attempt < max => {
                let backoff = engine.config.backoff(attempt);
                tracing::warn!(step = %name, attempt, error = %m, "compensation failed; retrying");
                // A cancel must not cut the compensation's back-off short.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = engine.shutdown.wait() => return Err(Stop),
                }
            }
            Err(e) => {
                tracing::error!(step = %name, error = %e, "compensation failed; giving up");
                ctx.task.error = format!("{}; compensation failed: {e}", ctx.task.error);
                break;
            }
        }
    }
    finish(engine, ctx, end).await
}

/// Writes the task's end, deleting its queue entry and the app lock in the
/// same transaction, then records the events.
async fn finish(engine: &Engine, ctx: &mut StepContext, state: TaskState) -> Result<RunEnd, Stop> {
    ctx.task.state = state;
    ctx.task.worker = None;
    ctx.task.progress = None;
    ctx.task.not_before_ms = 0;
    let extra = vec![
        TxnOp::delete(queue_key(&ctx.task.id)),
        TxnOp::delete(ctx.lock_key.clone()),
    ];
    // The last step's event goes with the write; the task's end follows.
    let last_step = match state {
        TaskState::Succeeded => ctx
            .task
            .steps
            .last()
            .map(|last| step_message(&last.name, &last.message)),
        _ => None,
    };
    let event = last_step
        .as_deref()
        .map(|m| (actions::STEP, EventResult::Success, m));
    save_with(engine, ctx, extra, event).await?;
    let task = &ctx.task;
    let secs = task.updated_at_ms.saturating_sub(task.created_at_ms) as f64 / 1000.0;
    let (action, result, message) = match state {
        TaskState::Succeeded => (
            actions::SUCCEEDED,
            EventResult::Success,
            format!("{} {} succeeded in {secs:.1}s", task.kind, task.object),
        ),
        TaskState::Cancelled => (actions::CANCELLED, EventResult::Success, task.error.clone()),
        _ => (actions::FAILED, EventResult::Failure, task.error.clone()),
    };
    tracing::info!(state = ?state, error = %task.error, "task finished");
    engine.events.record(task, action, result, message).await;
    Ok(RunEnd::Finished)
}

/// Writes the task, retrying store failures with back-off; stops when
/// fenced or shutting down.
async fn save(engine: &Engine, ctx: &mut StepContext, extra: Vec<TxnOp>) -> Result<(), Stop> {
    save_with(engine, ctx, extra, None).await
}

/// [`save`] with the transition's event (action, result, message) in the
/// same transaction.
async fn save_with(
    engine: &Engine,
    ctx: &mut StepContext,
    extra: Vec<TxnOp>,
    event: Option<(&str, EventResult, &str)>,
) -> Result<(), Stop> {
    let mut delay = Duration::from_millis(100);
    loop {
        match ctx.persist_with(extra.clone(), event).await {
            Ok(()) => return Ok(()),
            Err(PersistError::Fenced) => return Err(Stop),
            Err(PersistError::Store(e)) => {
                tracing::warn!(error = %e, "cannot write the task; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = engine.shutdown.wait() => return Err(Stop),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Sleeps, waking early on cancel or shutdown.
async fn pause(engine: &Engine, cancel: &Flag, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = cancel.wait() => {}
        _ = engine.shutdown.wait() => {}
    }
}
