//! The agent on the real Docker engine (image `jdos-busybox:latest`, built
//! by `scripts/build-test-image.sh`): three busybox httpd containers on a
//! bridge network with static IPs and http health checks; one is killed with
//! `docker kill` and restarted in place; a restarted agent adopts all three
//! without creating any again; a resources-only change is applied live
//! (same container, new cgroup limits).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jdos_agent::{Agent, AgentConfig, AgentStatus};
use jdos_runtime::{BackoffPolicy, DockerConfig, DockerDriver, Driver, LabelFilter, RuntimeState};
use jdos_types::resources::{GIB, MIB};
use jdos_types::workload::{HealthCheck, Probe};
use jdos_types::{ContainerPhase, Network, Resources};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const HOST: &str = "agentdk-h1";
const IMAGE: &str = "jdos-busybox:latest";

fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run build-test-image.sh");
        assert!(
            out.status.success(),
            "scripts/build-test-image.sh failed (this test needs the Docker engine): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Removes this test's containers and network (now, for leftovers of a
/// killed run, and when dropped).
struct Cleanup;

impl Cleanup {
    fn run() {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label=jdos.host={HOST}")]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", "jdos-agentdk"]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        Cleanup::run();
    }
}

fn net() -> Network {
    Network {
        name: "agentdk".into(),
        vlan: 171,
        subnet: "10.213.171.0/24".parse().unwrap(),
        gateway: "10.213.171.1".parse().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

async fn driver() -> DockerDriver {
    DockerDriver::connect(DockerConfig {
        // Scoped names, as when several agents share one engine.
        name_scope: Some(HOST.into()),
        ..DockerConfig::default()
    })
    .await
    .expect("docker engine")
}

fn start(
    d: Arc<DockerDriver>,
    server: Arc<TestServer>,
) -> (
    watch::Receiver<AgentStatus>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), jdos_agent::AgentError>>,
) {
    let mut c = AgentConfig::new(HOST, "dc1", "sw1", "rack1", Resources::new(4000, 8 * GIB));
    c.backoff = BackoffPolicy {
        initial_ms: 200,
        max_ms: 1000,
        multiplier: 2,
        reset_after_ms: 60_000,
        migrate_after: 5,
    };
    c.resync_interval = Duration::from_millis(500);
    let agent = Agent::new(c);
    let status = agent.status();
    let (stop, shutdown) = watch::channel(false);
    (status, stop, tokio::spawn(agent.run(d, server, shutdown)))
}

/// `docker inspect` name → (container id, IP on the test network).
fn inspect_all() -> BTreeMap<String, (String, String)> {
    let ids = docker(&["ps", "-aq", "--filter", &format!("label=jdos.host={HOST}")]);
    ids.split_whitespace()
        .map(|id| {
            let out = docker(&[
                "inspect",
                "-f",
                "{{.Name}} {{.Id}} {{(index .NetworkSettings.Networks \"jdos-agentdk\").IPAddress}}",
                id,
            ]);
            let mut p = out.split_whitespace().map(str::to_string);
            let name = p.next().unwrap_or_default().trim_start_matches('/').to_string();
            (name, (p.next().unwrap_or_default(), p.next().unwrap_or_default()))
        })
        .collect()
}

async fn http_get(ip: &str) -> String {
    let mut s = tokio::net::TcpStream::connect((ip, 80))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_restarts_and_adopts_busybox_httpd_on_docker() {
    ensure_image();
    Cleanup::run();
    let _cleanup = Cleanup;
    let net = net();
    let mut t = template(IMAGE, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    t.ports = vec![80];
    let mut check = HealthCheck::new(Probe::Http {
        port: 80,
        path: "/".into(),
    });
    check.interval_ms = 300;
    check.timeout_ms = 200;
    t.health = Some(check);
    let ids: Vec<_> = (0..3).map(|i| id("agentdk", i)).collect();
    let server = TestServer::new(HOST);
    server.assign(
        ids.iter()
            .enumerate()
            .map(|(i, id)| assignment(id.clone(), HOST, 1, &net, 10 + i as u8, &t)),
    );

    let d = Arc::new(driver().await);
    let (mut status, stop, task) = start(d.clone(), server.clone());
    let all_running = |s: &AgentStatus| {
        s.reports.len() == 3 && s.reports.iter().all(|r| r.phase == ContainerPhase::Running)
    };
    wait_status(&mut status, 60, "3 healthy httpd", all_running).await;
    let first = inspect_all();
    assert_eq!(first.len(), 3, "{first:?}");
    let ips: Vec<&str> = first.values().map(|(_, ip)| ip.as_str()).collect();
    assert_eq!(ips, ["10.213.171.10", "10.213.171.11", "10.213.171.12"]);
    assert!(
        first.contains_key("jdos-agentdk-test-web-1.agentdk-h1"),
        "{first:?}"
    );
    let reply = http_get("10.213.171.11").await;
    assert!(reply.starts_with("HTTP/1."), "httpd answers: {reply}");

    // docker kill → the agent learns at once (wait) and starts it again in
    // place after the back-off.
    docker(&["kill", "jdos-agentdk-test-web-1.agentdk-h1"]);
    wait_status(&mut status, 30, "restart after docker kill", |s| {
        all_running(s) && s.reports.iter().any(|r| r.id == ids[1] && r.restarts == 1)
    })
    .await;
    let after_kill = inspect_all();
    assert_eq!(
        after_kill, first,
        "same containers (restarted in place), same IPs"
    );

    // Agent restart: adopts, creates nothing, restarts nothing.
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let (mut status, stop, task) = start(Arc::new(driver().await), server.clone());
    wait_status(&mut status, 30, "adopted", |s| {
        s.passes >= 3 && all_running(s)
    })
    .await;
    assert_eq!(inspect_all(), first, "no duplicates, nothing recreated");
    let listed = d.list(&LabelFilter::host(HOST)).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|s| s.state == RuntimeState::Running));

    // A resources-only change is applied live: same container, new limits.
    let name = "jdos-agentdk-test-web-2.agentdk-h1";
    let limits = || {
        docker(&[
            "inspect",
            "-f",
            "{{.Id}} {{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.State.StartedAt}}",
            name,
        ])
    };
    let before = limits();
    assert!(before.contains(&format!(" {} ", 32 * MIB)), "{before}");
    server.with(|s| {
        let a = s.items.get_mut(&ids[2]).unwrap();
        a.container.resources = Resources::new(250, 48 * MIB);
        a.template.resources = a.container.resources;
        s.revision += 1;
    });
    let want_mem = (48 * MIB).to_string();
    eventually(30, "memory limit updated live", || {
        limits().split_whitespace().nth(1) == Some(want_mem.as_str())
    })
    .await;
    let after: Vec<String> = limits().split_whitespace().map(str::to_string).collect();
    let before: Vec<&str> = before.split_whitespace().collect();
    assert_eq!(after[0], before[0], "same container id");
    assert_eq!(after[0], first[name].0);
    assert_ne!(after[2], before[2], "cpu shares too");
    assert_eq!(after[3], before[3], "not restarted");
    // It stays that way: no recreate on later passes.
    let passes = status.borrow().passes;
    wait_status(&mut status, 30, "more passes", |s| s.passes >= passes + 3).await;
    assert_eq!(
        inspect_all(),
        first,
        "nothing recreated after the live update"
    );
    assert_eq!(server.report(&ids[2]).map(|r| r.restarts), Some(0));

    // Deleting one through its assignment removes it.
    server.set_desired(&ids[0], jdos_types::container::DesiredState::Deleted);
    wait_status(&mut status, 30, "gone", |s| {
        s.reports.iter().any(|r| r.id == ids[0] && r.gone)
    })
    .await;
    assert_eq!(inspect_all().len(), 2);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
