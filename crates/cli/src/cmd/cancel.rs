//! `jdos cancel task ID`: a pending task is cancelled at once; a running
//! one stops at its next step boundary, then undoes what it half did.

use jdos_types::{Task, TaskState};

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to cancel.
    #[command(subcommand)]
    pub what: What,
}

/// Objects that can be cancelled.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A workflow task.
    Task {
        /// Task id (`jdos get tasks`).
        id: String,
    },
}

/// Asks the server to cancel the task.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let What::Task { id } = a.what;
    let t = client.cancel_task(&id).await?;
    super::print(g, &t, || render(&t))
}

/// What the cancel did.
pub fn render(t: &Task) -> String {
    let what = format!("task {} ({} {})", t.id, t.kind, t.object);
    match t.state {
        TaskState::Cancelled => format!("{what} cancelled\n"),
        TaskState::Succeeded | TaskState::Failed => format!(
            "{what} had already {}: nothing to cancel\n",
            super::follow::state_name(t.state)
        ),
        TaskState::Pending | TaskState::Running => format!(
            "{what}: cancel requested; it stops at its next step boundary (`jdos describe task {}`)\n",
            t.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::follow::tests::task;

    #[test]
    fn says_what_the_cancel_did() {
        let mut t = task(TaskState::Running, &[]);
        t.cancel_requested = true;
        assert!(render(&t).contains("cancel requested"));
        t.state = TaskState::Cancelled;
        assert!(render(&t).ends_with("cancelled\n"));
        t.state = TaskState::Succeeded;
        assert!(render(&t).contains("already succeeded"));
    }
}
