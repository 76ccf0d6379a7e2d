//! Snapshot scale-out on the real Docker engine (image `jdos-busybox:latest`
//! from `scripts/build-test-image.sh`): a server, two real agents sharing
//! the engine, one busybox httpd container; a file written into it is in
//! both clones `snapshot_scale` makes, served by their httpd on their own
//! IPs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_agent::{Agent, AgentConfig, HttpControlPlane};
use jdos_runtime::{DockerConfig, DockerDriver};
use jdos_server::ops::{DeployParams, SnapshotScaleParams};
use jdos_server::ServerConfig;
use jdos_store::json;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::{GIB, MIB};
use jdos_types::workload::{HealthCheck, Probe};
use jdos_types::{keys, App, BusinessLevel, Container, Group, Network, Resources, TaskState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JOIN: &str = "join.snapd-secret";
const HOSTS: [&str; 2] = ["snapd-h1", "snapd-h2"];

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Removes this test's containers, network and snapshot images (now, for
/// leftovers of a killed run, and when dropped).
struct Cleanup;

impl Cleanup {
    fn run() {
        for h in HOSTS {
            let ids = docker(&["ps", "-aq", "--filter", &format!("label=jdos.host={h}")]);
            for id in ids.split_whitespace() {
                docker(&["rm", "-f", id]);
            }
        }
        docker(&["network", "rm", "jdos-snapd"]);
        let images = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "jdos-snapshot/snapd-web",
        ]);
        for i in images.split_whitespace() {
            docker(&["rmi", "-f", i]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        Cleanup::run();
    }
}

fn ensure_image() {
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
}

async fn http_get(ip: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect((ip, 80))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_snapshot_have_the_file_written_into_the_source() {
    ensure_image();
    Cleanup::run();
    let _cleanup = Cleanup;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    config.store_url = Some("memory://".into());
    config.join_token = Some(JOIN.into());
    let server = jdos_server::start(config).await.unwrap();
    let st = server.state().clone();
    st.ipam()
        .create_network(Network {
            name: "snapd".into(),
            vlan: 181,
            subnet: "10.213.181.0/24".parse().unwrap(),
            gateway: "10.213.181.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec!["sw1".into()],
            quarantine_secs: 300,
        })
        .await
        .unwrap();
    let app = App {
        name: "snapd".into(),
        owner: "alice".into(),
        department: "retail".into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: Default::default(),
        created_at_ms: 0,
    };
    st.store()
        .put(&keys::app("snapd"), json::encode(&app).unwrap(), None)
        .await
        .unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    for (i, name) in HOSTS.into_iter().enumerate() {
        let mut cfg = AgentConfig::new(
            name,
            "dc1",
            "sw1",
            &format!("sw1-r{i}"),
            Resources::new(4000, 8 * GIB),
        );
        cfg.resync_interval = Duration::from_millis(300);
        let driver = Arc::new(
            DockerDriver::connect(DockerConfig {
                name_scope: Some(name.into()),
                ..DockerConfig::default()
            })
            .await
            .expect("docker engine"),
        );
        let control = Arc::new(HttpControlPlane::new(&server.url(), JOIN).unwrap());
        let shutdown = shutdown.clone();
        tokio::spawn(async move { Agent::new(cfg).run(driver, control, shutdown).await });
    }
    let mut check = HealthCheck::new(Probe::Http {
        port: 80,
        path: "/".into(),
    });
    check.interval_ms = 300;
    check.timeout_ms = 200;
    let g = Group {
        app: "snapd".into(),
        env: "production".into(),
        name: "web".into(),
        datacenter: "dc1".into(),
        replicas: 1,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            command: ["httpd", "-f", "-p", "80", "-h", "/www"]
                .map(String::from)
                .to_vec(),
            resources: Resources::new(100, 32 * MIB),
            ports: vec![80],
            health: Some(check),
            stop_grace_secs: Some(1),
            ..Default::default()
        },
        // The clones share the source's host.
        placement: jdos_types::group::Placement {
            max_per_host: Some(3),
            ..Default::default()
        },
        autoscaling: None,
    };
    st.store()
        .put(&keys::group(&g.key()), json::encode(&g).unwrap(), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while json::list_all::<jdos_types::Host>(st.store(), keys::HOSTS)
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "agents did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let engine = st.require_engine().unwrap().clone();
    let run = |req: jdos_workflow::NewTask| {
        let engine = engine.clone();
        async move {
            let mut req = req;
            req.department = Some("retail".into());
            let t = engine.submit(req).await.unwrap();
            engine.wait(&t.id, Duration::from_secs(120)).await.unwrap()
        }
    };
    let t = run(DeployParams {
        group: g.key(),
        timeout_secs: Some(60),
    }
    .task("alice"))
    .await;
    assert_eq!(t.state, TaskState::Succeeded, "{}: {:#?}", t.error, t.steps);
    let src: Vec<Container> = json::list_all(st.store(), &keys::containers_of_group(&g.key()))
        .await
        .unwrap();
    let src_host = src[0].host.clone().unwrap();
    let src_name = format!("jdos-snapd-production-web-0.{src_host}");
    let wrote = Command::new("docker")
        .args([
            "exec",
            &src_name,
            "sh",
            "-c",
            "echo snapshot-42 > /www/snap.txt",
        ])
        .status()
        .unwrap();
    assert!(wrote.success(), "docker exec into {src_name}");

    let t = run(SnapshotScaleParams {
        group: g.key(),
        replicas: 3,
        source_index: Some(0),
        any_host: false,
        timeout_secs: Some(60),
    }
    .task("alice"))
    .await;
    assert_eq!(t.state, TaskState::Succeeded, "{}: {:#?}", t.error, t.steps);
    let reference = format!("jdos-snapshot/snapd-web:{}", t.id);
    let all: Vec<Container> = json::list_all(st.store(), &keys::containers_of_group(&g.key()))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    for c in all.iter().filter(|c| c.id.index > 0) {
        let name = format!("jdos-snapd-production-web-{}.{}", c.id.index, src_host);
        assert_eq!(
            c.host.as_deref(),
            Some(src_host.as_str()),
            "pinned to the source's host"
        );
        assert_eq!(
            docker(&["inspect", "-f", "{{.Config.Image}}", &name]),
            reference
        );
        assert_eq!(
            docker(&["exec", &name, "cat", "/www/snap.txt"]),
            "snapshot-42"
        );
        let ip = c.ip.unwrap().to_string();
        assert_ne!(ip, src[0].ip.unwrap().to_string());
        let reply = http_get(&ip, "/snap.txt").await;
        assert!(
            reply.starts_with("HTTP/1.") && reply.contains("snapshot-42"),
            "{ip}: {reply}"
        );
    }
    // The source is untouched: same image, still running.
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Config.Image}} {{.State.Running}}",
            &src_name
        ]),
        "jdos-busybox:latest true"
    );
}
