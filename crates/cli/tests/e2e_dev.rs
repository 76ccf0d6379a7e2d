//! End to end: start the real `jdos` binary as `jdos dev`, then drive it with
//! the CLI as a person would, from outside the process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const JDOS: &str = env!("CARGO_BIN_EXE_jdos");

/// A running `jdos dev`, killed when dropped so no test leaves it behind.
struct Dev {
    child: Child,
    addr: String,
    token: String,
    config: PathBuf,
    /// Its stderr (logs at info): shown when a CLI run fails, so a flaky
    /// failure says what the server was doing.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> Dev {
        Dev::start_with(&[])
    }

    /// `jdos dev` with extra flags (e.g. `--driver fake`: the tests that
    /// deploy do not leave containers in a real engine when killed).
    fn start_with(extra: &[&str]) -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let log = dir.path().join("dev.log");
        let mut child = Command::new(JDOS)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .env("JDOS_CONFIG", &config)
            .env_remove("JDOS_ADDR")
            .env_remove("JDOS_TOKEN")
            .env("JDOS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn jdos dev");
        // Read the banner on a thread so a silent child cannot hang the test.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drain to the end even once the banner was read: closing the
            // pipe under a running server is another test's subject.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut dev = Dev {
            child,
            addr: String::new(),
            token: String::new(),
            config,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut banner = Vec::new();
        while dev.addr.is_empty() || dev.token.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("jdos dev printed no address/token; got {banner:?}"));
            if let Some(a) = line.strip_prefix("address: ") {
                dev.addr = a.trim().to_string();
            }
            if let Some(t) = line.strip_prefix("token: ") {
                dev.token = t.trim().to_string();
            }
            banner.push(line);
        }
        assert!(dev.addr.starts_with("http://127.0.0.1:"), "{}", dev.addr);
        assert!(dev.token.contains('.'), "{}", dev.token);
        dev
    }

    /// Runs `jdos ARGS` with the config file `jdos dev` wrote (no flags).
    fn jdos(&self, args: &[&str]) -> Run {
        let mut run = run_with_config(&self.config, args);
        if run.code != Some(0) {
            run.server = Some(self.diagnosis());
        }
        run
    }

    /// Whether `jdos dev` still runs, and the end of its log.
    fn diagnosis(&self) -> String {
        let pid = self.child.id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(") ")?.1.chars().next()?.to_string()))
            .unwrap_or_else(|| "gone".into());
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "jdos dev (pid {pid}) state: {state}\nits log's last lines:\n{}",
            tail.join("\n")
        )
    }

    /// Stops it with SIGTERM, as a service manager would, and waits.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "jdos dev did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one CLI run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// For a failed run against `jdos dev`: its state and log.
    server: Option<String>,
}

impl Run {
    fn ok(self) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}\n{}",
            self.stdout,
            self.stderr,
            self.server.unwrap_or_default()
        );
        self.stdout
    }

    /// Asserts a failure a person can act on: exit 1, one `error: …` line,
    /// no panic, no backtrace, no raw JSON.
    fn fails(self) -> String {
        assert_eq!(self.code, Some(1), "stdout: {}", self.stdout);
        let err = self.stderr.trim();
        assert!(err.starts_with("error: "), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        for bad in ["panicked", "RUST_BACKTRACE", "{\"", "\"code\""] {
            assert!(!err.contains(bad), "{bad} in {err}");
        }
        err.to_string()
    }
}

fn run_with_config(config: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(JDOS)
        .args(args)
        .env("JDOS_CONFIG", config)
        .env_remove("JDOS_ADDR")
        .env_remove("JDOS_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run jdos");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        server: None,
    }
}

/// The row of `get hosts` for `name`.
fn host_row(table: &str, name: &str) -> String {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in\n{table}"))
        .to_string()
}

#[test]
fn dev_mode_driven_by_the_cli() {
    let dev = Dev::start();

    // The config file `jdos dev` wrote is enough: no flags needed.
    let who = dev.jdos(&["whoami"]).ok();
    assert!(who.contains("role:        admin"), "{who}");

    // 16 hosts by default (2 dc × 2 switches × 2 racks × 2 hosts).
    let table = dev.jdos(&["get", "hosts"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"));
    assert_eq!(lines.len(), 1 + 16, "{table}");
    assert!(lines[1].contains("16 cores") && lines[1].contains("64 GiB"));

    let json: serde_json::Value =
        serde_json::from_str(&dev.jdos(&["get", "hosts", "-o", "json"]).ok()).unwrap();
    let hosts = json.as_array().expect("a JSON array of hosts");
    assert_eq!(hosts.len(), 16);
    let name = hosts[0]["name"].as_str().unwrap().to_string();
    assert_eq!(hosts[0]["cordoned"], false);
    let yaml = dev.jdos(&["get", "hosts", "-o", "yaml"]).ok();
    assert!(yaml.contains(&format!("name: {name}")), "{yaml}");

    let described = dev.jdos(&["describe", "host", &name]).ok();
    let flat = described.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(&format!("Name: {name}")), "{described}");
    assert!(flat.contains("Schedulable: yes"), "{described}");
    assert!(flat.contains("CPU: 16 cores"), "{described}");

    // Cordon shows in the list, in JSON and in describe; uncordon undoes it.
    let out = dev.jdos(&["cordon", "host", &name]).ok();
    assert_eq!(out.trim(), format!("host/{name} cordoned"));
    let table = dev.jdos(&["get", "hosts"]).ok();
    assert!(
        host_row(&table, &name).contains("ready,cordoned"),
        "{table}"
    );
    assert_eq!(
        table.matches("cordoned").count(),
        1,
        "only {name} is cordoned"
    );
    let d = dev.jdos(&["describe", "host", &name]).ok();
    assert!(d.contains("no (cordoned)"), "{d}");
    let out = dev.jdos(&["uncordon", "host", &name]).ok();
    assert_eq!(out.trim(), format!("host/{name} uncordoned"));
    let table = dev.jdos(&["get", "hosts"]).ok();
    assert!(!host_row(&table, &name).contains("cordoned"), "{table}");

    // The topology tree: datacenters at the left, hosts indented below.
    let tree = dev.jdos(&["get", "datacenters"]).ok();
    let dcs: Vec<&str> = tree
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert_eq!(dcs.len(), 2, "{tree}");
    assert!(
        dcs[0].contains("datacenter") && dcs[0].contains("/ 128 cores"),
        "{tree}"
    );
    assert_eq!(
        tree.lines().filter(|l| l.contains(" host ")).count(),
        16,
        "{tree}"
    );
    let host_line = tree
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap();
    assert!(
        host_line.starts_with("      "),
        "hosts are 3 levels deep: {tree}"
    );

    // A developer token cannot cordon a host: a clear error, exit 1, no change.
    let created: serde_json::Value = serde_json::from_str(
        &dev.jdos(&[
            "create",
            "token",
            "--name",
            "dev1",
            "--role",
            "developer",
            "--department",
            "shop",
            "-o",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    let dev_token = created["token"].as_str().unwrap().to_string();
    let err = dev
        .jdos(&["--token", &dev_token, "cordon", "host", &name])
        .fails();
    assert!(err.to_lowercase().contains("developer"), "{err}");
    let table = dev.jdos(&["get", "hosts"]).ok();
    assert!(!host_row(&table, &name).contains("cordoned"), "{table}");

    // `jdos login` checks the token and saves it to its config file.
    let other = dev._dir.path().join("other.json");
    let out = run_with_config(
        &other,
        &["login", "--addr", &dev.addr, "--token", &dev_token],
    )
    .ok();
    assert!(out.contains("as dev1 (developer)"), "{out}");
    let who = run_with_config(&other, &["whoami", "-o", "json"]).ok();
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["role"], "developer");
    let err = run_with_config(
        &other,
        &["login", "--addr", &dev.addr, "--token", "nope.nope"],
    )
    .fails();
    assert!(err.contains("token"), "{err}");

    // Bad input gives a human error naming the field, and nothing is created.
    let err = dev
        .jdos(&["create", "token", "--name", "Bad Name", "--role", "ops"])
        .fails();
    assert!(err.contains("(field: name)"), "{err}");
    let tokens = dev.jdos(&["get", "tokens"]).ok();
    assert_eq!(
        tokens.lines().count(),
        1 + 2,
        "admin and dev1 only: {tokens}"
    );
    let err = dev.jdos(&["describe", "host", "no-such-host"]).fails();
    assert!(err.contains("not found"), "{err}");

    // The events list shows the cordon, who did it and on what.
    let events = dev.jdos(&["get", "events"]).ok();
    let cordon = events
        .lines()
        .find(|l| l.contains("host.cordon"))
        .unwrap_or_else(|| panic!("no host.cordon in\n{events}"));
    assert!(cordon.contains(&format!("host/{name}")), "{cordon}");
    assert!(cordon.contains("admin"), "{cordon}");
    let filtered: serde_json::Value = serde_json::from_str(
        &dev.jdos(&[
            "get", "events", "--kind", "host", "--object", &name, "-o", "json",
        ])
        .ok(),
    )
    .unwrap();
    let actions: Vec<&str> = filtered
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in ["host.register", "host.cordon", "host.uncordon"] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }

    // Ctrl-C / SIGTERM stops it cleanly.
    let status = dev.stop();
    assert!(status.success(), "jdos dev exited with {status}");
}

/// Whoever started `jdos dev` may stop reading its output (`jdos dev | head`,
/// a supervisor dropping the pipe): the server keeps serving. It used to die
/// on the banner's `EPIPE`, which made the test above flaky when the banner
/// reader stopped early.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(JDOS)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--driver",
            "fake",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("JDOS_CONFIG", &config)
        .env_remove("JDOS_ADDR")
        .env_remove("JDOS_TOKEN")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn jdos dev");
    // The config file is written before the banner.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !config.exists() {
        assert!(child.try_wait().unwrap().is_none(), "jdos dev exited early");
        assert!(Instant::now() < deadline, "jdos dev wrote no config file");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past the banner: still serving, several times over.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_eq!(child.try_wait().unwrap(), None, "jdos dev died");
        let table = run_with_config(&config, &["get", "hosts"]);
        assert_eq!(table.code, Some(0), "{}", table.stderr);
        assert_eq!(table.stdout.lines().count(), 1 + 16);
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "jdos dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "jdos dev exited with {status}");
}

#[test]
fn no_server_means_a_hint_not_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let err = run_with_config(
        &dir.path().join("config.json"),
        &["--addr", &addr, "get", "hosts"],
    )
    .fails();
    assert!(err.contains("jdos dev"), "{err}");
    assert!(err.contains(&addr), "{err}");
}

/// The repository's examples directory.
fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn apply_dry_run_then_apply_then_follow_events() {
    let dev = Dev::start_with(&["--driver", "fake"]);
    let web = examples().join("web.yaml");
    let web = web.to_str().unwrap();

    // A dry run prints the plan and writes nothing.
    let plan = dev.jdos(&["apply", "-f", web, "--dry-run"]).ok();
    assert!(plan.contains("+ app web"), "{plan}");
    assert!(
        plan.contains("+ group web/production/web-lf in langfang: 2 replicas"),
        "{plan}"
    );
    assert!(plan.contains("(dry run: nothing written)"), "{plan}");
    dev.jdos(&["describe", "app", "web"]).fails();

    // Follow the app's events from the start while applying.
    let mut watch = Command::new(JDOS)
        .args([
            "events", "--app", "web", "--since", "1h", "--watch", "-o", "json",
        ])
        .env("JDOS_CONFIG", &dev.config)
        .env_remove("JDOS_ADDR")
        .env_remove("JDOS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn jdos events --watch");
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let applied = dev.jdos(&["apply", "-f", web]).ok();
    assert!(applied.contains("groups: 2 to create"), "{applied}");
    let again = dev.jdos(&["apply", "-f", web]).ok();
    assert!(
        again.contains("app web: unchanged, nothing to do"),
        "{again}"
    );

    let groups = dev.jdos(&["get", "groups", "--app", "web"]).ok();
    let lines: Vec<&str> = groups.lines().collect();
    assert_eq!(lines.len(), 3, "{groups}");
    assert!(
        lines[1].contains("web-lf") && lines[1].contains("langfang"),
        "{groups}"
    );
    assert!(lines[1].contains("jdos-busybox:latest"), "{groups}");
    let described = dev
        .jdos(&["describe", "group", "web/production/web-sq"])
        .ok();
    let flat = described.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("Health: http :80/ every 1000 ms"),
        "{described}"
    );
    assert!(flat.contains("GREETING=ni hao"), "{described}");
    let app = dev.jdos(&["describe", "app", "web"]).ok();
    assert!(
        app.contains("Department:") && app.contains("retail"),
        "{app}"
    );

    // A changed spec: the diff names old → new.
    let changed = std::fs::read_to_string(web)
        .unwrap()
        .replacen("replicas: 2", "replicas: 3", 1);
    let file = dev._dir.path().join("web-3.yaml");
    std::fs::write(&file, changed).unwrap();
    let plan = dev
        .jdos(&["apply", "-f", file.to_str().unwrap(), "--dry-run"])
        .ok();
    assert!(
        plan.contains("~ group web/production/web-lf in langfang"),
        "{plan}"
    );
    assert!(
        plan.contains("- replicas: 2") && plan.contains("+ replicas: 3"),
        "{plan}"
    );
    dev.jdos(&["apply", "-f", file.to_str().unwrap()]).ok();

    // A bad spec: every offending field on one error line, exit 1.
    let bad = dev._dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(web)
            .unwrap()
            .replace("name: web\n", "name: Web\n")
            .replace("memory: 32Mi", "memory: lots"),
    )
    .unwrap();
    let err = dev.jdos(&["apply", "-f", bad.to_str().unwrap()]).fails();
    assert!(
        err.contains("name") && err.contains("template.resources.memory"),
        "{err}"
    );

    // The watcher saw both applies that changed something, and nothing else.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("events --watch printed only {seen:?}"));
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(e["app"], "web", "{line}");
        // The tasks the applies started report on the app too.
        let action = e["action"].as_str().unwrap();
        if action.starts_with("app.") {
            seen.push(action.to_string());
        }
    }
    assert_eq!(seen, ["app.apply", "app.apply"]);
    let _ = watch.kill();
    let _ = watch.wait();
}

/// The `jdos` run's output once it exited 1 with an `error:` line last
/// (after `--wait`'s progress lines).
fn failed_after_progress(r: Run) -> String {
    assert_eq!(
        r.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    let last = r
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("error: "), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    last
}

/// Running containers of `group` (`APP/ENV/GROUP`), from `get containers`.
fn running(dev: &Dev, group: &str) -> usize {
    let out = dev
        .jdos(&["get", "containers", "--group", group, "--state", "running"])
        .ok();
    out.lines()
        .filter(|l| !l.starts_with("CONTAINER"))
        .filter(|l| !l.starts_with("No "))
        .count()
}

/// On the Docker engine when one answers (as CI has, with the test image),
/// else skipped: the example's HTTP health check needs containers that
/// really serve, which the fake driver's do not.
#[test]
fn apply_wait_then_scale_and_follow_tasks() {
    let docker_up = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker_up {
        eprintln!("SKIPPED: no Docker engine");
        return;
    }
    let dev = Dev::start_with(&["--driver", "docker"]);
    let web = examples().join("web.yaml");
    let web = web.to_str().unwrap();

    // Apply and wait: a deploy per group, followed to the end.
    let r = dev.jdos(&["apply", "-f", web, "--wait"]);
    let err = r.stderr.clone();
    let out = r.ok();
    assert!(out.contains("groups: 2 to create"), "{out}");
    assert!(
        out.contains("started: deploy group web/production/web-lf"),
        "{out}"
    );
    assert!(
        err.contains("deploy group web/production/web-lf succeeded in"),
        "{err}"
    );
    assert!(
        err.contains("deploy group web/production/web-sq succeeded in"),
        "{err}"
    );
    assert_eq!(running(&dev, "web/production/web-lf"), 2);
    assert_eq!(running(&dev, "web/production/web-sq"), 2);
    // Applied again: nothing to do, nothing to wait for.
    let again = dev.jdos(&["apply", "-f", web, "--wait"]).ok();
    assert!(again.contains("unchanged, nothing to do"), "{again}");

    // A relative scale of one group.
    let r = dev.jdos(&[
        "scale",
        "web/production/web-lf",
        "--replicas",
        "+2",
        "--wait",
    ]);
    let err = r.stderr.clone();
    let out = r.ok();
    assert!(
        out.contains("scale group web/production/web-lf succeeded"),
        "{out}{err}"
    );
    assert!(err.contains("[##"), "plain progress lines: {err}");
    assert_eq!(running(&dev, "web/production/web-lf"), 4);

    // A batch over a selector: -50% of 4 and of 2.
    let out = dev
        .jdos(&[
            "scale",
            "--selector",
            "department=retail",
            "--replicas",
            "-50%",
            "--wait",
        ])
        .ok();
    assert!(
        out.contains("batch_scale") && out.contains("succeeded"),
        "{out}"
    );
    assert_eq!(running(&dev, "web/production/web-lf"), 2);
    assert_eq!(running(&dev, "web/production/web-sq"), 1);

    // The tasks, newest first, and one as a timeline.
    let tasks = dev.jdos(&["get", "tasks", "--app", "web"]).ok();
    let rows: Vec<&str> = tasks.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        5,
        "2 deploys, 1 scale, 2 scales of the batch: {tasks}"
    );
    assert!(rows.iter().all(|r| r.contains(" succeeded ")), "{tasks}");
    assert!(
        rows[4].contains(" deploy ") || rows[3].contains(" deploy "),
        "{tasks}"
    );
    let listed: serde_json::Value = serde_json::from_str(
        &dev.jdos(&["get", "tasks", "--app", "web", "-o", "json"])
            .ok(),
    )
    .unwrap();
    let deploy = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "deploy")
        .unwrap();
    let id = deploy["id"].as_str().unwrap();
    let timeline = dev.jdos(&["describe", "task", id]).ok();
    assert!(
        timeline.contains("State:") && timeline.contains("succeeded"),
        "{timeline}"
    );
    for step in [
        "read_target",
        "place",
        "publish",
        "wait_running",
        "finalize",
    ] {
        assert!(
            timeline.contains(&format!("  {step} ")),
            "{step}: {timeline}"
        );
    }
    assert!(timeline.contains("container(s) running"), "{timeline}");
    let none = dev.jdos(&["get", "tasks", "--state", "running"]).ok();
    assert_eq!(none, "No tasks found.\n");
    let cancelled = dev.jdos(&["cancel", "task", id]).ok();
    assert!(cancelled.contains("already succeeded"), "{cancelled}");

    // A scale that cannot fit (8 hosts in langfang, at most 2 per host)
    // fails its task, and the command exits 1 naming it.
    let r = dev.jdos(&[
        "scale",
        "web/production/web-lf",
        "--replicas",
        "40",
        "--wait",
    ]);
    let last = failed_after_progress(r);
    assert!(
        last.contains("scale group web/production/web-lf failed"),
        "{last}"
    );
    assert!(last.contains("jdos describe task"), "{last}");
    assert_eq!(
        running(&dev, "web/production/web-lf"),
        2,
        "nothing half-created"
    );

    // Delete a group and wait: its containers and record are gone.
    let out = dev
        .jdos(&["delete", "group", "web/production/web-sq", "--wait"])
        .ok();
    assert!(
        out.contains("delete_group group web/production/web-sq succeeded"),
        "{out}"
    );
    let groups = dev.jdos(&["get", "groups", "--app", "web"]).ok();
    assert!(!groups.contains("web-sq"), "{groups}");
    assert_eq!(running(&dev, "web/production/web-sq"), 0);
    // SIGTERM: `jdos dev` removes the containers it started.
    assert!(dev.stop().success());
}
