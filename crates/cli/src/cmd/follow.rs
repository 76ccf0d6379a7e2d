//! `--wait`: follows tasks to their end. On a terminal each task gets a
//! progress bar redrawn in place (on stderr, so `-o json` output stays
//! clean); otherwise a plain line is printed whenever a task's step or
//! progress changes. A small hand-written bar: no terminal crate needed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use jdos_types::{Task, TaskState};

use super::GlobalOpts;
use crate::output::OutputFormat;

/// Width of a bar, in cells.
pub const BAR: usize = 30;

/// `[#########.....................]`: `done` of `total` filled.
pub fn bar(done: u64, total: u64) -> String {
    let total = total.max(1);
    let filled = ((done.min(total) as u128 * BAR as u128) / total as u128) as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR - filled))
}

/// Steps finished, of all steps.
fn steps_done(t: &Task) -> usize {
    t.steps
        .iter()
        .filter(|s| s.state == TaskState::Succeeded)
        .count()
}

/// The step a task is at (its first unfinished one), or its last one.
pub fn current_step(t: &Task) -> Option<&jdos_types::task::Step> {
    t.steps
        .iter()
        .find(|s| s.state != TaskState::Succeeded)
        .or(t.steps.last())
}

/// `wait_running 5/11`, `done` when every step succeeded.
pub fn step_label(t: &Task) -> String {
    match t.state {
        TaskState::Succeeded => "done".to_string(),
        _ => match current_step(t) {
            Some(s) => format!(
                "{} {}/{}",
                s.name,
                (steps_done(t) + 1).min(t.steps.len()),
                t.steps.len()
            ),
            None => "-".to_string(),
        },
    }
}

/// `3/5 containers` of the current step's progress, if it reports any.
pub fn progress_label(t: &Task) -> Option<String> {
    t.progress.as_ref().filter(|p| p.total > 0).map(|p| {
        if p.unit.is_empty() {
            format!("{}/{}", p.done, p.total)
        } else {
            format!("{}/{} {}", p.done, p.total, p.unit)
        }
    })
}

/// The bar's fill, in thousandths of the task: the steps done, plus the
/// current step's share of its own progress when it reports one (the long
/// steps do: containers running, containers rolled). Never goes back when
/// a step ends and the next one starts.
fn fill(t: &Task) -> (u64, u64) {
    if t.state == TaskState::Succeeded {
        return (1, 1);
    }
    let steps = t.steps.len().max(1) as u64;
    let mut done = steps_done(t) as u64 * 1000;
    if let Some(p) = t.progress.as_ref().filter(|p| p.total > 0) {
        if !t.state.is_terminal() {
            done += p.done.min(p.total) * 1000 / p.total;
        }
    }
    (done, steps * 1000)
}

/// One line per task:
/// `deploy group web/production/web-lf  [####....]  3/5 containers  wait_running 5/11`.
pub fn progress_line(t: &Task) -> String {
    let (done, total) = fill(t);
    let mut line = format!("{} {}  {}", t.kind, t.object, bar(done, total));
    match t.state {
        TaskState::Pending => line.push_str("  pending"),
        TaskState::Running => {
            if let Some(p) = progress_label(t) {
                line.push_str(&format!("  {p}"));
            }
            line.push_str(&format!("  {}", step_label(t)));
        }
        TaskState::Succeeded => line.push_str("  succeeded"),
        TaskState::Failed | TaskState::Cancelled => {
            line.push_str(&format!("  {}: {}", state_name(t.state), t.error));
        }
    }
    line
}

/// `pending`, `running`, `succeeded`, `failed`, `cancelled`.
pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "pending",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
    }
}

/// The end of a wait: one line per task, and an error naming every task
/// that did not succeed (so the command exits non-zero).
pub fn outcome(tasks: &[Task]) -> anyhow::Result<String> {
    let mut out = String::new();
    for t in tasks {
        let secs = t.updated_at_ms.saturating_sub(t.created_at_ms) as f64 / 1000.0;
        out.push_str(&format!(
            "task {} {} {} {} in {secs:.1} s\n",
            t.id,
            t.kind,
            t.object,
            state_name(t.state)
        ));
    }
    let bad: Vec<String> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Succeeded)
        .map(|t| {
            format!(
                "{} {} {}: {} (see `jdos describe task {}`)",
                t.kind,
                t.object,
                state_name(t.state),
                if t.error.is_empty() { "-" } else { &t.error },
                t.id
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(out)
    } else {
        anyhow::bail!("{}", bad.join("; "))
    }
}

/// Polls the tasks until every one has ended (or `timeout` passed), drawing
/// their progress; answers them in their final state.
pub async fn wait(
    client: &jdos_client::Client,
    g: &GlobalOpts,
    ids: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<Task>> {
    let started = Instant::now();
    let table = g.output == OutputFormat::Table;
    let tty = table && std::io::stderr().is_terminal();
    let mut drawn = 0usize;
    let mut last: Vec<String> = vec![String::new(); ids.len()];
    loop {
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            tasks.push(client.get_task(id).await?);
        }
        let lines: Vec<String> = tasks.iter().map(progress_line).collect();
        let mut err = std::io::stderr().lock();
        if tty {
            if drawn > 0 {
                let _ = write!(err, "\x1b[{drawn}A");
            }
            for l in &lines {
                let _ = writeln!(err, "\r\x1b[2K{l}");
            }
            drawn = lines.len();
        } else if table {
            for (l, prev) in lines.iter().zip(last.iter_mut()) {
                if l != prev {
                    let _ = writeln!(err, "{l}");
                    *prev = l.clone();
                }
            }
        }
        let _ = err.flush();
        drop(err);
        if tasks.iter().all(|t| t.state.is_terminal()) {
            return Ok(tasks);
        }
        if started.elapsed() > timeout {
            let open: Vec<String> = tasks
                .iter()
                .filter(|t| !t.state.is_terminal())
                .map(|t| t.id.clone())
                .collect();
            anyhow::bail!(
                "still running after {} s: task(s) {} (they go on; follow with `jdos describe task ID`)",
                started.elapsed().as_secs(),
                open.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jdos_types::task::{Progress, Step};

    pub(crate) fn task(state: TaskState, steps: &[(&str, TaskState)]) -> Task {
        Task {
            id: "1700000000000-0000-0a0b0c0d".into(),
            kind: "deploy".into(),
            app: "web".into(),
            actor: "alice".into(),
            params: serde_json::Value::Null,
            state,
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (n, s))| Step {
                    name: n.to_string(),
                    state: *s,
                    attempts: u32::from(*s != TaskState::Pending),
                    started_at_ms: 1_700_000_000_000 + i as u64 * 100,
                    finished_at_ms: if s.is_terminal() {
                        1_700_000_000_000 + i as u64 * 100 + 50
                    } else {
                        0
                    },
                    message: String::new(),
                })
                .collect(),
            department: Some("retail".into()),
            object: "group web/production/web-lf".into(),
            data: serde_json::Value::Null,
            progress: None,
            error: String::new(),
            worker: None,
            not_before_ms: 0,
            cancel_requested: false,
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_002_500,
        }
    }

    const S: TaskState = TaskState::Succeeded;
    const R: TaskState = TaskState::Running;
    const P: TaskState = TaskState::Pending;

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 10), format!("[{}]", ".".repeat(BAR)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}]", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(bar(12, 10), format!("[{}]", "#".repeat(BAR)));
        assert_eq!(bar(0, 0), format!("[{}]", ".".repeat(BAR)));
    }

    #[test]
    fn a_running_task_shows_its_step_and_progress() {
        let mut t = task(
            R,
            &[
                ("place", S),
                ("publish", S),
                ("wait_running", R),
                ("hooks", P),
            ],
        );
        t.progress = Some(Progress {
            done: 3,
            total: 5,
            unit: "containers".into(),
        });
        let l = progress_line(&t);
        assert!(
            l.starts_with("deploy group web/production/web-lf  ["),
            "{l}"
        );
        // 2 of 4 steps done and 3/5 of the third: 65%.
        assert!(
            l.contains(&format!("[{}{}]", "#".repeat(19), ".".repeat(11))),
            "{l}"
        );
        assert!(l.ends_with("3/5 containers  wait_running 3/4"), "{l}");
        // Without progress the bar counts steps.
        t.progress = None;
        let l = progress_line(&t);
        assert!(
            l.contains(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{l}"
        );
    }

    #[test]
    fn failures_end_the_wait_with_an_error_naming_the_task() {
        let ok = task(S, &[("place", S)]);
        let text = outcome(std::slice::from_ref(&ok)).unwrap();
        assert_eq!(
            text,
            "task 1700000000000-0000-0a0b0c0d deploy group web/production/web-lf succeeded in 2.5 s\n"
        );
        let mut bad = task(TaskState::Failed, &[("place", TaskState::Failed)]);
        bad.error = "no host fits".into();
        let e = outcome(&[ok, bad.clone()]).unwrap_err().to_string();
        assert!(e.contains("failed: no host fits"), "{e}");
        assert!(e.contains(&format!("jdos describe task {}", bad.id)), "{e}");
        assert!(progress_line(&bad).ends_with("failed: no host fits"));
    }
}
