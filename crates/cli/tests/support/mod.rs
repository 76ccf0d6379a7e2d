//! What the Docker end-to-end tests share: a [`Cluster`] of an in-process
//! server and `jdos agent` processes on this machine's engine, `docker`
//! helpers and the engine's view of the containers ([`Seen`]). Every name
//! carries the test name and the process id; containers, networks,
//! processes and files are removed on drop, even when an assertion fails.
// Each test binary uses its own part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const JDOS: &str = env!("CARGO_BIN_EXE_jdos");
pub const IMAGE: &str = "jdos-busybox:latest";

pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn docker(args: &[&str]) -> Result<String, String> {
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
pub struct Seen {
    pub docker_id: String,
    pub instance: String,
    pub host: String,
    pub ip: String,
    pub running: bool,
}

/// A server, its agents, and everything they create: torn down on drop.
pub struct Cluster {
    pub tag: String,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub server: Option<jdos_server::ServerHandle>,
    pub agents: BTreeMap<String, Child>,
    pub addr: String,
    pub token: String,
    pub join_token: String,
}

impl Cluster {
    pub fn start(test: &str, agents: u32) -> Cluster {
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
        let mut c = Cluster {
            tag,
            addr: server.url(),
            token: server.admin_token.clone().expect("first start"),
            join_token: server.join_token.clone(),
            dir,
            rt,
            server: Some(server),
            agents: BTreeMap::new(),
        };
        for i in 0..agents {
            c.start_agent(i);
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

    pub fn agent_name(&self, i: u32) -> String {
        format!("{}-h{i}", self.tag)
    }

    pub fn start_agent(&mut self, i: u32) {
        let name = self.agent_name(i);
        let root = self.dir.path().join(&name);
        std::fs::create_dir_all(root.join("l1")).unwrap();
        std::fs::create_dir_all(root.join("l2")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log(&name))
            .unwrap();
        let child = Command::new(JDOS)
            .args([
                "agent",
                "--server",
                &self.addr,
                "--join-token",
                &self.join_token,
            ])
            .args([
                "--name",
                &name,
                "--datacenter",
                &self.tag,
                "--switch",
                "sw1",
            ])
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
            // Appended across restarts; shown when a wait times out.
            .stderr(log)
            .spawn()
            .expect("spawn jdos agent");
        self.agents.insert(name, child);
    }

    pub fn agent_log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The last lines of every agent's log (for a failed wait).
    pub fn agent_logs(&self) -> String {
        let mut out = String::new();
        for i in 0.. {
            let name = self.agent_name(i);
            let Ok(log) = std::fs::read_to_string(self.agent_log(&name)) else {
                break;
            };
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("--- {name} (last 40 lines)\n");
            for l in &lines[lines.len().saturating_sub(40)..] {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    /// SIGKILL, as a power loss: no chance to stop anything.
    pub fn kill_agent(&mut self, name: &str) {
        let mut c = self.agents.remove(name).expect("agent running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Runs `jdos ARGS` against the cluster; stdout, or stderr as the error.
    pub fn jdos(&self, args: &[&str]) -> Result<String, String> {
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

    pub fn network(&self) -> String {
        format!("{}-net", self.tag)
    }

    /// Creates the cluster's network `10.<net>.x.0/24` on `sw1` with
    /// `jdos net create`. Each test passes its own `net` (and `vlan_base`):
    /// the e2e tests run at once on one engine, which refuses a second
    /// network over a subnet in use (the agents would retry until the other
    /// test removed its own).
    pub fn create_network(&self, net: u8, vlan_base: u32) {
        let octet = 16 + std::process::id() % 200;
        let vlan = (vlan_base + std::process::id() % 1000).to_string();
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
    }

    /// Writes the cluster's app (named after the tag) and `group` records.
    pub fn put_app_and_group(&self, group: &jdos_types::Group) {
        let st = self.state();
        let app = jdos_types::App {
            name: self.tag.clone(),
            owner: "e2e".into(),
            department: "e2e".into(),
            business_level: Default::default(),
            description: String::new(),
            labels: Default::default(),
            created_at_ms: 0,
        };
        self.rt.block_on(async {
            for (k, v) in [
                (
                    jdos_types::keys::app(&app.name),
                    serde_json::to_vec(&app).unwrap(),
                ),
                (
                    jdos_types::keys::group(&group.key()),
                    serde_json::to_vec(group).unwrap(),
                ),
            ] {
                st.store().put(&k, v, None).await.unwrap();
            }
        });
    }

    /// The in-process server's state.
    pub fn state(&self) -> jdos_server::AppState {
        self.server.as_ref().unwrap().state().clone()
    }

    /// Every container of the cluster's app by instance, from `docker inspect`.
    pub fn inspect_by_instance(&self) -> BTreeMap<String, Seen> {
        self.inspect()
            .into_iter()
            .map(|s| (s.instance.clone(), s))
            .collect()
    }

    /// Every container of the cluster's app, from `docker inspect`.
    pub fn inspect(&self) -> Vec<Seen> {
        let filter = format!("label=jdos.app={}", self.tag);
        let Ok(ids) = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]) else {
            return Vec::new();
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["inspect"];
        args.extend(&ids);
        // A container removed between ps and inspect fails the inspect.
        let Ok(out) = docker(&args) else {
            return self.inspect();
        };
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let label = |k: &str| {
                    c["Config"]["Labels"][k]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                };
                Seen {
                    docker_id: c["Id"].as_str().unwrap().to_string(),
                    instance: label("jdos.instance"),
                    host: label("jdos.host"),
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
                }
            })
            .collect()
    }

    pub fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {} s waiting for {what}; containers: {:#?}\nagent logs:\n{}",
                timeout.as_secs(),
                self.inspect(),
                self.agent_logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.agents) {
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
