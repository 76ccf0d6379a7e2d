//! What a task does: an [`Operation`] of named steps.

use std::time::Duration;

use async_trait::async_trait;
use jdos_types::Task;

use crate::{StepContext, WorkflowError};

/// A kind of task (`deploy`, `scale` …): a fixed list of named steps and the
/// code that runs each.
///
/// # The idempotency contract
///
/// The engine runs every step **at least once**. A worker may die after a
/// step's side effects happened but before the step was recorded as done;
/// the task then resumes (on another worker, or the restarted one) from that
/// step, which runs again. So each step must be written to converge:
/// - read the current state and do only what is missing (create a container
///   only if no record for its identity exists, allocate an IP by identity,
///   publish an assignment only if absent or different);
/// - or key every side effect by something stable across attempts (the task
///   id, the step name, an instance id) and write it with create-if-absent;
/// - or record what was done with [`StepContext::save_data`] before moving
///   on, and consult [`StepContext::data`] first.
///
/// The same holds for [`Operation::compensate`], which may also run more than
/// once and after a partial step. Two runs of one task never overlap: a
/// worker that lost its lease is fenced from writing the task, and the app's
/// lock keeps other tasks of the app out.
#[async_trait]
pub trait Operation: Send + Sync {
    /// The task kind it runs (`deploy`, `scale` …).
    fn kind(&self) -> &'static str;

    /// The steps of a task, fixed when it is submitted (from its params).
    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError>;

    /// Runs one step. [`StepOutcome::Done`] moves on, [`StepOutcome::Wait`]
    /// runs the step again later (not an attempt), [`StepError::Retry`]
    /// counts an attempt and backs off, [`StepError::Fatal`] fails the task.
    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError>;

    /// Undoes what the task did so far after it failed at `failed_step` or was
    /// cancelled there (so that a failed pre-start hook leaves nothing
    /// half-created). [`StepError::Retry`] is retried like a step.
    async fn compensate(&self, ctx: &mut StepContext, failed_step: &str) -> Result<(), StepError> {
        let _ = (ctx, failed_step);
        Ok(())
    }
}

/// A step's successful outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step is done; the message goes into its timeline.
    Done(String),
    /// The step is done and changed nothing anywhere (no hook to call, no
    /// container to remove): its transition is not written on its own but
    /// with the task's next write, event included. If the worker stops
    /// before that write, the step simply runs again.
    Nothing(String),
    /// Not there yet (e.g. containers not running): run the step again after
    /// `after`. Not counted as an attempt; the message is shown meanwhile.
    Wait {
        /// Delay before the next run.
        after: Duration,
        /// What it is waiting for.
        message: String,
    },
}

impl StepOutcome {
    /// `Done` with a message.
    pub fn done(message: impl Into<String>) -> Self {
        StepOutcome::Done(message.into())
    }

    /// `Nothing` with a message: done, having changed nothing.
    pub fn nothing(message: impl Into<String>) -> Self {
        StepOutcome::Nothing(message.into())
    }

    /// `Wait` with a delay and a message.
    pub fn wait(after: Duration, message: impl Into<String>) -> Self {
        StepOutcome::Wait {
            after,
            message: message.into(),
        }
    }
}

/// A step's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Transient: counted as an attempt, retried after back-off until
    /// [`crate::EngineConfig::max_attempts`].
    #[error("{0}")]
    Retry(String),
    /// Permanent: the task fails now.
    #[error("{0}")]
    Fatal(String),
}

impl StepError {
    /// A retryable error.
    pub fn retry(message: impl std::fmt::Display) -> Self {
        StepError::Retry(message.to_string())
    }

    /// A permanent error.
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        StepError::Fatal(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            StepError::Retry(m) | StepError::Fatal(m) => m,
        }
    }
}

impl From<jdos_store::StoreError> for StepError {
    /// Store failures are transient from a step's point of view.
    fn from(e: jdos_store::StoreError) -> Self {
        StepError::Retry(e.to_string())
    }
}
