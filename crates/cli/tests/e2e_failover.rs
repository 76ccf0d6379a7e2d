//! End to end on this machine's Docker engine: the server (in this process:
//! no deploy API exists yet, so the group is placed and published through
//! its platform layer, as a deploy task does) and three `jdos agent`
//! processes (`--driver docker --shared-engine`), then a host's power loss
//! (SIGKILL of its agent *and* `docker kill` of its containers): every
//! container of the lost host runs on another host with its original IP
//! (from `docker inspect`), no IP is held twice, and the restarted agent
//! destroys its stale copies and resurrects none; and `jdos drain host
//! --wait`: every container moves off the host with its IP (stopped there
//! before it starts elsewhere), the host ends ready and cordoned.
//!
//! Every name carries the test name and the process id; containers,
//! networks, processes and files are removed even when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
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
    host: String,
    ip: String,
    running: bool,
}

/// A server, its agents, and everything they create: torn down on drop.
struct Cluster {
    tag: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    server: Option<jdos_server::ServerHandle>,
    agents: BTreeMap<String, Child>,
    addr: String,
    token: String,
    join_token: String,
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

    fn agent_name(&self, i: u32) -> String {
        format!("{}-h{i}", self.tag)
    }

    fn start_agent(&mut self, i: u32) {
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

    fn agent_log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The last lines of every agent's log (for a failed wait).
    fn agent_logs(&self) -> String {
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
    fn kill_agent(&mut self, name: &str) {
        let mut c = self.agents.remove(name).expect("agent running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Runs `jdos ARGS` against the cluster; stdout, or stderr as the error.
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

    /// A network `10.<net>.x.0/24` on `sw1` and one group of `n` sleepers
    /// spread over the hosts, placed and published through the platform
    /// layer. Each test passes its own `net`: the tests of this file run at
    /// once on one engine, which refuses a second network over a subnet in
    /// use (the agents would retry until the other test removed its own).
    fn deploy(&self, net: u8, n: u32, max_per_host: u32) {
        let octet = 16 + std::process::id() % 200;
        let vlan = (2000 + std::process::id() % 1000).to_string();
        let subnet = format!("10.{net}.{octet}.0/24");
        let net = self.network();
        self.jdos(&[
            "net", "create", &net, "--vlan", &vlan, "--subnet", &subnet, "--switch", "sw1",
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
        let group = jdos_types::Group {
            app: self.tag.clone(),
            env: "e2e".into(),
            name: "sleepers".into(),
            datacenter: self.tag.clone(),
            replicas: n,
            template: jdos_types::group::ContainerTemplate {
                image: IMAGE.into(),
                command: vec!["sleep".into(), "100000".into()],
                resources: jdos_types::Resources::new(100, 16 << 20),
                network: Some(net.clone()),
                stop_grace_secs: Some(1),
                ..Default::default()
            },
            placement: jdos_types::group::Placement {
                max_per_host: Some(max_per_host),
                ..Default::default()
            },
            autoscaling: None,
        };
        self.rt.block_on(async {
            st.store()
                .put(
                    &jdos_types::keys::app(&app.name),
                    serde_json::to_vec(&app).unwrap(),
                    None,
                )
                .await
                .unwrap();
            st.store()
                .put(
                    &jdos_types::keys::group(&group.key()),
                    serde_json::to_vec(&group).unwrap(),
                    None,
                )
                .await
                .unwrap();
            let placed = st.platform().place_missing(&group, n).await.unwrap();
            let ids: Vec<_> = placed.iter().map(|c| c.id.clone()).collect();
            st.platform().publish(&group, &ids).await.unwrap();
        });
        self.wait("every container running", Duration::from_secs(120), || {
            let seen = self.inspect();
            (seen.iter().filter(|s| s.running).count() == n as usize).then_some(())
        });
    }

    /// Every container of the cluster's app, from `docker inspect`.
    fn inspect(&self) -> Vec<Seen> {
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

    fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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

/// Running containers by IP: no IP may be held twice.
fn assert_no_duplicate_ips(seen: &[Seen]) {
    let mut by_ip: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.running) {
        by_ip.entry(&s.ip).or_default().push(&s.instance);
    }
    for (ip, who) in by_ip {
        assert_eq!(who.len(), 1, "IP {ip} held by {who:?}");
    }
}

#[test]
fn a_lost_host_s_containers_run_elsewhere_with_their_ips_and_do_not_come_back() {
    if !docker_available() {
        eprintln!("skipped: no Docker engine with {IMAGE} (scripts/build-test-image.sh)");
        return;
    }
    let mut c = Cluster::start("e2efo", 3);
    c.deploy(232, 21, 12);
    let all = c.inspect();
    assert_no_duplicate_ips(&all);
    let victim = c.agent_name(1);
    let before: Vec<Seen> = all.into_iter().filter(|s| s.host == victim).collect();
    assert!(
        before.len() >= 5,
        "the spread puts about a third on {victim}: {before:?}"
    );

    // Power loss.
    let t0 = Instant::now();
    c.kill_agent(&victim);
    let mut kill = vec!["kill"];
    kill.extend(before.iter().map(|s| s.docker_id.as_str()));
    docker(&kill).unwrap();

    let want: BTreeMap<&str, &str> = before
        .iter()
        .map(|s| (s.instance.as_str(), s.ip.as_str()))
        .collect();
    c.wait(
        "the lost containers running elsewhere with their IPs",
        Duration::from_secs(60),
        || {
            let seen = c.inspect();
            want.iter()
                .all(|(id, ip)| {
                    seen.iter()
                        .any(|s| s.running && s.instance == *id && s.host != victim && s.ip == *ip)
                })
                .then_some(())
        },
    );
    eprintln!(
        "{} containers of {victim} running elsewhere with their IPs {:.2} s after the kill",
        before.len(),
        t0.elapsed().as_secs_f64()
    );
    let after = c.inspect();
    assert_no_duplicate_ips(&after);
    assert_eq!(after.iter().filter(|s| s.running).count(), 21);

    // The host's agent comes back: it must destroy its stale copies (the
    // killed containers) and start none of the moved ones.
    c.start_agent(1);
    let stale: BTreeSet<&str> = before.iter().map(|s| s.docker_id.as_str()).collect();
    c.wait(
        "the restarted agent to remove its stale copies",
        Duration::from_secs(60),
        || {
            (!c.inspect()
                .iter()
                .any(|s| stale.contains(s.docker_id.as_str())))
            .then_some(())
        },
    );
    // A few heartbeats for it to (wrongly) start anything.
    std::thread::sleep(Duration::from_secs(4));
    let end = c.inspect();
    let resurrected: Vec<&Seen> = end
        .iter()
        .filter(|s| s.host == victim && want.contains_key(s.instance.as_str()))
        .collect();
    assert!(
        resurrected.is_empty(),
        "moved containers back on {victim}: {resurrected:?}"
    );
    assert_no_duplicate_ips(&end);
    let instances: BTreeSet<&str> = end
        .iter()
        .filter(|s| s.running)
        .map(|s| s.instance.as_str())
        .collect();
    assert_eq!(instances.len(), 21, "one running copy of each: {end:#?}");
    let hosts = c.jdos(&["get", "hosts", "-o", "json"]).unwrap();
    assert!(hosts.contains(&victim));
}

#[test]
fn a_drained_host_ends_empty_and_cordoned_with_every_ip_kept() {
    if !docker_available() {
        eprintln!("skipped: no Docker engine with {IMAGE} (scripts/build-test-image.sh)");
        return;
    }
    let c = Cluster::start("e2edr", 3);
    c.deploy(233, 9, 6);
    let all = c.inspect();
    let host = c.agent_name(0);
    let before: BTreeMap<String, String> = all
        .iter()
        .filter(|s| s.host == host)
        .map(|s| (s.instance.clone(), s.ip.clone()))
        .collect();
    assert!(!before.is_empty());
    let out = c
        .jdos(&["drain", "host", &host, "--wait", "--batch", "2"])
        .unwrap();
    assert!(out.contains("drained"), "{out}");
    assert!(
        out.contains(&format!("{} containers moved", before.len())),
        "{out}"
    );
    let end = c.inspect();
    assert_no_duplicate_ips(&end);
    for (id, ip) in &before {
        assert!(
            end.iter()
                .any(|s| s.running && &s.instance == id && &s.ip == ip && s.host != host),
            "{id} not running elsewhere with {ip}: {end:#?}"
        );
    }
    assert!(
        !end.iter().any(|s| s.host == host && s.running),
        "nothing runs on the drained host: {end:#?}"
    );
    let h = c.jdos(&["get", "hosts", "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&h).unwrap();
    let rec = v
        .as_array()
        .or_else(|| v["items"].as_array())
        .unwrap()
        .iter()
        .find(|x| x["name"] == host.as_str())
        .unwrap()
        .clone();
    assert_eq!(rec["state"], "ready");
    assert_eq!(rec["cordoned"], true);
}
