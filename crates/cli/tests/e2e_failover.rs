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

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::{docker, docker_available, Cluster, Seen, IMAGE};

impl Cluster {
    /// A network `10.<net>.x.0/24` on `sw1` and one group of `n` sleepers
    /// spread over the hosts, placed and published through the platform
    /// layer.
    fn deploy(&self, net: u8, n: u32, max_per_host: u32) {
        self.create_network(net, 2000);
        let net = self.network();
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
        self.put_app_and_group(&group);
        let st = self.state();
        self.rt.block_on(async {
            let placed = st.platform().place_missing(&group, n).await.unwrap();
            let ids: Vec<_> = placed.iter().map(|c| c.id.clone()).collect();
            st.platform().publish(&group, &ids).await.unwrap();
        });
        self.wait("every container running", Duration::from_secs(120), || {
            let seen = self.inspect();
            (seen.iter().filter(|s| s.running).count() == n as usize).then_some(())
        });
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
