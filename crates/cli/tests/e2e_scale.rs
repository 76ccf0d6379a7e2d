//! The Docker target, end to end on this machine's engine: a server
//! (in this process) and three `jdos agent` processes (`--driver docker
//! --shared-engine`); a group of 20 busybox httpd replicas (the
//! `examples/web.yaml` template) is deployed and reaches all-healthy, each
//! replica answers HTTP on its own IP (from this host, over the Docker
//! bridge: traffic only to our own containers); scaled to 40 and back to 20,
//! every survivor keeps its container and IP (`docker inspect`).
//!
//! Deploy and scale are submitted as the API's scale route does (a task of
//! the server's workflow engine); `jdos net create` and `jdos get
//! containers` go through the binary.
//!
//! Every name carries the test name and the process id; containers,
//! networks, processes and files are removed even when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JDOS: &str = env!("CARGO_BIN_EXE_jdos");
const IMAGE: &str = "jdos-busybox:latest";

fn docker_available() -> bool {
    Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One container as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    docker_id: String,
    instance: String,
    ip: String,
    running: bool,
}

struct Cluster {
    tag: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    server: Option<jdos_server::ServerHandle>,
    agents: Vec<Child>,
    addr: String,
    token: String,
}

impl Cluster {
    fn start(test: &str, agents: u32) -> Cluster {
        let tag = format!("{test}{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = jdos_server::ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join("server"),
        );
        let server = rt
            .block_on(jdos_server::start(config))
            .expect("start the server");
        let join = server.join_token.clone();
        let mut c = Cluster {
            tag,
            addr: server.url(),
            token: server.admin_token.clone().expect("first start"),
            dir,
            rt,
            server: Some(server),
            agents: Vec::new(),
        };
        for i in 0..agents {
            let name = format!("{}-h{i}", c.tag);
            let root = c.dir.path().join(&name);
            std::fs::create_dir_all(root.join("l1")).unwrap();
            std::fs::create_dir_all(root.join("l2")).unwrap();
            let log = std::fs::File::create(c.dir.path().join(format!("{name}.log"))).unwrap();
            let child = Command::new(JDOS)
                .args(["agent", "--server", &c.addr, "--join-token", &join])
                .args(["--name", &name, "--datacenter", &c.tag, "--switch", "sw1"])
                .args([
                    "--rack",
                    &format!("r{i}"),
                    "--driver",
                    "docker",
                    "--shared-engine",
                ])
                .args(["--cpu", "8", "--memory", "8GiB"])
                .arg("--l1-root")
                .arg(root.join("l1"))
                .arg("--l2-root")
                .arg(root.join("l2"))
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn jdos agent");
            c.agents.push(child);
        }
        c.wait("the agents to register", Duration::from_secs(60), || {
            let out = c.jdos(&["get", "hosts", "-o", "json"]).ok()?;
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            let ready = v
                .as_array()
                .or_else(|| v["items"].as_array())?
                .iter()
                .filter(|h| h["state"] == "ready" && h["datacenter"] == c.tag.as_str())
                .count();
            (ready == agents as usize).then_some(())
        });
        c
    }

    fn jdos(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(JDOS)
            .args(args)
            .env("JDOS_ADDR", &self.addr)
            .env("JDOS_TOKEN", &self.token)
            .env("JDOS_CONFIG", self.dir.path().join("config.json"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "jdos {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn network(&self) -> String {
        format!("{}-net", self.tag)
    }

    fn group(&self) -> jdos_types::Group {
        let mut check = jdos_types::workload::HealthCheck::new(jdos_types::workload::Probe::Http {
            port: 80,
            path: "/".into(),
        });
        check.interval_ms = 1000;
        check.timeout_ms = 500;
        jdos_types::Group {
            app: self.tag.clone(),
            env: "production".into(),
            name: "web".into(),
            datacenter: self.tag.clone(),
            replicas: 0,
            // examples/web.yaml's template, on this test's network.
            template: jdos_types::group::ContainerTemplate {
                image: IMAGE.into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www".into(),
                ],
                resources: jdos_types::Resources::new(100, 32 << 20),
                ports: vec![80],
                network: Some(self.network()),
                health: Some(check),
                stop_grace_secs: Some(2),
                ..Default::default()
            },
            placement: jdos_types::group::Placement {
                max_per_host: Some(16),
                ..Default::default()
            },
            autoscaling: None,
        }
    }

    /// Runs a scale task to `replicas` as `POST …/scale` submits it.
    fn scale(&self, replicas: u32) -> jdos_types::Task {
        let st = self.server.as_ref().unwrap().state().clone();
        let group = self.group();
        self.rt.block_on(async {
            let engine = st.require_engine().unwrap().clone();
            let mut req = jdos_server::ops::ScaleParams {
                group: group.key(),
                replicas,
                timeout_secs: Some(240),
            }
            .task("e2e");
            req.department = Some("e2e".into());
            let t = engine.submit(req).await.unwrap();
            engine.wait(&t.id, Duration::from_secs(300)).await.unwrap()
        })
    }

    fn setup(&self, net: u8) {
        let octet = 16 + std::process::id() % 200;
        let vlan = (3000 + std::process::id() % 1000).to_string();
        let subnet = format!("10.{net}.{octet}.0/24");
        self.jdos(&[
            "net",
            "create",
            &self.network(),
            "--vlan",
            &vlan,
            "--subnet",
            &subnet,
            "--switch",
            "sw1",
        ])
        .unwrap();
        let st = self.server.as_ref().unwrap().state().clone();
        let app = jdos_types::App {
            name: self.tag.clone(),
            owner: "e2e".into(),
            department: "e2e".into(),
            business_level: Default::default(),
            description: String::new(),
            labels: Default::default(),
            created_at_ms: 0,
        };
        let group = self.group();
        self.rt.block_on(async {
            for (k, v) in [
                (
                    jdos_types::keys::app(&app.name),
                    serde_json::to_vec(&app).unwrap(),
                ),
                (
                    jdos_types::keys::group(&group.key()),
                    serde_json::to_vec(&group).unwrap(),
                ),
            ] {
                st.store().put(&k, v, None).await.unwrap();
            }
        });
    }

    /// Every container of the cluster's app, by instance, from `docker inspect`.
    fn inspect(&self) -> BTreeMap<String, Seen> {
        let filter = format!("label=jdos.app={}", self.tag);
        let Ok(ids) = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]) else {
            return BTreeMap::new();
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return BTreeMap::new();
        }
        let mut args = vec!["inspect"];
        args.extend(&ids);
        let Ok(out) = docker(&args) else {
            return self.inspect();
        };
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let instance = c["Config"]["Labels"]["jdos.instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let seen = Seen {
                    docker_id: c["Id"].as_str().unwrap().to_string(),
                    instance: instance.clone(),
                    ip: c["NetworkSettings"]["Networks"]
                        .as_object()
                        .and_then(|n| {
                            n.values()
                                .filter_map(|x| x["IPAddress"].as_str())
                                .find(|ip| !ip.is_empty())
                        })
                        .unwrap_or_default()
                        .to_string(),
                    running: c["State"]["Running"].as_bool().unwrap_or(false),
                };
                (instance, seen)
            })
            .collect()
    }

    fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {} s waiting for {what}",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.agents {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
        let filter = format!("label=jdos.app={}", self.tag);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(&ids);
                let _ = docker(&args);
            }
        }
        let nf = format!("label=jdos.network={}", self.network());
        if let Ok(ids) = docker(&["network", "ls", "-q", "--filter", &nf]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["network", "rm", id]);
            }
        }
    }
}

/// `GET /` on `ip:80` with a plain HTTP/1.0 request.
fn http_get(ip: &str) -> Result<String, String> {
    let addr = format!("{ip}:80")
        .parse()
        .map_err(|e| format!("{ip}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{ip}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Every running container answers on its own IP with its own page.
fn assert_each_answers_on_its_own_ip(seen: &BTreeMap<String, Seen>) {
    let ips: BTreeSet<&str> = seen.values().map(|s| s.ip.as_str()).collect();
    assert_eq!(ips.len(), seen.len(), "one IP each: {seen:#?}");
    let mut pages = BTreeSet::new();
    for s in seen.values() {
        let reply = http_get(&s.ip).unwrap();
        assert!(
            reply.starts_with("HTTP/1.") && reply.contains("hello from "),
            "{} on {}: {reply}",
            s.instance,
            s.ip
        );
        pages.insert(reply.lines().last().unwrap_or_default().to_string());
    }
    assert_eq!(pages.len(), seen.len(), "each page names its own container");
}

#[test]
fn twenty_httpd_replicas_answer_on_their_ips_and_keep_them_through_40_and_back() {
    if !docker_available() {
        eprintln!("skipped: no Docker engine with {IMAGE} (scripts/build-test-image.sh)");
        return;
    }
    let c = Cluster::start("e2esc", 3);
    c.setup(234);
    let t0 = Instant::now();
    let t = c.scale(20);
    assert_eq!(
        t.state,
        jdos_types::TaskState::Succeeded,
        "{}: {:#?}",
        t.error,
        t.steps
    );
    let healthy_after = t0.elapsed();
    // The server's records say running (healthy: the agents probe HTTP).
    let out = c
        .jdos(&["get", "containers", "--app", &c.tag, "-o", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let records = v
        .as_array()
        .or_else(|| v["items"].as_array())
        .unwrap()
        .clone();
    assert_eq!(records.len(), 20);
    assert!(
        records.iter().all(|r| r["phase"] == "running"),
        "{records:#?}"
    );
    let at20 = c.inspect();
    assert_eq!(at20.len(), 20);
    assert!(at20.values().all(|s| s.running));
    for r in &records {
        let i: jdos_types::InstanceId = serde_json::from_value(r["id"].clone()).unwrap();
        let id = i.to_string();
        assert_eq!(
            r["ip"].as_str(),
            Some(at20[&id].ip.as_str()),
            "record and engine agree on {id}"
        );
    }
    assert_each_answers_on_its_own_ip(&at20);

    let t1 = Instant::now();
    let t = c.scale(40);
    assert_eq!(
        t.state,
        jdos_types::TaskState::Succeeded,
        "{}: {:#?}",
        t.error,
        t.steps
    );
    let out_after = t1.elapsed();
    let at40 = c.inspect();
    assert_eq!(at40.len(), 40);
    for (id, s) in &at20 {
        assert_eq!(at40.get(id), Some(s), "{id} untouched by the scale-out");
    }
    assert_each_answers_on_its_own_ip(&at40);

    let t2 = Instant::now();
    let t = c.scale(20);
    assert_eq!(
        t.state,
        jdos_types::TaskState::Succeeded,
        "{}: {:#?}",
        t.error,
        t.steps
    );
    let in_after = t2.elapsed();
    let back = c.wait("20 containers left", Duration::from_secs(60), || {
        let s = c.inspect();
        (s.len() == 20).then_some(s)
    });
    for (id, s) in &back {
        assert_eq!(
            at40.get(id),
            Some(s),
            "survivor {id} kept its container and IP"
        );
    }
    assert_each_answers_on_its_own_ip(&back);
    eprintln!(
        "e2e_scale: 20 healthy in {:.1} s, 20→40 in {:.1} s, 40→20 in {:.1} s",
        healthy_after.as_secs_f64(),
        out_after.as_secs_f64(),
        in_after.as_secs_f64()
    );
}
