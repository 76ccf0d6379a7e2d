//! The agent against `FakeDriver` and `TestServer` (a test double of the
//! server): convergence, crash back-off and crash loops, health failures,
//! self-fencing, epoch bumps and adoption after an agent restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jdos_agent::{Agent, AgentConfig, AgentStatus};
use jdos_runtime::{
    BackoffPolicy, Driver, ExecOutput, FakeDriver, FakeOp, LabelFilter, RuntimeState,
};
use jdos_types::container::DesiredState;
use jdos_types::resources::GIB;
use jdos_types::workload::{HealthCheck, Probe};
use jdos_types::{ContainerPhase, Resources};
use support::*;
use tokio::sync::watch;

const HOST: &str = "agent-host-1";

fn config() -> AgentConfig {
    let mut c = AgentConfig::new(HOST, "dc1", "sw1", "rack1", Resources::new(8000, 16 * GIB));
    c.backoff = BackoffPolicy {
        initial_ms: 100,
        max_ms: 400,
        multiplier: 2,
        reset_after_ms: 60_000,
        migrate_after: 3,
    };
    c.resync_interval = Duration::from_millis(200);
    c.long_poll = Duration::from_secs(2);
    c
}

struct Running {
    status: watch::Receiver<AgentStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), jdos_agent::AgentError>>,
}

impl Running {
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("agent stops")
            .unwrap()
            .unwrap();
    }
}

fn start(driver: Arc<FakeDriver>, server: Arc<TestServer>) -> Running {
    let agent = Agent::new(config());
    let status = agent.status();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(agent.run(driver, server, shutdown));
    Running { status, stop, task }
}

/// A jdos container of this host that nothing assigns.
fn stray_spec() -> Arc<jdos_runtime::ContainerSpec> {
    let stray = assignment(
        id("stray", 0),
        HOST,
        1,
        &network(),
        99,
        &template("img", &[]),
    );
    jdos_agent::Wanted::from_assignment(&stray, HOST, &Default::default())
        .spec
        .expect("a valid spec")
}

/// An agent over a fresh fake engine with `n` containers of `app`
/// assigned, once they all run.
async fn running(
    app: &str,
    n: u32,
) -> (
    Arc<FakeDriver>,
    Arc<TestServer>,
    Vec<jdos_types::InstanceId>,
    Running,
) {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    let ids = assign_n(&server, app, n);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "all running", |s| {
        all_phase(s, n as usize, ContainerPhase::Running)
    })
    .await;
    (d, server, ids, a)
}

fn all_phase(s: &AgentStatus, n: usize, phase: ContainerPhase) -> bool {
    s.reports.len() == n && s.reports.iter().all(|r| r.phase == phase)
}

/// The server's last report of each of `ids` says running.
fn server_sees_running(server: &TestServer, ids: &[jdos_types::InstanceId]) -> bool {
    ids.iter().all(|i| {
        server
            .report(i)
            .is_some_and(|r| r.phase == ContainerPhase::Running)
    })
}

async fn running_ids(d: &FakeDriver) -> Vec<String> {
    let mut v: Vec<String> = d
        .list(&LabelFilter::host(HOST))
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.state == RuntimeState::Running)
        .map(|s| s.instance.unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn assign_n(server: &TestServer, app: &str, n: u32) -> Vec<jdos_types::InstanceId> {
    let net = network();
    let t = template("jdos-busybox:latest", &["sleep", "3600"]);
    let ids: Vec<_> = (0..n).map(|i| id(app, i)).collect();
    server.assign(
        ids.iter()
            .enumerate()
            .map(|(i, id)| assignment(id.clone(), HOST, 1, &net, 10 + i as u8, &t)),
    );
    ids
}

#[tokio::test]
async fn converges_to_the_assignments_and_reports_them() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    // A leftover of this host with no assignment: fenced away.
    d.ensure_network(&network(), &Default::default())
        .await
        .unwrap();
    d.create(&stray_spec()).await.unwrap();
    let ids = assign_n(&server, "conv", 5);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "5 running", |s| {
        all_phase(s, 5, ContainerPhase::Running)
    })
    .await;
    assert_eq!(running_ids(&d).await.len(), 5);
    eventually(5, "stray destroyed", || d.container_count() == 5).await;
    // The server hears about it through heartbeats.
    eventually(5, "server sees 5 running", || {
        server_sees_running(&server, &ids)
    })
    .await;

    server.set_desired(&ids[0], DesiredState::Deleted);
    server.set_desired(&ids[1], DesiredState::Stopped);
    eventually(5, "deleted reported gone", || {
        server.report(&ids[0]).is_some_and(|r| r.gone)
    })
    .await;
    eventually(5, "stopped reported", || {
        server
            .report(&ids[1])
            .is_some_and(|r| r.phase == ContainerPhase::Stopped)
    })
    .await;
    assert_eq!(
        d.container_count(),
        4,
        "deleted is destroyed, stopped is kept"
    );
    assert_eq!(running_ids(&d).await.len(), 3);
    assert!(server.with(|s| s.registrations) == 1);
    a.shutdown().await;
    assert_eq!(
        running_ids(&d).await.len(),
        3,
        "containers outlive the agent"
    );
}

/// Orders unchanged since the agent's list come by identity only and the
/// agent keeps its copy; one it never had (the server mistaken about its
/// list) makes it fetch every order in full rather than guess.
#[tokio::test]
async fn unchanged_orders_come_by_identity_and_an_unknown_one_brings_the_full_list() {
    let (d, server, ids, mut a) = running("kept", 3).await;
    // A fourth order: the list names the first three by identity only.
    let more = vec![id("kept2", 0)];
    server.assign([assignment(
        more[0].clone(),
        HOST,
        1,
        &network(),
        50,
        &template("jdos-busybox:latest", &["sleep", "3600"]),
    )]);
    wait_status(&mut a.status, 10, "4 running", |s| {
        all_phase(s, 4, ContainerPhase::Running)
    })
    .await;
    let knowns = server.with(|s| s.knowns.clone());
    assert!(knowns.iter().any(|k| *k > 0), "{knowns:?}");
    assert_eq!(running_ids(&d).await.len(), 4);

    // The next answer also names an order this agent never had.
    let fetches = server.with(|s| {
        s.bogus_kept = 1;
        s.knowns.len()
    });
    server.set_desired(&ids[0], DesiredState::Stopped);
    eventually(10, "a full fetch after the unknown identity", || {
        server.with(|s| s.bogus_kept == 0 && s.knowns[fetches + 1..].contains(&0))
    })
    .await;
    eventually(10, "stopped reported", || {
        server
            .report(&ids[0])
            .is_some_and(|r| r.phase == ContainerPhase::Stopped)
    })
    .await;
    let mut want: Vec<String> = ids[1..]
        .iter()
        .chain(&more)
        .map(|i| i.to_string())
        .collect();
    want.sort();
    assert_eq!(running_ids(&d).await, want, "nothing else started or lost");
    a.shutdown().await;
}

/// A quiet host does not list its engine on every resync: with nothing
/// changed, passes are skipped; a change made behind the agent's back (a
/// stray container no waiter watches) still reaches the next resync.
#[tokio::test]
async fn a_quiet_host_skips_resync_listings_until_its_engine_changes() {
    let (d, server, ids, a) = running("quiet", 3).await;
    eventually(5, "server sees 3 running", || {
        server_sees_running(&server, &ids)
    })
    .await;
    let quiet0 = a.status.borrow().quiet_passes;
    let lists0 = d.calls(FakeOp::List);
    // Resyncs are 200 ms apart: about five in a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let lists = d.calls(FakeOp::List) - lists0;
    assert!(lists <= 1, "a quiet host listed its engine {lists} times");

    // The first listing after the change fails: the one after must still
    // happen, though nothing changes in between.
    d.fail_next(
        FakeOp::List,
        jdos_runtime::DriverError::Unavailable("injected".into()),
        1,
    );
    d.create(&stray_spec()).await.unwrap();
    eventually(5, "stray destroyed", || d.container_count() == 3).await;
    assert!(
        d.calls(FakeOp::List) >= lists0 + lists + 2,
        "the change made the next resyncs list, past a failed listing"
    );
    assert_eq!(
        running_ids(&d).await.len(),
        3,
        "the assigned ones untouched"
    );
    // The status is published on passes that list: the skipped ones count.
    assert!(
        a.status.borrow().quiet_passes >= quiet0 + 3,
        "skipped passes are counted"
    );
    a.shutdown().await;
}

/// A deploy waits for the agent's report: a change goes out within a
/// fraction of a second, not at the next heartbeat (here 3 s apart).
#[tokio::test]
async fn a_changed_report_does_not_wait_for_the_next_heartbeat() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    server.with(|s| s.heartbeat_interval_ms = 3_000);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "registered, no containers", |s| {
        s.registered && s.passes > 0
    })
    .await;
    // Let the start-up heartbeats settle, then time one change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beats = server.with(|s| s.heartbeats);
    let ids = assign_n(&server, "early", 3);
    let t0 = std::time::Instant::now();
    eventually(5, "server sees 3 running", || {
        server_sees_running(&server, &ids)
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(2_000),
        "running reached the server after {took:?}, as if it waited for the 3 s heartbeat"
    );
    // Early sends are batched: a few calls, not one per change.
    let extra = server.with(|s| s.heartbeats) - beats;
    assert!(extra <= 4, "{extra} heartbeats for one burst of changes");
    a.shutdown().await;
}

#[tokio::test]
async fn a_crashing_container_restarts_with_back_off_then_reports_a_crash_loop() {
    let (d, server, ids, mut a) = running("crash", 2).await;
    let starts = d.calls(FakeOp::Start);
    let t0 = std::time::Instant::now();
    d.crash(&ids[0], 1).unwrap();
    let s = wait_status(&mut a.status, 10, "first restart", |s| {
        s.reports
            .iter()
            .any(|r| r.id == ids[0] && r.restarts == 1 && r.phase == ContainerPhase::Running)
    })
    .await;
    let first = t0.elapsed();
    assert!(
        first >= Duration::from_millis(100),
        "back-off of 100 ms kept: {first:?}"
    );
    assert!(!s.reports.iter().any(|r| r.crash_loop));
    assert_eq!(
        d.calls(FakeOp::Start),
        starts + 1,
        "restarted in place, not recreated"
    );
    // Two more crashes in a row: migrate_after = 3 → crash loop.
    d.crash(&ids[0], 1).unwrap();
    wait_status(&mut a.status, 10, "second restart", |s| {
        s.reports
            .iter()
            .any(|r| r.id == ids[0] && r.restarts == 2 && r.phase == ContainerPhase::Running)
    })
    .await;
    d.oom_kill(&ids[0]).unwrap();
    let s = wait_status(&mut a.status, 10, "crash loop", |s| {
        s.reports.iter().any(|r| r.id == ids[0] && r.crash_loop)
    })
    .await;
    let r = s.reports.iter().find(|r| r.id == ids[0]).unwrap();
    assert_eq!(r.phase, ContainerPhase::Failed);
    assert!(r.message.contains("OOM"), "{}", r.message);
    assert!(r.message.contains("crash loop"), "{}", r.message);
    eventually(5, "server told", || {
        server.report(&ids[0]).is_some_and(|r| r.crash_loop)
    })
    .await;
    // It stays down; the other one was never touched.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(running_ids(&d).await, vec![ids[1].to_string()]);
    // The server moves it: the assignment goes, the container goes.
    server.unassign(&ids[0]);
    eventually(5, "moved one destroyed", || d.container_count() == 1).await;
    a.shutdown().await;
}

#[tokio::test]
async fn an_unhealthy_container_is_restarted() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    let mut t = template("jdos-busybox:latest", &["sleep", "3600"]);
    let mut check = HealthCheck::new(Probe::Exec {
        command: vec!["true".into()],
    });
    check.interval_ms = 100;
    check.timeout_ms = 50;
    check.retries = 2;
    t.health = Some(check);
    let i = id("health", 0);
    server.assign([assignment(i.clone(), HOST, 1, &network(), 10, &t)]);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "healthy", |s| {
        all_phase(s, 1, ContainerPhase::Running)
    })
    .await;
    d.set_exec_result(
        &i,
        ExecOutput {
            exit_code: 1,
            stdout: String::new(),
            stderr: "not ready".into(),
        },
    );
    let stops = d.calls(FakeOp::Stop);
    wait_status(&mut a.status, 10, "restarted after unhealthy", |s| {
        s.reports.iter().any(|r| r.restarts >= 1)
    })
    .await;
    assert!(d.calls(FakeOp::Stop) > stops, "stopped because unhealthy");
    a.shutdown().await;
}

#[tokio::test]
async fn self_fences_when_the_server_vanishes_and_recovers_after() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    let ids = assign_n(&server, "fence", 3);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "running", |s| {
        all_phase(s, 3, ContainerPhase::Running)
    })
    .await;
    let t0 = std::time::Instant::now();
    server.set_reachable(false);
    wait_status(&mut a.status, 10, "fenced", |s| s.fenced).await;
    eventually(5, "all killed", || {
        futures_util::FutureExt::now_or_never(running_ids(&d)).is_some_and(|v| v.is_empty())
    })
    .await;
    let took = t0.elapsed();
    // fence_after is 300 ms (from the session); the server's down_after is 400 ms.
    assert!(
        took >= Duration::from_millis(250),
        "not before fence_after: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "soon after fence_after: {took:?}"
    );
    // Meanwhile the server moved one of them elsewhere.
    server.unassign(&ids[2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        running_ids(&d).await.is_empty(),
        "nothing starts while fenced"
    );
    server.set_reachable(true);
    wait_status(&mut a.status, 10, "back", |s| {
        !s.fenced && all_phase(s, 2, ContainerPhase::Running)
    })
    .await;
    assert_eq!(
        running_ids(&d).await,
        vec![ids[0].to_string(), ids[1].to_string()]
    );
    eventually(5, "moved one destroyed", || d.container_count() == 2).await;
    let s = a.status.borrow().clone();
    assert!(
        s.reports.iter().all(|r| r.restarts == 0),
        "a fence is not a crash"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn self_fences_in_time_when_the_server_hangs() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    assign_n(&server, "hang", 2);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "running", |s| {
        all_phase(s, 2, ContainerPhase::Running)
    })
    .await;
    // Heartbeats now take 2 s to fail; fencing must not wait for them.
    let t0 = std::time::Instant::now();
    server.with(|s| s.hang = true);
    wait_status(&mut a.status, 10, "fenced", |s| s.fenced).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "fenced before the server's down_after (400 ms): {took:?}"
    );
    eventually(5, "all killed", || {
        futures_util::FutureExt::now_or_never(running_ids(&d)).is_some_and(|v| v.is_empty())
    })
    .await;
    server.with(|s| s.hang = false);
    wait_status(&mut a.status, 10, "back", |s| {
        !s.fenced && all_phase(s, 2, ContainerPhase::Running)
    })
    .await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_newer_epoch_makes_the_agent_drop_moved_containers() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    let ids = assign_n(&server, "epoch", 3);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "running", |s| {
        all_phase(s, 3, ContainerPhase::Running) && s.epoch == 1
    })
    .await;
    // The server declared the host down (epoch 2), moved ids[0] away and
    // re-placed ids[1] here under the new epoch.
    let net = network();
    let t = template("jdos-busybox:latest", &["sleep", "3600"]);
    server.with(|s| {
        s.epoch = 2;
        s.items.remove(&ids[0]);
        s.items.insert(
            ids[1].clone(),
            assignment(ids[1].clone(), HOST, 2, &net, 11, &t),
        );
        s.revision += 1;
    });
    wait_status(&mut a.status, 10, "epoch 2 converged", |s| {
        s.epoch == 2
            && all_phase(s, 2, ContainerPhase::Running)
            && s.reports.iter().any(|r| r.id == ids[1] && r.epoch == 2)
    })
    .await;
    eventually(5, "moved one destroyed", || d.container_count() == 2).await;
    let listed = d.list(&LabelFilter::host(HOST)).await.unwrap();
    let e1 = listed
        .iter()
        .find(|s| s.instance.as_ref() == Some(&ids[1]))
        .unwrap();
    assert_eq!(
        e1.epoch(),
        Some(2),
        "re-placed one recreated under the new epoch"
    );
    let e2 = listed
        .iter()
        .find(|s| s.instance.as_ref() == Some(&ids[2]))
        .unwrap();
    assert_eq!(e2.epoch(), Some(1), "untouched assignment kept");
    a.shutdown().await;
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers_without_duplicates() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    let ids = assign_n(&server, "adopt", 4);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "running", |s| {
        all_phase(s, 4, ContainerPhase::Running)
    })
    .await;
    a.shutdown().await;
    let (creates, starts, destroys) = (
        d.calls(FakeOp::Create),
        d.calls(FakeOp::Start),
        d.calls(FakeOp::Destroy),
    );
    // While it was away, one crashed.
    d.crash(&ids[3], 2).unwrap();
    let mut b = start(d.clone(), server.clone());
    wait_status(&mut b.status, 10, "adopted", |s| {
        s.passes + s.quiet_passes >= 3 && all_phase(s, 4, ContainerPhase::Running)
    })
    .await;
    assert_eq!(
        d.calls(FakeOp::Create),
        creates,
        "no container created again"
    );
    assert_eq!(d.calls(FakeOp::Destroy), destroys, "none destroyed");
    assert_eq!(
        d.calls(FakeOp::Start),
        starts + 1,
        "only the crashed one started"
    );
    assert_eq!(d.container_count(), 4);
    assert_eq!(server.with(|s| s.registrations), 2);
    // Each registration asks for a full report; none claimed an empty host.
    let fulls = server.with(|s| s.full_sizes.clone());
    assert!(
        fulls.len() >= 2 && fulls.iter().all(|n| *n == 4),
        "{fulls:?}"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn registers_again_when_the_server_forgets_the_host() {
    let d = Arc::new(FakeDriver::new());
    let server = TestServer::new(HOST);
    assign_n(&server, "forget", 1);
    let mut a = start(d.clone(), server.clone());
    wait_status(&mut a.status, 10, "running", |s| {
        all_phase(s, 1, ContainerPhase::Running)
    })
    .await;
    server.with(|s| s.forget = true);
    eventually(5, "registered again", || {
        server.with(|s| s.registrations) == 2
    })
    .await;
    assert_eq!(running_ids(&d).await.len(), 1);
    a.shutdown().await;
}
