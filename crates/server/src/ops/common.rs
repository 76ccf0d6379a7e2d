//! Pieces the operations share: reading groups, mapping platform errors,
//! waiting on container phases, running hooks once per container.

use std::collections::BTreeSet;
use std::time::Duration;

use jdos_store::{json, Compare, TxnOp};
use jdos_types::container::DesiredState;
use jdos_types::ValidationErrors;
use jdos_types::{keys, Container, ContainerPhase, Group, GroupKey, InstanceId};
use jdos_workflow::{StepContext, StepError, StepOutcome, Task, WorkflowError};
use serde::de::DeserializeOwned;

use crate::events::{EventDraft, Mutation};
use crate::hooks::{HookExecutor, HookOrigin, HookPhase};
use crate::kv::{self, Versioned};
use crate::platform::PlatformError;
use crate::state::AppState;

/// How often a waiting step looks again.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// A platform failure as a step failure: what a retry cannot fix is fatal.
/// Decodes and validates a task's params when it is submitted, so bad input
/// is refused (field `params`) before anything is written.
pub(super) fn checked_params<T: DeserializeOwned>(
    kind: &str,
    task: &Task,
    validate: impl FnOnce(&T) -> Result<(), ValidationErrors>,
) -> Result<T, WorkflowError> {
    let invalid = |e: &dyn std::fmt::Display| WorkflowError::Invalid {
        field: "params".into(),
        message: format!("{kind}: {e}"),
    };
    let p: T = serde_json::from_value(task.params.clone()).map_err(|e| invalid(&e))?;
    validate(&p).map_err(|e| invalid(&e))?;
    Ok(p)
}

pub(super) fn perr(e: PlatformError) -> StepError {
    match &e {
        // No host fits: retrying at once will not make room; say why now.
        PlatformError::Unplaced { .. } => StepError::fatal(e),
        _ if e.is_retryable() => StepError::retry(e),
        _ => StepError::fatal(e),
    }
}

/// The group record, `None` when it does not exist.
pub(super) async fn group(
    st: &AppState,
    key: &GroupKey,
) -> Result<Option<Versioned<Group>>, StepError> {
    Ok(kv::get_json::<Group>(st.store(), &keys::group(key)).await?)
}

/// The group record; a missing group is fatal.
pub(super) async fn require_group(
    st: &AppState,
    key: &GroupKey,
) -> Result<Versioned<Group>, StepError> {
    group(st, key)
        .await?
        .ok_or_else(|| StepError::fatal(format!("group {key} does not exist (deleted meanwhile?)")))
}

/// Writes `group` if its record is still at `rev`, with an event; `false`
/// when someone changed it meanwhile (re-read and re-plan).
pub(super) async fn write_group(
    st: &AppState,
    task: &Task,
    group: &Group,
    rev: u64,
    action: &str,
    message: String,
) -> Result<bool, StepError> {
    let key = keys::group(&group.key());
    let m = Mutation {
        compares: vec![Compare::mod_revision(key.as_str(), rev)],
        ops: vec![TxnOp::put(
            key.as_str(),
            json::encode(group).map_err(StepError::fatal)?,
        )],
        event: event(task, action, "group", &group.key().to_string()).message(message),
    };
    match st.events().commit(st.store(), m, st.now_ms()).await? {
        crate::events::Commit::Done { .. } => Ok(true),
        crate::events::Commit::Stale => Ok(false),
    }
}

/// An event draft on behalf of a task.
pub(super) fn event(task: &Task, action: &str, kind: &str, object: &str) -> EventDraft {
    let mut d = EventDraft::new(&task.actor, action, kind, object);
    if task.app != super::BATCH_APP {
        d.app = Some(task.app.clone());
    }
    d.department = task.department.clone();
    d
}

/// Who runs hooks for a task.
pub(super) fn origin(task: &Task) -> HookOrigin {
    HookOrigin {
        actor: task.actor.clone(),
        task: Some(task.id.clone()),
        department: task.department.clone(),
    }
}

/// The group's live containers (desired ≠ deleted), by index.
pub(super) async fn live(st: &AppState, key: &GroupKey) -> Result<Vec<Container>, StepError> {
    Ok(st
        .platform()
        .containers(key)
        .await
        .map_err(perr)?
        .into_iter()
        .filter(|c| c.desired != DesiredState::Deleted)
        .collect())
}

/// The records of `ids` that still exist.
pub(super) async fn records(
    st: &AppState,
    ids: &[InstanceId],
) -> Result<Vec<Container>, StepError> {
    Ok(st
        .platform()
        .records(ids)
        .await
        .map_err(perr)?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// True when the container's host holds a work order for it.
pub(super) async fn published(st: &AppState, c: &Container) -> Result<bool, StepError> {
    let Some(host) = &c.host else {
        return Ok(false);
    };
    Ok(st
        .store()
        .get(&keys::assignment(host, &c.id))
        .await?
        .is_some())
}

/// Wall-clock ms (the engine stamps steps with it).
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Ms the current step has been running (across waits and restarts).
pub(super) fn step_elapsed_ms(ctx: &StepContext) -> u64 {
    let started = ctx
        .task()
        .steps
        .iter()
        .find(|s| s.name == ctx.step())
        .map_or(0, |s| s.started_at_ms);
    wall_ms().saturating_sub(started)
}

/// One line per container that is not where it should be: `web/4 on h3
/// is failed: exit 1`; at most five, then a count.
pub(super) fn describe(cs: &[&Container]) -> String {
    let mut parts: Vec<String> = cs
        .iter()
        .take(5)
        .map(|c| {
            let host = c.host.as_deref().unwrap_or("no host");
            if c.message.is_empty() {
                format!("{} on {host} is {}", c.id, c.phase.as_str())
            } else {
                format!("{} on {host} is {}: {}", c.id, c.phase.as_str(), c.message)
            }
        })
        .collect();
    if cs.len() > 5 {
        parts.push(format!("and {} more", cs.len() - 5));
    }
    parts.join("; ")
}

/// Checks whether every container of `ids` satisfies `ready`; `Wait` while
/// not (with progress), fatal after `timeout_ms` of this step naming who is
/// not there. A container whose record disappeared fails the step (someone
/// deleted it under the task).
pub(super) async fn wait_until(
    ctx: &mut StepContext,
    st: &AppState,
    ids: &[InstanceId],
    timeout_ms: u64,
    what: &str,
    ready: impl Fn(&Container) -> bool,
) -> Result<StepOutcome, StepError> {
    if ids.is_empty() {
        return Ok(StepOutcome::done(format!(
            "no container to wait for ({what})"
        )));
    }
    let recs = records(st, ids).await?;
    if recs.len() < ids.len() {
        let have: BTreeSet<&InstanceId> = recs.iter().map(|c| &c.id).collect();
        let gone: Vec<String> = ids
            .iter()
            .filter(|i| !have.contains(i))
            .take(5)
            .map(ToString::to_string)
            .collect();
        return Err(StepError::fatal(format!(
            "{} container(s) were deleted while waiting for them to be {what}: {}",
            ids.len() - recs.len(),
            gone.join(", ")
        )));
    }
    let pending: Vec<&Container> = recs.iter().filter(|c| !ready(c)).collect();
    let done = (ids.len() - pending.len()) as u64;
    ctx.set_progress(done, ids.len() as u64, "containers").await;
    if pending.is_empty() {
        return Ok(StepOutcome::done(format!(
            "{} container(s) {what}",
            ids.len()
        )));
    }
    let elapsed = step_elapsed_ms(ctx);
    if elapsed >= timeout_ms {
        return Err(StepError::fatal(format!(
            "{} of {} container(s) not {what} after {} s: {}",
            pending.len(),
            ids.len(),
            elapsed / 1000,
            describe(&pending)
        )));
    }
    Ok(StepOutcome::wait(
        POLL,
        format!("{done}/{} {what}", ids.len()),
    ))
}

/// Running (healthy when it has a health check: the agent reports
/// `unhealthy` otherwise).
pub(super) fn is_running(c: &Container) -> bool {
    c.phase == ContainerPhase::Running
}

/// Runs `phase` hooks for the containers of `targets` not in `done`,
/// adding each success to `done` (the caller saves it). Returns how many
/// ran, or the first failure (after recording every success).
pub(super) async fn run_hooks(
    hooks: &HookExecutor,
    st: &AppState,
    task: &Task,
    group: &Group,
    phase: HookPhase,
    targets: &[Container],
    done: &mut Vec<InstanceId>,
) -> Result<usize, StepError> {
    if phase.of(&group.template.hooks).is_empty() {
        return Ok(0);
    }
    let todo: Vec<Container> = targets
        .iter()
        .filter(|c| !done.contains(&c.id))
        .cloned()
        .collect();
    let results = hooks
        .run_many(st, &group.template.hooks, phase, &todo, &origin(task))
        .await;
    let mut first_err = None;
    let mut failed = 0;
    for (c, r) in todo.iter().zip(results) {
        match r {
            Ok(()) => done.push(c.id.clone()),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(todo.len()),
        Some(e) => Err(StepError::fatal(if failed > 1 {
            format!("{e} (and {} more container(s) failed)", failed - 1)
        } else {
            e.to_string()
        })),
    }
}
