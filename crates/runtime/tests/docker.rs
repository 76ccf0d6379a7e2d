//! DockerDriver against the real engine (20.10 / API 1.41 here).
//!
//! Needs a running Docker engine and the image `jdos-busybox:latest`, which
//! these tests build with `scripts/build-test-image.sh` when it is missing.
//! Each test owns a network `10.213.<x>.0/24` and an app name `rt<x>` with a
//! test-specific `x`, and removes everything it made on exit, even when it
//! fails (a guard runs `docker rm -f` in `Drop`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jdos_runtime::health::{http_probe, probe, tcp_probe};
use jdos_runtime::{
    BlockVolume, ContainerSpec, CpuPolicy, DestroyOptions, DockerConfig, DockerDriver, Driver,
    DriverError, HealthCheck, HostTier, HostVolume, Isolation, LabelFilter, NetworkAttachment,
    NetworkRealization, Nofile, Probe, RuntimeState, TierRoot, TierRoots, TmpfsMount,
};
use jdos_types::resources::MIB;
use jdos_types::{InstanceId, Network, Resources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "jdos-busybox:latest";

fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run scripts/build-test-image.sh");
        assert!(
            out.status.success(),
            "scripts/build-test-image.sh failed (these tests need the Docker engine and the image {IMAGE}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Removes every container, volume and network of one test when dropped.
struct Cleanup {
    app: String,
    networks: Vec<String>,
    images: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cleanup {
    fn new(x: u8) -> Self {
        let c = Cleanup {
            app: format!("rt{x}"),
            networks: vec![format!("jdos-rt{x}"), format!("jdos-rt{x}-b")],
            images: vec![],
            _dirs: vec![],
        };
        c.run(); // leftovers of an earlier, killed run
        c
    }

    fn run(&self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=jdos.app={}", self.app),
        ]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        let vols = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=jdos-{}-", self.app),
        ]);
        for v in vols.split_whitespace() {
            docker(&["volume", "rm", "-f", v]);
        }
        for n in &self.networks {
            docker(&["network", "rm", n]);
        }
        for i in &self.images {
            docker(&["rmi", "-f", i]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn network(x: u8) -> Network {
    Network {
        name: format!("rt{x}"),
        vlan: 100 + u16::from(x),
        subnet: format!("10.213.{x}.0/24").parse().unwrap(),
        gateway: format!("10.213.{x}.1").parse().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

fn ip(x: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, x, last)
}

fn id(x: u8, index: u32) -> InstanceId {
    format!("rt{x}/test/web/{index}").parse().unwrap()
}

fn spec(x: u8, index: u32, host: &str, net: &Network) -> ContainerSpec {
    let mut s = ContainerSpec::new(id(x, index), IMAGE, host, Resources::new(250, 32 * MIB));
    s.command = vec!["sleep".into(), "3600".into()];
    s.network = Some(NetworkAttachment::new(
        net,
        &NetworkRealization::bridge(),
        ip(x, 10 + index as u8),
    ));
    s.stop_grace_secs = 1;
    s
}

async fn driver(cleanup: &mut Cleanup, l1_capacity: Option<u64>) -> Result<DockerDriver> {
    ensure_image();
    let l1 = tempfile::tempdir()?;
    let l2 = tempfile::tempdir()?;
    let storage = TierRoots::new(
        TierRoot {
            path: l1.path().into(),
            capacity_bytes: l1_capacity,
        },
        TierRoot::new(l2.path()),
    );
    cleanup._dirs.push(l1);
    cleanup._dirs.push(l2);
    let d = DockerDriver::connect(DockerConfig {
        storage,
        ..DockerConfig::default()
    })
    .await?;
    Ok(d)
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => bail!("{what}: {e:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn httpd_on_a_static_ip_serves_the_host() -> Result<()> {
    let x = 11;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, None).await?;
    assert_eq!(
        d.api_version(),
        "1.41",
        "negotiated down to the engine's API"
    );
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;

    let mut s = spec(x, 0, "h1", &net);
    s.command = vec![
        "httpd".into(),
        "-f".into(),
        "-p".into(),
        "80".into(),
        "-h".into(),
        "/www".into(),
    ];
    s.ports = vec![80];
    s.health = Some(HealthCheck::new(Probe::Http {
        port: 80,
        path: "/".into(),
    }));
    let handle = d.create(&s).await?;
    assert_eq!(handle.name, "jdos-rt11-test-web-0");
    d.start(&s.instance).await?;

    let st = d.inspect(&s.instance).await?;
    assert_eq!(st.state, RuntimeState::Running);
    assert_eq!(st.ip, Some(ip(x, 10)));
    assert_eq!(st.instance.as_ref(), Some(&s.instance));
    assert!(st.started_at_ms.is_some());

    let addr = SocketAddr::from((ip(x, 10), 80));
    let page = eventually("fetch the page", || http_get(addr, "/")).await?;
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}"
    );
    assert!(page.contains("hello from jdos-busybox"), "{page}");

    // The agent's probes, all three kinds.
    let t = Duration::from_secs(2);
    assert!(http_probe(addr, "/", t).await.is_healthy());
    assert!(
        !http_probe(addr, "/missing", t).await.is_healthy(),
        "404 is unhealthy"
    );
    assert!(tcp_probe(addr, t).await.is_healthy());
    assert!(!tcp_probe(SocketAddr::from((ip(x, 10), 81)), t)
        .await
        .is_healthy());
    let check = s.health.clone().unwrap();
    assert!(probe(&check, st.ip, &d, &s.instance).await.is_healthy());
    let exec_ok = HealthCheck::new(Probe::Exec {
        command: vec![
            "wget".into(),
            "-q".into(),
            "-O".into(),
            "/dev/null".into(),
            "http://127.0.0.1/".into(),
        ],
    });
    assert!(probe(&exec_ok, None, &d, &s.instance).await.is_healthy());
    let exec_bad = HealthCheck::new(Probe::Exec {
        command: vec!["false".into()],
    });
    assert!(!probe(&exec_bad, None, &d, &s.instance).await.is_healthy());

    // A short-lived second container: wait() sees its exit code.
    let mut short = spec(x, 1, "h1", &net);
    short.command = vec!["sh".into(), "-c".into(), "sleep 1; exit 7".into()];
    d.create(&short).await?;
    d.start(&short.instance).await?;
    assert_eq!(d.wait(&short.instance).await?, 7);
    assert_eq!(d.inspect(&short.instance).await?.exit_code, Some(7));
    d.destroy(&short.instance, DestroyOptions::purge()).await?;
    assert!(d.wait(&short.instance).await.unwrap_err().is_not_found());

    let out = d
        .exec(
            &s.instance,
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            t,
        )
        .await?;
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );

    let stats = d.stats(&s.instance).await?;
    assert_eq!(stats.memory_limit_bytes, 32 * MIB);
    assert!(stats.pids >= 1 && stats.cpu_usage_ns > 0, "{stats:?}");

    d.stop(&s.instance, Duration::from_secs(1)).await?;
    d.stop(&s.instance, Duration::from_secs(1)).await?; // already stopped: fine
    let st = d.inspect(&s.instance).await?;
    assert_eq!(st.state, RuntimeState::Exited);
    assert!(st.exit_code.is_some() && st.finished_at_ms.is_some());

    d.destroy(&s.instance, DestroyOptions::purge()).await?;
    d.destroy(&s.instance, DestroyOptions::purge()).await?; // idempotent
    assert!(d.inspect(&s.instance).await.unwrap_err().is_not_found());
    assert!(d.start(&s.instance).await.unwrap_err().is_not_found());
    d.remove_network(&net.name, &NetworkRealization::bridge())
        .await?;
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", "name=^jdos-rt11$"]).trim(),
        ""
    );
    Ok(())
}

#[tokio::test]
async fn auto_detect_picks_docker_when_the_engine_answers() {
    let (d, why) = jdos_runtime::auto_detect(DockerConfig::default(), Duration::from_secs(5)).await;
    assert_eq!(d.name(), "docker", "{why:?}");
    assert!(why.is_none());
}

#[tokio::test]
async fn cgroup_and_storage_settings_are_applied() -> Result<()> {
    let x = 12;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, None).await?;
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;

    // Quota policy with every isolation knob and every storage tier.
    let mut s = spec(x, 0, "h1", &net);
    s.resources = Resources::new(1500, 64 * MIB);
    s.resources.disk.l0 = 16 * MIB;
    s.resources.disk.l1 = 8 * MIB;
    s.resources.disk.l3 = MIB;
    s.isolation = Isolation {
        cpu: CpuPolicy::Quota { period_us: 100_000 },
        memory_swap_bytes: Some(128 * MIB),
        swappiness: Some(10),
        pids_limit: Some(50),
        nofile: Some(Nofile {
            soft: 1024,
            hard: 2048,
        }),
        blkio_weight: Some(300),
    };
    s.storage.tmpfs.push(TmpfsMount {
        path: "/scratch".into(),
        size_bytes: 16 * MIB,
    });
    s.storage.host_volumes.push(HostVolume {
        tier: HostTier::L1,
        name: "data".into(),
        path: "/data".into(),
        size_bytes: 8 * MIB,
        read_only: false,
    });
    s.storage.block_volumes.push(BlockVolume {
        name: "blk".into(),
        path: "/blk".into(),
        size_bytes: MIB,
        driver: "local".into(),
        options: Default::default(),
    });
    let handle = d.create(&s).await?;
    d.start(&s.instance).await?;

    let raw = d.client().inspect_container(&handle.name, None).await?;
    let hc = raw.host_config.context("no HostConfig")?;
    assert_eq!(hc.cpu_shares, Some(1536));
    assert_eq!(hc.cpu_period, Some(100_000));
    assert_eq!(hc.cpu_quota, Some(150_000));
    assert_eq!(hc.nano_cpus.unwrap_or(0), 0, "quota, not NanoCpus");
    assert_eq!(hc.memory, Some((64 * MIB) as i64));
    assert_eq!(hc.memory_swap, Some((128 * MIB) as i64));
    assert_eq!(hc.memory_swappiness, Some(10));
    assert_eq!(hc.pids_limit, Some(50));
    let u = hc.ulimits.clone().unwrap_or_default();
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].name.as_deref(), u[0].soft, u[0].hard),
        (Some("nofile"), Some(1024), Some(2048))
    );
    // Kernels without the blkio weight controller discard it with a warning.
    let blkio_discarded = handle
        .warnings
        .iter()
        .any(|w| w.contains("Block I/O weight"));
    let want_blkio = if blkio_discarded { 0 } else { 300 };
    assert_eq!(
        hc.blkio_weight.unwrap_or(0),
        want_blkio,
        "warnings: {:?}",
        handle.warnings
    );
    assert_eq!(
        hc.tmpfs.clone().unwrap_or_default()["/scratch"],
        format!("size={},mode=1777", 16 * MIB)
    );
    assert_eq!(
        hc.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string())
            .as_deref(),
        Some("no")
    );

    // Seen from inside: the limits are real.
    let t = Duration::from_secs(5);
    let sh = |c: &str| vec!["sh".to_string(), "-c".to_string(), c.to_string()];
    // The container's own process (pid 1), not the exec'd shell: under load
    // the engine has been seen to give an exec'd process soft = hard.
    let out = d
        .exec(&s.instance, &sh("grep 'Max open files' /proc/1/limits"), t)
        .await?;
    let limits: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        limits.get(3..5),
        Some(&["1024", "2048"][..]),
        "{}",
        out.stdout
    );
    let out = d
        .exec(&s.instance, &sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"), t)
        .await?;
    assert_eq!(out.stdout.trim(), (64 * MIB).to_string());
    let out = d
        .exec(
            &s.instance,
            &sh("df -k /scratch | tail -n1 | awk '{print $2}'"),
            t,
        )
        .await?;
    assert_eq!(
        out.stdout.trim(),
        (16 * 1024).to_string(),
        "tmpfs size in KiB"
    );
    let out = d
        .exec(
            &s.instance,
            &sh("echo hi > /data/f && echo hi > /blk/f && echo ok"),
            t,
        )
        .await?;
    assert_eq!(out.stdout, "ok\n", "{out:?}");
    let l1_dir = cleanup._dirs[0].path().join(&handle.name);
    assert_eq!(std::fs::read_to_string(l1_dir.join("data/f"))?, "hi\n");
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "name=jdos-rt12-test-web-0-blk"
        ])
        .trim(),
        "jdos-rt12-test-web-0-blk"
    );

    // Vertical resize, live: cpuset pinning and more memory.
    let mut bigger = s.resources;
    bigger.cpu_millis = 1000;
    bigger.memory_bytes = 96 * MIB;
    let iso = Isolation {
        cpu: CpuPolicy::Cpuset { cpus: vec![0] },
        memory_swap_bytes: Some(192 * MIB),
        ..s.isolation.clone()
    };
    d.update_resources(&s.instance, &bigger, &iso).await?;
    let hc = d
        .client()
        .inspect_container(&handle.name, None)
        .await?
        .host_config
        .unwrap();
    assert_eq!(hc.memory, Some((96 * MIB) as i64));
    assert_eq!(hc.cpuset_cpus.as_deref(), Some("0"));
    assert_eq!(hc.cpu_shares, Some(1024));
    assert_eq!(
        d.inspect(&s.instance).await?.state,
        RuntimeState::Running,
        "no restart"
    );

    // Destroy keeping data: the container goes, its L1 dir and L3 volume stay.
    d.destroy(&s.instance, DestroyOptions::keep_data()).await?;
    assert!(d.inspect(&s.instance).await.unwrap_err().is_not_found());
    assert!(l1_dir.join("data/f").exists());
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "name=jdos-rt12-test-web-0-blk"
        ])
        .trim(),
        "jdos-rt12-test-web-0-blk"
    );
    // Purging the gone container leaves nothing: host dirs, volume.
    d.destroy(&s.instance, DestroyOptions::purge()).await?;
    assert!(!l1_dir.exists());
    assert_eq!(
        docker(&["ps", "-aq", "--filter", "name=jdos-rt12-test-web-0"]).trim(),
        ""
    );
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "name=jdos-rt12-test-web-0-blk"
        ])
        .trim(),
        ""
    );
    Ok(())
}

#[tokio::test]
async fn shares_and_cpuset_policies_and_storage_budget() -> Result<()> {
    let x = 13;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, Some(10 * MIB)).await?;
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;

    let s = spec(x, 0, "h1", &net); // shares, 250 millicores
    let h = d.create(&s).await?;
    let hc = d
        .client()
        .inspect_container(&h.name, None)
        .await?
        .host_config
        .unwrap();
    assert_eq!(hc.cpu_shares, Some(256));
    assert_eq!(
        (
            hc.cpu_quota.unwrap_or(0),
            hc.cpuset_cpus.unwrap_or_default()
        ),
        (0, String::new())
    );
    assert_eq!(
        hc.memory_swap,
        Some((32 * MIB) as i64),
        "no swap by default"
    );

    let mut pinned = spec(x, 1, "h1", &net);
    pinned.resources.cpu_millis = 1000;
    pinned.isolation.cpu = CpuPolicy::Cpuset {
        cpus: vec![d.ncpu() - 1],
    };
    let h = d.create(&pinned).await?;
    let hc = d
        .client()
        .inspect_container(&h.name, None)
        .await?
        .host_config
        .unwrap();
    assert_eq!(hc.cpuset_cpus, Some((d.ncpu() - 1).to_string()));

    // 6 + 6 MiB of L1 does not fit a 10 MiB tier: refused, nothing made.
    let with_vol = |i: u32| {
        let mut v = spec(x, i, "h1", &net);
        v.resources.disk.l1 = 6 * MIB;
        v.storage.host_volumes.push(HostVolume {
            tier: HostTier::L1,
            name: "data".into(),
            path: "/data".into(),
            size_bytes: 6 * MIB,
            read_only: false,
        });
        v
    };
    d.create(&with_vol(2)).await?;
    let err = d.create(&with_vol(3)).await.unwrap_err();
    assert!(matches!(err, DriverError::Storage(_)), "{err}");
    assert!(err.to_string().contains("already promised"), "{err}");
    assert!(d.inspect(&id(x, 3)).await.unwrap_err().is_not_found());
    assert!(!cleanup._dirs[0]
        .path()
        .join(id(x, 3).docker_name())
        .exists());
    // Destroying 2 frees its budget for 3.
    d.destroy(&id(x, 2), DestroyOptions::purge()).await?;
    d.create(&with_vol(3)).await?;
    Ok(())
}

#[tokio::test]
async fn ensure_network_is_idempotent_and_never_changes_a_conflicting_one() -> Result<()> {
    let x = 14;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, None).await?;
    let r = NetworkRealization::bridge();
    let net = network(x);
    let first = d.ensure_network(&net, &r).await?;
    assert!(first.created);
    let again = d.ensure_network(&net, &r).await?;
    assert!(!again.created);
    assert_eq!(again.id, first.id);

    // Same name, other subnet: a clear conflict, the network untouched.
    let mut moved = network(x);
    moved.subnet = "10.213.114.0/24".parse()?;
    moved.gateway = "10.213.114.1".parse()?;
    let err = d.ensure_network(&moved, &r).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(
        err.to_string().contains("10.213.14.0/24")
            && err.to_string().contains("want 10.213.114.0/24"),
        "{err}"
    );
    let subnet = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        "jdos-rt14",
    ]);
    assert_eq!(subnet.trim(), "10.213.14.0/24");

    // Same name, other gateway; same name, other driver.
    let mut gw = network(x);
    gw.gateway = "10.213.14.254".parse()?;
    assert!(d.ensure_network(&gw, &r).await.unwrap_err().is_conflict());
    let err = d
        .ensure_network(&net, &NetworkRealization::macvlan("eth0"))
        .await
        .unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("driver bridge (want macvlan)"),
        "{err}"
    );

    // Another name over the same subnet: the engine refuses, we say why.
    let mut twin = network(x);
    twin.name = "rt14-b".into();
    let err = d.ensure_network(&twin, &r).await.unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("overlaps"),
        "{err}"
    );

    // Two agents (separate drivers) realizing one network at once: both
    // succeed, one creates, one reuses, and the engine holds one network.
    d.remove_network(&net.name, &r).await?;
    let d2 = driver(&mut cleanup, None).await?;
    let (a, b) = tokio::join!(d.ensure_network(&net, &r), d2.ensure_network(&net, &r));
    let (a, b) = (a?, b?);
    assert_eq!(a.id, b.id);
    assert!(a.created ^ b.created, "{a:?} {b:?}");
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", "name=^jdos-rt14$"])
            .lines()
            .count(),
        1
    );

    // In use: cannot be removed; idle: removed; absent: fine.
    let s = spec(x, 0, "h1", &net);
    d.create(&s).await?;
    d.start(&s.instance).await?;
    assert!(d
        .remove_network(&net.name, &r)
        .await
        .unwrap_err()
        .is_conflict());
    d.destroy(&s.instance, DestroyOptions::purge()).await?;
    d.remove_network(&net.name, &r).await?;
    d.remove_network(&net.name, &r).await?;
    Ok(())
}

#[tokio::test]
async fn adoption_by_labels_and_a_recreated_identity_keeps_its_ip() -> Result<()> {
    let x = 15;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, None).await?;
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;
    for (i, host) in [(0, "host-a"), (1, "host-a"), (2, "host-b"), (3, "host-a")] {
        let mut s = spec(x, i, host, &net);
        s.epoch = 7;
        d.create(&s).await?;
        d.start(&s.instance).await?;
    }

    // A restarted agent of host-a finds exactly its three containers.
    let filter = LabelFilter::host("host-a").with("jdos.app", "rt15");
    let mine = d.list(&filter).await?;
    let idx: Vec<u32> = mine
        .iter()
        .map(|s| s.instance.as_ref().unwrap().index)
        .collect();
    assert_eq!(idx, [0, 1, 3]);
    for s in &mine {
        assert_eq!(s.state, RuntimeState::Running);
        assert_eq!(s.epoch(), Some(7));
        assert_eq!(
            s.ip,
            Some(ip(x, 10 + s.instance.as_ref().unwrap().index as u8))
        );
        assert!(s.spec_hash().is_some());
    }
    // Creating one again is refused: never a duplicate.
    let err = d.create(&spec(x, 1, "host-a", &net)).await.unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("host host-a, epoch 7"),
        "{err}"
    );
    assert_eq!(
        d.list(&LabelFilter::all().with("jdos.app", "rt15"))
            .await?
            .len(),
        4
    );

    // Stop/start and destroy/recreate of the same identity keep the address.
    let one = id(x, 1);
    d.stop(&one, Duration::from_secs(1)).await?;
    d.start(&one).await?;
    assert_eq!(d.inspect(&one).await?.ip, Some(ip(x, 11)));
    d.destroy(&one, DestroyOptions::purge()).await?;
    d.create(&spec(x, 1, "host-c", &net)).await?;
    d.start(&one).await?;
    let st = d.inspect(&one).await?;
    assert_eq!((st.ip, st.host()), (Some(ip(x, 11)), Some("host-c")));

    // Agents sharing one engine (dev) scope their names: the same identity
    // exists once per scope, without a name clash.
    let scoped = DockerDriver::connect(DockerConfig {
        name_scope: Some("host-z".into()),
        ..DockerConfig::default()
    })
    .await?;
    let mut twin = spec(x, 1, "host-z", &net);
    twin.network.as_mut().unwrap().ipv4 = ip(x, 99);
    let h = scoped.create(&twin).await?;
    assert_eq!(h.name, "jdos-rt15-test-web-1.host-z");
    assert_eq!(scoped.inspect(&one).await?.host(), Some("host-z"));
    assert_eq!(d.inspect(&one).await?.host(), Some("host-c"));
    scoped.destroy(&one, DestroyOptions::purge()).await?;

    // A second identity given a held address cannot start.
    let mut clash = spec(x, 9, "host-a", &net);
    clash.network.as_mut().unwrap().ipv4 = ip(x, 11);
    d.create(&clash).await?;
    let err = d.start(&clash.instance).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    Ok(())
}

#[tokio::test]
async fn bad_specs_are_refused_before_anything_is_created() -> Result<()> {
    let x = 16;
    let mut cleanup = Cleanup::new(x);
    let d = driver(&mut cleanup, None).await?;
    let net = network(x);

    let s = spec(x, 0, "h1", &net);
    let err = d.create(&s).await.unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("network"),
        "{err}"
    );
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;

    let mut no_image = spec(x, 0, "h1", &net);
    no_image.image = "jdos-no-such-image:1".into();
    let err = d.create(&no_image).await.unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("does not pull"),
        "{err}"
    );

    let mut bad_cpu = spec(x, 0, "h1", &net);
    bad_cpu.isolation.cpu = CpuPolicy::Cpuset { cpus: vec![999] };
    assert!(matches!(
        d.create(&bad_cpu).await,
        Err(DriverError::InvalidSpec(_))
    ));

    let mut bad = spec(x, 0, "h1", &net);
    bad.resources.memory_bytes = MIB;
    bad.network.as_mut().unwrap().ipv4 = "10.99.0.5".parse()?;
    match d.create(&bad).await {
        Err(DriverError::InvalidSpec(v)) => assert_eq!(v.errors.len(), 2, "{v}"),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
    assert_eq!(
        docker(&["ps", "-aq", "--filter", "label=jdos.app=rt16"]).trim(),
        ""
    );

    // A limit only the engine can judge fails at start with a clear field.
    let mut huge = spec(x, 1, "h1", &net);
    huge.isolation.nofile = Some(Nofile {
        soft: 1 << 30,
        hard: 1 << 30,
    });
    d.create(&huge).await?;
    match d.start(&huge.instance).await {
        Err(DriverError::InvalidSpec(v)) => {
            assert_eq!(v.errors[0].field, "isolation.nofile", "{v}")
        }
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
    d.destroy(&huge.instance, DestroyOptions::purge()).await?;
    Ok(())
}

#[tokio::test]
async fn commit_snapshots_a_running_container() -> Result<()> {
    let x = 17;
    let mut cleanup = Cleanup::new(x);
    cleanup.images.push("jdos-rt17-snap:v1".into());
    let d = driver(&mut cleanup, None).await?;
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;
    let mut s = spec(x, 0, "h1", &net);
    s.command = vec![
        "sh".into(),
        "-c".into(),
        "echo state > /marker; exec sleep 3600".into(),
    ];
    d.create(&s).await?;
    d.start(&s.instance).await?;
    eventually("marker written", || async {
        let o = d
            .exec(
                &s.instance,
                &["cat".into(), "/marker".into()],
                Duration::from_secs(2),
            )
            .await?;
        if o.exit_code == 0 {
            Ok(())
        } else {
            bail!("not yet")
        }
    })
    .await?;
    let image = d.commit(&s.instance, "jdos-rt17-snap:v1").await?;
    assert!(image.starts_with("sha256:"), "{image}");

    // A clone from the snapshot sees the file.
    let mut clone = spec(x, 1, "h1", &net);
    clone.image = "jdos-rt17-snap:v1".into();
    clone.command = vec!["sleep".into(), "3600".into()];
    d.create(&clone).await?;
    d.start(&clone.instance).await?;
    let o = d
        .exec(
            &clone.instance,
            &["cat".into(), "/marker".into()],
            Duration::from_secs(2),
        )
        .await?;
    assert_eq!(o.stdout, "state\n");
    for i in [0, 1] {
        d.destroy(&id(x, i), DestroyOptions::purge()).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_stop_waits_out_a_grace_longer_than_the_client_timeout() -> Result<()> {
    let x = 18;
    let mut cleanup = Cleanup::new(x);
    ensure_image();
    let l1 = tempfile::tempdir()?;
    let l2 = tempfile::tempdir()?;
    let storage = TierRoots::new(TierRoot::new(l1.path()), TierRoot::new(l2.path()));
    cleanup._dirs.push(l1);
    cleanup._dirs.push(l2);
    let d = DockerDriver::connect(DockerConfig {
        storage,
        ..DockerConfig::default()
    })
    .await?;
    // For the stop only: a 2 s request timeout stands in for bollard's
    // default 2 minutes, so that a grace beyond it takes seconds, not
    // minutes, to exercise (create and start keep the default: on a loaded
    // engine a start alone can take more than 2 s).
    let client =
        bollard::Docker::connect_with_local_defaults()?.with_timeout(Duration::from_secs(2));
    let short = DockerDriver::from_client(client, DockerConfig::default()).await?;
    let net = network(x);
    d.ensure_network(&net, &NetworkRealization::bridge())
        .await?;
    let mut s = spec(x, 0, "h1", &net);
    // Ignores SIGTERM, so only the engine's SIGKILL after the grace ends it.
    s.command = vec![
        "sh".into(),
        "-c".into(),
        "trap '' TERM; while true; do sleep 1; done".into(),
    ];
    d.create(&s).await?;
    d.start(&s.instance).await?;
    let t0 = Instant::now();
    short.stop(&s.instance, Duration::from_secs(4)).await?;
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "stopped after {:?}, before the grace ran out",
        t0.elapsed()
    );
    let st = d.inspect(&s.instance).await?;
    assert_eq!(st.state, RuntimeState::Exited, "{st:?}");
    d.destroy(&s.instance, DestroyOptions::purge()).await?;
    Ok(())
}
