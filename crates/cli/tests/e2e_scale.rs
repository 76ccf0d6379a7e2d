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

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{docker_available, Cluster, Seen, IMAGE};

impl Cluster {
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
        let st = self.state();
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

    /// The network (`10.<net>.x.0/24`), the app and the group at 0 replicas.
    fn setup(&self, net: u8) {
        self.create_network(net, 3000);
        self.put_app_and_group(&self.group());
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
    let at20 = c.inspect_by_instance();
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
    let at40 = c.inspect_by_instance();
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
        let s = c.inspect_by_instance();
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
