//! `jdos describe host|app|group|task NAME`: everything about one object,
//! kubectl style; a task as the timeline of its steps.

use jdos_types::api::HostDetail;
use jdos_types::{Resources, StorageTier};

use super::GlobalOpts;
use crate::output::{age, bytes, cores, now_ms, or_dash, percent, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to describe.
    #[command(subcommand)]
    pub what: What,
}

/// Objects `describe` knows.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A host: topology, state, capacity, allocation and its containers.
    Host {
        /// Host name.
        name: String,
    },
    /// An app: owner, department, level, labels and its groups.
    App {
        /// App name.
        name: String,
    },
    /// A group: template, placement, autoscaling and its containers.
    Group {
        /// `APP/ENV/GROUP`.
        key: String,
    },
    /// A task: the timeline of its steps with times, attempts and messages.
    Task {
        /// Task id (`jdos get tasks`).
        id: String,
    },
}

/// `describe app`: the app and its groups.
#[derive(Debug, serde::Serialize)]
pub struct AppDetail {
    /// The app.
    pub app: jdos_types::App,
    /// Its groups.
    pub groups: Vec<jdos_types::Group>,
}

/// Fetches and prints the object.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        What::Host { name } => {
            let d = client.get_host(&name).await?;
            super::print(g, &d, || render_host(&d, now_ms()))
        }
        What::App { name } => {
            let app = client.get_app(&name).await?;
            let q = jdos_client::GroupQuery {
                app: Some(name.clone()),
                ..Default::default()
            };
            let groups = client.all_groups(&q).await?;
            let cq = jdos_client::ContainerQuery {
                app: Some(name),
                limit: Some(5000),
                ..Default::default()
            };
            let containers = client.all_containers(&cq).await?;
            let d = AppDetail { app, groups };
            super::print(g, &d, || render_app(&d, &containers, now_ms()))
        }
        What::Group { key } => {
            let k = super::get::parse_group_key(&key)?;
            let d = client.get_group(&k).await?;
            super::print(g, &d, || render_group(&d, now_ms()))
        }
        What::Task { id } => {
            let t = client.get_task(&id).await?;
            super::print(g, &t, || render_task(&t, now_ms()))
        }
    }
}

fn disks(r: &Resources) -> String {
    let parts: Vec<String> = StorageTier::ALL
        .iter()
        .filter(|t| r.disk.get(**t) > 0)
        .map(|t| format!("{} {}", t.short(), bytes(r.disk.get(*t))))
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

/// Key/value block, then the containers table.
pub fn render_host(d: &HostDetail, now: u64) -> String {
    let h = &d.host;
    let cap = &h.capacity;
    let used = &d.allocation.allocated;
    let labels = if h.labels.is_empty() {
        "-".to_string()
    } else {
        h.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let heartbeat = if h.last_heartbeat_ms == 0 {
        "never".to_string()
    } else {
        format!("{} ago", age(h.last_heartbeat_ms, now))
    };
    let rows: Vec<(&str, String)> = vec![
        ("Name", h.name.clone()),
        ("Datacenter", h.datacenter.clone()),
        ("Switch", h.switch.clone()),
        ("Rack", h.rack.clone()),
        ("State", h.state.as_str().to_string()),
        (
            "Schedulable",
            if h.cordoned {
                "no (cordoned)".to_string()
            } else if h.schedulable() {
                "yes".to_string()
            } else {
                format!("no ({})", h.state.as_str())
            },
        ),
        ("Resource zone", h.resource_zone.clone()),
        ("Driver", or_dash(&h.driver)),
        ("Labels", labels),
        ("Epoch", h.epoch.to_string()),
        (
            "Registered",
            format!("{} ago", age(h.registered_at_ms, now)),
        ),
        ("Last heartbeat", heartbeat),
        ("Capacity", String::new()),
        ("  CPU", cores(cap.cpu_millis)),
        ("  Memory", bytes(cap.memory_bytes)),
        ("  Disk", disks(cap)),
        ("Allocated", String::new()),
        (
            "  CPU",
            format!(
                "{} ({})",
                cores(used.cpu_millis),
                percent(used.cpu_millis, cap.cpu_millis)
            ),
        ),
        (
            "  Memory",
            format!(
                "{} ({})",
                bytes(used.memory_bytes),
                percent(used.memory_bytes, cap.memory_bytes)
            ),
        ),
        ("  Disk", disks(used)),
        ("Containers", d.allocation.containers.to_string()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        let line = format!("{:<width$}{v}", format!("{k}:"));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !d.containers.is_empty() {
        let mut t = Table::new([
            "  CONTAINER",
            "PHASE",
            "IP",
            "CPU",
            "MEMORY",
            "IMAGE",
            "AGE",
        ]);
        for c in &d.containers {
            t.row([
                format!("  {}", c.id),
                c.phase.as_str().to_string(),
                c.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
                cores(c.resources.cpu_millis),
                bytes(c.resources.memory_bytes),
                c.image.clone(),
                age(c.created_at_ms, now),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// Seconds between two stamps: `0.35 s`, `12.0 s`, `-` when unset.
fn span(from_ms: u64, to_ms: u64) -> String {
    if from_ms == 0 || to_ms == 0 {
        return "-".to_string();
    }
    let ms = to_ms.saturating_sub(from_ms);
    if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The task, then its steps: when each started (from the task's creation),
/// how long it took, its attempts and its last message.
pub fn render_task(t: &jdos_types::Task, now: u64) -> String {
    use super::follow::{progress_label, state_name, step_label};
    let end = if t.state.is_terminal() {
        t.updated_at_ms
    } else {
        now
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("ID", t.id.clone()),
        ("Kind", t.kind.clone()),
        ("App", t.app.clone()),
        ("Object", or_dash(&t.object)),
        ("Department", or_dash(t.department.as_deref().unwrap_or(""))),
        ("Actor", t.actor.clone()),
        ("State", {
            let mut s = state_name(t.state).to_string();
            if t.cancel_requested && !t.state.is_terminal() {
                s.push_str(" (cancel requested)");
            }
            s
        }),
        ("Step", step_label(t)),
        ("Created", format!("{} ago", age(t.created_at_ms, now))),
        ("Duration", span(t.created_at_ms, end)),
    ];
    if let (Some(p), false) = (progress_label(t), t.state.is_terminal()) {
        rows.push(("Progress", p));
    }
    if let Some(w) = &t.worker {
        rows.push(("Worker", w.clone()));
    }
    if !t.error.is_empty() {
        rows.push(("Error", t.error.clone()));
    }
    let mut out = kv_block(rows);
    if t.steps.is_empty() {
        return out;
    }
    let mut table = Table::new(["  STEP", "STATE", "ATTEMPTS", "STARTED", "TOOK", "MESSAGE"]);
    for s in &t.steps {
        let started = if s.started_at_ms == 0 {
            "-".to_string()
        } else {
            format!("+{}", span(t.created_at_ms, s.started_at_ms))
        };
        let took = match (s.state, s.finished_at_ms) {
            (jdos_types::TaskState::Running, _) => span(s.started_at_ms, now),
            (_, 0) => "-".to_string(),
            (_, f) => span(s.started_at_ms, f),
        };
        table.row([
            format!("  {}", s.name),
            state_name(s.state).to_string(),
            s.attempts.to_string(),
            started,
            took,
            or_dash(&s.message),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

fn kv_block(rows: Vec<(&str, String)>) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        let line = format!("{:<width$}{v}", format!("{k}:"));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn labels_of(l: &std::collections::BTreeMap<String, String>) -> String {
    if l.is_empty() {
        "-".to_string()
    } else {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The app's fields, then its groups with running counts.
pub fn render_app(d: &AppDetail, containers: &[jdos_types::Container], now: u64) -> String {
    let a = &d.app;
    let mut out = kv_block(vec![
        ("Name", a.name.clone()),
        ("Owner", a.owner.clone()),
        ("Department", a.department.clone()),
        ("Business level", a.business_level.as_str().to_string()),
        ("Description", or_dash(&a.description)),
        ("Labels", labels_of(&a.labels)),
        ("Created", format!("{} ago", age(a.created_at_ms, now))),
        ("Groups", d.groups.len().to_string()),
    ]);
    if !d.groups.is_empty() {
        out.push('\n');
        out.push_str(&super::get::render_groups(&d.groups, Some(containers)));
    }
    out
}

/// The group's template, placement and autoscaling, then its containers.
pub fn render_group(d: &jdos_types::api::GroupDetail, now: u64) -> String {
    let gr = &d.group;
    let t = &gr.template;
    let health = t.health.as_ref().map_or("-".to_string(), |h| {
        let probe = match &h.probe {
            jdos_types::workload::Probe::Tcp { port } => format!("tcp :{port}"),
            jdos_types::workload::Probe::Http { port, path } => format!("http :{port}{path}"),
            jdos_types::workload::Probe::Exec { command } => format!("exec {}", command.join(" ")),
        };
        format!("{probe} every {} ms, {} retries", h.interval_ms, h.retries)
    });
    let p = &gr.placement;
    let caps: Vec<String> = [
        ("host", p.max_per_host),
        ("rack", p.max_per_rack),
        ("switch", p.max_per_switch),
    ]
    .into_iter()
    .filter_map(|(lvl, c)| c.map(|c| format!("≤{c}/{lvl}")))
    .collect();
    let hooks = |hs: &[jdos_types::group::Hook]| {
        if hs.is_empty() {
            "-".to_string()
        } else {
            hs.iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let running = d
        .containers
        .iter()
        .filter(|c| c.phase == jdos_types::ContainerPhase::Running)
        .count();
    let mut rows = vec![
        ("Group", gr.key().to_string()),
        ("Datacenter", gr.datacenter.clone()),
        (
            "Replicas",
            format!("{} desired, {running} running", gr.replicas),
        ),
        ("Image", t.image.clone()),
        (
            "Command",
            if t.command.is_empty() {
                "-".to_string()
            } else {
                t.command.join(" ")
            },
        ),
        ("Env", labels_of(&t.env)),
        (
            "Resources",
            format!(
                "{}, {}{}",
                cores(t.resources.cpu_millis),
                bytes(t.resources.memory_bytes),
                match disks(&t.resources).as_str() {
                    "-" => String::new(),
                    d => format!(", disk {d}"),
                }
            ),
        ),
        (
            "Ports",
            if t.ports.is_empty() {
                "-".to_string()
            } else {
                t.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ),
        ("Health", health),
        (
            "Network",
            t.network
                .clone()
                .or_else(|| t.network_zone.as_ref().map(|z| format!("zone {z}")))
                .unwrap_or_else(|| "-".to_string()),
        ),
        (
            "Placement",
            format!(
                "{}{}",
                format!("{:?}", p.strategy).to_lowercase(),
                if caps.is_empty() {
                    String::new()
                } else {
                    format!(", {}", caps.join(" "))
                }
            ),
        ),
        ("Hooks pre-start", hooks(&t.hooks.pre_start)),
        ("Hooks post-start", hooks(&t.hooks.post_start)),
        ("Hooks pre-stop", hooks(&t.hooks.pre_stop)),
    ];
    rows.push((
        "Autoscaling",
        gr.autoscaling.as_ref().map_or("-".to_string(), |a| {
            format!(
                "{}-{} replicas, {} target {}, {}{}",
                a.min_replicas,
                a.max_replicas,
                a.metric,
                a.target_utilization
                    .or(a.target_value)
                    .map_or("default".to_string(), |t| t.to_string()),
                format!("{:?}", a.mode).to_lowercase(),
                if a.schedules.is_empty() {
                    String::new()
                } else {
                    format!(", {} schedules", a.schedules.len())
                }
            )
        }),
    ));
    let mut out = kv_block(rows);
    if !d.containers.is_empty() {
        out.push('\n');
        out.push_str(&super::get::render_containers(&d.containers, now));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_task_renders_as_a_timeline_of_steps() {
        use crate::cmd::follow::tests::task;
        use jdos_types::TaskState::{Failed, Pending, Succeeded};
        let mut t = task(
            Failed,
            &[
                ("place", Succeeded),
                ("wait_running", Failed),
                ("hooks", Pending),
            ],
        );
        t.steps[0].message = "3 container(s) placed".into();
        t.steps[1].attempts = 3;
        t.steps[1].message = "1 of 3 container(s) not running after 300 s".into();
        t.error = "1 of 3 container(s) not running after 300 s".into();
        let out = super::render_task(&t, 1_700_000_010_000);
        assert!(out.contains("State:      failed"), "{out}");
        assert!(out.contains("Duration:   2.50 s"), "{out}");
        assert!(out.contains("Error:      1 of 3"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.trim_start().starts_with("STEP"))
            .unwrap();
        let place = lines[header + 1];
        assert!(
            place.starts_with("  place ") && place.contains("succeeded"),
            "{out}"
        );
        assert!(
            place.contains("+0.00 s") && place.contains("0.05 s"),
            "{out}"
        );
        assert!(place.ends_with("3 container(s) placed"), "{out}");
        let wait = lines[header + 2];
        assert!(wait.contains(" failed ") && wait.contains(" 3 "), "{out}");
        assert!(wait.contains("+0.10 s"), "{out}");
        let hooks = lines[header + 3];
        assert!(
            hooks.contains(" pending ") && hooks.contains(" - "),
            "{out}"
        );
    }

    use super::*;
    use jdos_types::resources::GIB;
    use jdos_types::topology::HostAllocation;

    #[test]
    fn host_description_shows_usage_against_capacity() {
        let mut host = crate::cmd::get::tests::host("h-1", true);
        host.capacity.disk.l1 = 1 << 40;
        host.labels.insert("gpu".into(), "none".into());
        let d = HostDetail {
            allocation: HostAllocation {
                host: "h-1".into(),
                allocated: Resources::new(4_000, 16 * GIB),
                containers: 2,
            },
            host,
            containers: vec![],
        };
        let out = render_host(&d, 61_000);
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("Schedulable: no (cordoned)"), "{out}");
        assert!(
            flat.contains("Allocated: CPU: 4 cores (25%) Memory: 16 GiB (25%)"),
            "{out}"
        );
        assert!(flat.contains("Disk: l1 1 TiB"), "{out}");
        assert!(flat.contains("Labels: gpu=none"), "{out}");
        assert!(flat.contains("Registered: 60s ago"), "{out}");
        assert!(!out.lines().any(|l| l.ends_with(' ')));
    }
}
