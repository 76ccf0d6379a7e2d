//! Evidence on the real Docker engine: addresses from `Ipam`, realized by
//! `DockerDriver` on a jdos network.
//!
//! Two busybox containers on one jdos network reach each other by IP (httpd
//! and wget); a container removed and recreated for the same identity gets
//! the same IP back from `allocate`, and `docker inspect` shows it.
//!
//! Needs a running Docker engine and the image `jdos-busybox:latest` (built
//! with `scripts/build-test-image.sh` when missing). The test owns the
//! network `10.214.1.0/24` (Docker network `jdos-ipamd1`) and the app name
//! `ipamd1`, and removes everything it made on exit, even when it fails.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use jdos_ipam::Ipam;
use jdos_runtime::{
    ContainerSpec, DestroyOptions, DockerConfig, DockerDriver, Driver, NetworkAttachment,
    NetworkRealization,
};
use jdos_store::{MemoryStore, Store};
use jdos_types::resources::MIB;
use jdos_types::{InstanceId, Network, Resources};

const IMAGE: &str = "jdos-busybox:latest";
const APP: &str = "ipamd1";
const NET: &str = "ipamd1";

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes the test's containers and network when dropped (and leftovers of
/// an earlier, killed run when created).
struct Cleanup;

impl Cleanup {
    fn new() -> Self {
        Cleanup.run();
        Cleanup
    }

    fn run(&self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label=jdos.app={APP}")]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", &format!("jdos-{NET}")]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

fn ensure_image() -> Result<()> {
    if !docker(&["images", "-q", IMAGE]).trim().is_empty() {
        return Ok(());
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image.sh");
    let out = Command::new("bash").arg(&script).output()?;
    ensure!(
        out.status.success(),
        "scripts/build-test-image.sh failed (this test needs the Docker engine and {IMAGE}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn network() -> Network {
    Network {
        name: NET.into(),
        vlan: 214,
        subnet: "10.214.1.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 214, 1, 1),
        reserved: vec![],
        zone: "default".into(),
        switches: vec!["sw1".into()],
        quarantine_secs: 300,
    }
}

fn id(index: u32) -> InstanceId {
    format!("{APP}/test/web/{index}").parse().unwrap()
}

fn spec(who: &InstanceId, net: &Network, ip: Ipv4Addr, command: &str) -> ContainerSpec {
    let mut s = ContainerSpec::new(who.clone(), IMAGE, "h1", Resources::new(250, 32 * MIB));
    s.command = vec!["sh".into(), "-c".into(), command.into()];
    s.network = Some(NetworkAttachment::new(
        net,
        &NetworkRealization::bridge(),
        ip,
    ));
    s.stop_grace_secs = 1;
    s
}

/// Runs the httpd container of `who` on `ip`: it serves `hello from <ip>`.
async fn run_httpd(d: &DockerDriver, who: &InstanceId, net: &Network, ip: Ipv4Addr) -> Result<()> {
    let cmd = format!(
        "mkdir -p /www && echo hello from {ip} > /www/index.html && exec httpd -f -p 80 -h /www"
    );
    d.create(&spec(who, net, ip, &cmd)).await?;
    d.start(who).await?;
    Ok(())
}

/// `wget -qO- http://<ip>/` from inside `from`, retried while httpd starts.
async fn fetch(d: &DockerDriver, from: &InstanceId, ip: Ipv4Addr) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let cmd = vec![
        "wget".to_string(),
        // No `-T`: this busybox build's wget crashes with it; the exec
        // timeout bounds the wait instead.
        "-qO-".into(),
        format!("http://{ip}/"),
    ];
    loop {
        let out = d.exec(from, &cmd, Duration::from_secs(5)).await?;
        if out.exit_code == 0 {
            return Ok(out.stdout);
        }
        if Instant::now() > deadline {
            bail!(
                "wget http://{ip}/ from {from} kept failing: exit {} {}",
                out.exit_code,
                out.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn docker_inspect_ip(d: &DockerDriver, who: &InstanceId) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &d.container_name(who),
    ])
    .trim()
    .to_string()
}

#[tokio::test]
async fn containers_reach_each_other_and_keep_their_ip_when_recreated() -> Result<()> {
    let _cleanup = Cleanup::new();
    ensure_image()?;
    let d = DockerDriver::connect(DockerConfig::default())
        .await
        .context("this test needs the Docker engine")?;

    // The jdos network and two addresses, from IPAM over the store.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ipam = Ipam::new(store.clone());
    let net = ipam.create_network(network()).await?;
    let (web, client) = (id(0), id(1));
    let t0 = 1_700_000_000_000;
    let ip_web = ipam.allocate(NET, &web, None, t0).await?.ip;
    let ip_client = ipam.allocate(NET, &client, None, t0).await?.ip;
    assert_ne!(ip_web, ip_client);

    // Realized on Docker with the same subnet and gateway.
    let info = d
        .ensure_network(&net, &NetworkRealization::bridge())
        .await?;
    let subnet = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        &format!("jdos-{NET}"),
    ]);
    assert_eq!(subnet.trim(), "10.214.1.0/24 10.214.1.1", "{info:?}");

    // Two containers with their static IPs; one fetches from the other by IP.
    run_httpd(&d, &web, &net, ip_web).await?;
    d.create(&spec(&client, &net, ip_client, "exec sleep 3600"))
        .await?;
    d.start(&client).await?;
    assert_eq!(docker_inspect_ip(&d, &web), ip_web.to_string());
    assert_eq!(docker_inspect_ip(&d, &client), ip_client.to_string());
    let body = fetch(&d, &client, ip_web).await?;
    assert_eq!(body.trim(), format!("hello from {ip_web}"));

    // The web container dies and is removed; nothing is released. Its
    // replacement (same identity, later) asks IPAM again and gets the same IP.
    d.destroy(&web, DestroyOptions::purge()).await?;
    ensure!(
        docker_inspect_ip(&d, &web).is_empty(),
        "container still there"
    );
    let other = ipam.allocate(NET, &id(2), None, t0 + 60_000).await?.ip;
    assert_ne!(
        other, ip_web,
        "a held address is never handed to another identity"
    );
    let again = ipam.allocate(NET, &web, None, t0 + 120_000).await?;
    assert_eq!(again.ip, ip_web);
    run_httpd(&d, &web, &net, again.ip).await?;
    assert_eq!(docker_inspect_ip(&d, &web), ip_web.to_string());
    assert_eq!(d.inspect(&web).await?.ip, Some(ip_web));
    let body = fetch(&d, &client, ip_web).await?;
    assert_eq!(body.trim(), format!("hello from {ip_web}"));

    // A restarted server (a fresh index rebuilt from the store) agrees.
    let restarted = Ipam::new(store);
    restarted.rebuild().await?;
    assert_eq!(
        restarted.allocate(NET, &web, None, t0 + 180_000).await?.ip,
        ip_web
    );

    d.destroy(&web, DestroyOptions::purge()).await?;
    d.destroy(&client, DestroyOptions::purge()).await?;
    d.remove_network(NET, &NetworkRealization::bridge()).await?;
    Ok(())
}
