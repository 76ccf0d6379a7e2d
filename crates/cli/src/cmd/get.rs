//! `jdos get hosts|datacenters|apps|groups|containers|events|tasks|tokens`.

use jdos_client::{ContainerQuery, EventQuery, GroupQuery, HostQuery, TaskQuery};
use jdos_types::topology::TopologyNode;
use jdos_types::{
    App, Container, ContainerPhase, Event, EventResult, Group, Host, HostState, Task, TaskState,
    Token,
};

use super::GlobalOpts;
use crate::output::{age, bytes, cores, cores_number, now_ms, or_dash, percent, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to list.
    #[command(subcommand)]
    pub what: What,
}

/// Lists `get` knows.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Hosts with their place in the topology, state and capacity.
    #[command(visible_alias = "host")]
    Hosts(HostsArgs),
    /// The topology tree (datacenter → switch → rack → host) with capacity and usage.
    #[command(visible_aliases = ["datacenter", "dc"])]
    Datacenters,
    /// Apps (a developer token sees its own department's).
    #[command(visible_alias = "app")]
    Apps,
    /// Groups with their desired and running replicas.
    #[command(visible_alias = "group")]
    Groups(GroupsArgs),
    /// Containers with their host, IP and phase.
    #[command(visible_aliases = ["container", "ct"])]
    Containers(ContainersArgs),
    /// Events: every recorded action, oldest first.
    #[command(visible_alias = "event")]
    Events(EventsArgs),
    /// Workflow tasks, newest first, with their current step and progress.
    #[command(visible_alias = "task")]
    Tasks(TasksArgs),
    /// API tokens (admin only; secrets are never shown).
    #[command(visible_alias = "token")]
    Tokens,
}

/// `get tasks` filters.
#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// Only this app's tasks.
    #[arg(long)]
    pub app: Option<String>,
    /// Only tasks in this state.
    #[arg(long, value_enum)]
    pub state: Option<TaskStateArg>,
    /// Only tasks of this kind (deploy, scale, batch_scale, rolling, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Task states, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskStateArg {
    /// Waiting for a worker or for its app's other tasks.
    Pending,
    /// Being run.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed after its retries.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<TaskStateArg> for TaskState {
    fn from(s: TaskStateArg) -> TaskState {
        match s {
            TaskStateArg::Pending => TaskState::Pending,
            TaskStateArg::Running => TaskState::Running,
            TaskStateArg::Succeeded => TaskState::Succeeded,
            TaskStateArg::Failed => TaskState::Failed,
            TaskStateArg::Cancelled => TaskState::Cancelled,
        }
    }
}

/// `get hosts` filters.
#[derive(Debug, clap::Args)]
pub struct HostsArgs {
    /// Only this datacenter's hosts.
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Only hosts in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
}

/// `get groups` filters.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    /// Only this app's groups.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this environment.
    #[arg(long)]
    pub env: Option<String>,
    /// Only this datacenter.
    #[arg(long)]
    pub datacenter: Option<String>,
}

/// `get containers` filters.
#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    /// Only this app's containers.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this group's, as `APP/ENV/GROUP`.
    #[arg(long)]
    pub group: Option<String>,
    /// Only containers on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only containers in this phase.
    #[arg(long, value_enum)]
    pub state: Option<PhaseArg>,
}

/// Container phases, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PhaseArg {
    /// Placed, not yet created.
    Scheduled,
    /// Being created or started.
    Starting,
    /// Running (and healthy).
    Running,
    /// Failing its health check.
    Unhealthy,
    /// Stopped on purpose.
    Stopped,
    /// Exited or failed to start.
    Failed,
    /// Its host was lost.
    Lost,
    /// Not yet placed.
    Pending,
}

impl From<PhaseArg> for ContainerPhase {
    fn from(p: PhaseArg) -> ContainerPhase {
        match p {
            PhaseArg::Scheduled => ContainerPhase::Scheduled,
            PhaseArg::Starting => ContainerPhase::Starting,
            PhaseArg::Running => ContainerPhase::Running,
            PhaseArg::Unhealthy => ContainerPhase::Unhealthy,
            PhaseArg::Stopped => ContainerPhase::Stopped,
            PhaseArg::Failed => ContainerPhase::Failed,
            PhaseArg::Lost => ContainerPhase::Lost,
            PhaseArg::Pending => ContainerPhase::Pending,
        }
    }
}

/// Splits `APP/ENV/GROUP`.
pub fn parse_group_key(s: &str) -> anyhow::Result<jdos_types::GroupKey> {
    match s.split('/').collect::<Vec<_>>().as_slice() {
        [a, e, g] if !a.is_empty() && !e.is_empty() && !g.is_empty() => {
            Ok(jdos_types::GroupKey::new(a, e, g))
        }
        _ => anyhow::bail!("{s:?} is not a group: write APP/ENV/GROUP, e.g. web/production/web-lf"),
    }
}

/// Host states, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    /// Heartbeating.
    Ready,
    /// Heartbeats missed.
    Suspect,
    /// Confirmed down.
    Down,
    /// Being drained.
    Draining,
    /// Hardware checks failed.
    Degraded,
}

impl From<StateArg> for HostState {
    fn from(s: StateArg) -> HostState {
        match s {
            StateArg::Ready => HostState::Ready,
            StateArg::Suspect => HostState::Suspect,
            StateArg::Down => HostState::Down,
            StateArg::Draining => HostState::Draining,
            StateArg::Degraded => HostState::Degraded,
        }
    }
}

/// `get events` filters.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events of this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only events on this kind of object (host, app, token, …).
    #[arg(long = "kind")]
    pub object_kind: Option<String>,
    /// Only events on this object.
    #[arg(long)]
    pub object: Option<String>,
    /// Only events newer than this, e.g. `10m`, `2h`.
    #[arg(long, value_parser = super::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// At most this many (the newest).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Lists the objects.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let now = now_ms();
    match a.what {
        What::Hosts(h) => {
            let q = HostQuery {
                datacenter: h.datacenter,
                state: h.state.map(Into::into),
                limit: Some(500),
                continue_token: None,
            };
            let hosts = client.all_hosts(&q).await?;
            super::print(g, &hosts, || render_hosts(&hosts, now))
        }
        What::Datacenters => {
            let tree = client.datacenters().await?;
            super::print(g, &tree, || render_tree(&tree))
        }
        What::Apps => {
            let apps = client.all_apps().await?;
            super::print(g, &apps, || render_apps(&apps, now))
        }
        What::Groups(f) => {
            let q = GroupQuery {
                app: f.app.clone(),
                env: f.env,
                datacenter: f.datacenter,
                limit: Some(500),
                continue_token: None,
            };
            let groups = client.all_groups(&q).await?;
            // Running counts come from the containers: only worth reading
            // for a bounded set of groups.
            let containers = if groups.len() <= MAX_GROUPS_WITH_COUNTS {
                let q = ContainerQuery {
                    app: f.app,
                    limit: Some(5000),
                    ..Default::default()
                };
                Some(client.all_containers(&q).await?)
            } else {
                None
            };
            super::print(g, &groups, || render_groups(&groups, containers.as_deref()))
        }
        What::Containers(f) => {
            let mut q = ContainerQuery {
                app: f.app,
                host: f.host,
                phase: f.state.map(Into::into),
                limit: Some(5000),
                ..Default::default()
            };
            if let Some(gk) = &f.group {
                let k = parse_group_key(gk)?;
                q.app = Some(k.app);
                q.env = Some(k.env);
                q.group = Some(k.group);
            }
            let containers = client.all_containers(&q).await?;
            super::print(g, &containers, || render_containers(&containers, now))
        }
        What::Events(e) => {
            let q = EventQuery {
                app: e.app,
                object_kind: e.object_kind,
                object: e.object,
                since_ms: e.since.map(|d| now.saturating_sub(d.as_millis() as u64)),
                limit: Some(500),
                ..Default::default()
            };
            let mut events = client.all_events(&q).await?;
            if let Some(n) = e.limit {
                let skip = events.len().saturating_sub(n);
                events.drain(..skip);
            }
            super::print(g, &events, || render_events(&events, now))
        }
        What::Tasks(f) => {
            let q = TaskQuery {
                app: f.app,
                state: f.state.map(Into::into),
                kind: f.kind,
                active: false,
                limit: Some(f.limit.clamp(1, 5000)),
            };
            let tasks = client.list_tasks(&q).await?;
            super::print(g, &tasks, || render_tasks(&tasks, now))
        }
        What::Tokens => {
            let tokens = client.all_tokens().await?;
            super::print(g, &tokens, || render_tokens(&tokens, now))
        }
    }
}

fn empty(kind: &str) -> String {
    format!("No {kind} found.\n")
}

/// `ready`, `ready,cordoned`, `down,cordoned` …
pub fn host_status(h: &Host) -> String {
    if h.cordoned {
        format!("{},cordoned", h.state.as_str())
    } else {
        h.state.as_str().to_string()
    }
}

/// The hosts table.
pub fn render_hosts(hosts: &[Host], now: u64) -> String {
    if hosts.is_empty() {
        return empty("hosts");
    }
    let mut t = Table::new([
        "NAME",
        "DATACENTER",
        "SWITCH",
        "RACK",
        "STATUS",
        "CPU",
        "MEMORY",
        "ZONE",
        "AGE",
    ]);
    for h in hosts {
        t.row([
            h.name.clone(),
            h.datacenter.clone(),
            h.switch.clone(),
            h.rack.clone(),
            host_status(h),
            cores(h.capacity.cpu_millis),
            bytes(h.capacity.memory_bytes),
            h.resource_zone.clone(),
            age(h.registered_at_ms, now),
        ]);
    }
    t.render()
}

/// The topology as an indented tree, capacity and usage at every level.
pub fn render_tree(roots: &[TopologyNode]) -> String {
    if roots.is_empty() {
        return empty("datacenters");
    }
    let mut t = Table::new([
        "NAME",
        "LEVEL",
        "HOSTS",
        "READY",
        "CPU USED/TOTAL",
        "MEMORY USED/TOTAL",
        "CONTAINERS",
    ]);
    fn walk(t: &mut Table, n: &TopologyNode, depth: usize) {
        t.row([
            format!("{}{}", "  ".repeat(depth), n.name),
            n.level.clone(),
            n.hosts.to_string(),
            n.ready_hosts.to_string(),
            format!(
                "{} / {} cores ({})",
                cores_number(n.allocated.cpu_millis),
                cores_number(n.capacity.cpu_millis),
                percent(n.allocated.cpu_millis, n.capacity.cpu_millis)
            ),
            format!(
                "{} / {} ({})",
                bytes(n.allocated.memory_bytes),
                bytes(n.capacity.memory_bytes),
                percent(n.allocated.memory_bytes, n.capacity.memory_bytes)
            ),
            n.containers.to_string(),
        ]);
        for c in &n.children {
            walk(t, c, depth + 1);
        }
    }
    for r in roots {
        walk(&mut t, r, 0);
    }
    t.render()
}

/// The apps table.
pub fn render_apps(apps: &[App], now: u64) -> String {
    if apps.is_empty() {
        return empty("apps");
    }
    let mut t = Table::new(["NAME", "DEPARTMENT", "OWNER", "LEVEL", "AGE"]);
    for a in apps {
        t.row([
            a.name.clone(),
            a.department.clone(),
            a.owner.clone(),
            a.business_level.as_str().to_string(),
            age(a.created_at_ms, now),
        ]);
    }
    t.render()
}

/// Most groups `get groups` counts running containers for.
const MAX_GROUPS_WITH_COUNTS: usize = 500;

/// The groups table; READY is running/desired when the containers are known.
pub fn render_groups(groups: &[Group], containers: Option<&[Container]>) -> String {
    if groups.is_empty() {
        return empty("groups");
    }
    let mut t = Table::new([
        "APP",
        "ENV",
        "GROUP",
        "DATACENTER",
        "READY",
        "IMAGE",
        "CPU",
        "MEMORY",
        "AUTOSCALE",
    ]);
    for gr in groups {
        let ready = match containers {
            Some(cs) => {
                let running = cs
                    .iter()
                    .filter(|c| {
                        c.id.app == gr.app
                            && c.id.env == gr.env
                            && c.id.group == gr.name
                            && c.phase == ContainerPhase::Running
                            && c.desired == jdos_types::container::DesiredState::Running
                    })
                    .count();
                format!("{running}/{}", gr.replicas)
            }
            None => format!("-/{}", gr.replicas),
        };
        let autoscale = gr.autoscaling.as_ref().map_or("-".to_string(), |a| {
            format!("{}-{} {:?}", a.min_replicas, a.max_replicas, a.mode).to_lowercase()
        });
        t.row([
            gr.app.clone(),
            gr.env.clone(),
            gr.name.clone(),
            gr.datacenter.clone(),
            ready,
            gr.template.image.clone(),
            cores_number(gr.template.resources.cpu_millis),
            bytes(gr.template.resources.memory_bytes),
            autoscale,
        ]);
    }
    t.render()
}

/// The containers table.
pub fn render_containers(containers: &[Container], now: u64) -> String {
    if containers.is_empty() {
        return empty("containers");
    }
    let mut t = Table::new([
        "CONTAINER",
        "HOST",
        "IP",
        "PHASE",
        "DESIRED",
        "RESTARTS",
        "AGE",
        "MESSAGE",
    ]);
    for c in containers {
        t.row([
            c.id.to_string(),
            or_dash(c.host.as_deref().unwrap_or("")),
            c.ip.map_or("-".to_string(), |ip| ip.to_string()),
            c.phase.as_str().to_string(),
            format!("{:?}", c.desired).to_lowercase(),
            c.restarts.to_string(),
            age(c.created_at_ms, now),
            or_dash(&c.message),
        ]);
    }
    t.render()
}

/// The events table, oldest first like a log.
pub fn render_events(events: &[Event], now: u64) -> String {
    if events.is_empty() {
        return empty("events");
    }
    let mut t = Table::new([
        "SEQ", "AGE", "ACTOR", "ACTION", "OBJECT", "RESULT", "MESSAGE",
    ]);
    for e in events {
        t.row([
            e.seq.to_string(),
            age(e.time_ms, now),
            e.actor.clone(),
            e.action.clone(),
            format!("{}/{}", e.object_kind, e.object),
            match e.result {
                EventResult::Success => "success".to_string(),
                EventResult::Failure => "FAILURE".to_string(),
            },
            or_dash(&e.message),
        ]);
    }
    t.render()
}

/// The tasks table: the step each is at and its progress.
pub fn render_tasks(tasks: &[Task], now: u64) -> String {
    if tasks.is_empty() {
        return empty("tasks");
    }
    let mut t = Table::new([
        "ID", "KIND", "OBJECT", "STATE", "STEP", "PROGRESS", "ACTOR", "AGE",
    ]);
    for k in tasks {
        t.row([
            k.id.clone(),
            k.kind.clone(),
            or_dash(&k.object),
            super::follow::state_name(k.state).to_string(),
            super::follow::step_label(k),
            if k.state.is_terminal() {
                "-".to_string()
            } else {
                super::follow::progress_label(k).unwrap_or_else(|| "-".into())
            },
            k.actor.clone(),
            age(k.created_at_ms, now),
        ]);
    }
    t.render()
}

/// The tokens table.
pub fn render_tokens(tokens: &[Token], now: u64) -> String {
    if tokens.is_empty() {
        return empty("tokens");
    }
    let mut t = Table::new(["ID", "NAME", "ROLE", "DEPARTMENT", "AGE"]);
    for k in tokens {
        t.row([
            k.id.clone(),
            k.name.clone(),
            k.role.to_string(),
            or_dash(k.department.as_deref().unwrap_or("")),
            age(k.created_at_ms, now),
        ]);
    }
    t.render()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jdos_types::resources::GIB;
    use jdos_types::{Labels, Resources};

    pub(crate) fn host(name: &str, cordoned: bool) -> Host {
        Host {
            name: name.into(),
            datacenter: "dc-1".into(),
            switch: "sw-1".into(),
            rack: "rack-1".into(),
            capacity: Resources::new(16_000, 64 * GIB),
            resource_zone: "general".into(),
            labels: Labels::new(),
            state: HostState::Ready,
            cordoned,
            epoch: 0,
            last_heartbeat_ms: 0,
            registered_at_ms: 1_000,
            driver: "simulated".into(),
        }
    }

    #[test]
    fn hosts_table_shows_cordon_and_human_units() {
        let out = render_hosts(&[host("h-1", false), host("h-2", true)], 301_000);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].contains("16 cores") && lines[1].contains("64 GiB"));
        assert!(lines[1].contains(" ready ") && lines[1].ends_with("5m"));
        assert!(lines[2].contains("ready,cordoned"));
        // Columns line up: every STATUS cell starts where the header's does.
        let col = lines[0].find("STATUS").unwrap();
        assert!(lines[1][col..].starts_with("ready"));
        assert!(lines[2][col..].starts_with("ready,cordoned"));
        assert_eq!(render_hosts(&[], 0), "No hosts found.\n");
    }

    #[test]
    fn datacenter_tree_is_indented_with_usage() {
        let leaf = TopologyNode {
            level: "host".into(),
            name: "h-1".into(),
            hosts: 1,
            ready_hosts: 1,
            capacity: Resources::new(16_000, 64 * GIB),
            allocated: Resources::new(4_000, 16 * GIB),
            containers: 2,
            children: vec![],
        };
        let rack = TopologyNode {
            level: "rack".into(),
            name: "rack-1".into(),
            children: vec![leaf.clone()],
            ..leaf.clone()
        };
        let dc = TopologyNode {
            level: "datacenter".into(),
            name: "dc-1".into(),
            children: vec![rack],
            ..leaf
        };
        let out = render_tree(&[dc]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].starts_with("dc-1 "));
        assert!(lines[2].starts_with("  rack-1 "));
        assert!(lines[3].starts_with("    h-1 "));
        assert!(lines[3].contains("4 / 16 cores (25%)"), "{out}");
        assert!(lines[3].contains("16 GiB / 64 GiB (25%)"), "{out}");
    }

    #[test]
    fn tasks_table_shows_step_and_progress() {
        use crate::cmd::follow::tests::task;
        let mut running = task(
            TaskState::Running,
            &[
                ("place", TaskState::Succeeded),
                ("wait_running", TaskState::Running),
            ],
        );
        running.progress = Some(jdos_types::task::Progress {
            done: 2,
            total: 4,
            unit: "containers".into(),
        });
        let done = task(TaskState::Succeeded, &[("place", TaskState::Succeeded)]);
        let out = render_tasks(&[running, done], 1_700_000_060_000);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID ") && lines[0].contains("PROGRESS"));
        assert!(
            lines[1].contains(" running ") && lines[1].contains("wait_running 2/2"),
            "{out}"
        );
        assert!(lines[1].contains("2/4 containers"), "{out}");
        assert!(
            lines[2].contains(" succeeded ") && lines[2].contains(" done "),
            "{out}"
        );
        assert!(lines[1].ends_with("60s"), "{out}");
        assert_eq!(render_tasks(&[], 0), "No tasks found.\n");
    }

    #[test]
    fn events_table_marks_failures() {
        let e = Event {
            seq: 7,
            time_ms: 0,
            actor: "admin".into(),
            action: "host.cordon".into(),
            object_kind: "host".into(),
            object: "h-1".into(),
            app: None,
            department: None,
            result: EventResult::Failure,
            message: String::new(),
        };
        let out = render_events(&[e], 10);
        assert!(out.contains("host.cordon") && out.contains("host/h-1"));
        assert!(out.contains("FAILURE"));
    }
}
