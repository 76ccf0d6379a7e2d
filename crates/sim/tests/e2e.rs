//! `jdos sim --e2e` in small: 50 hosts with real agents over fake drivers,
//! 1,000 containers deployed through workflow tasks, every one reported
//! running, the independent checker clean and no address twice.

use std::sync::Arc;
use std::time::Duration;

use jdos_sim::{run_e2e, E2eConfig};
use jdos_types::{keys, Container, ContainerPhase};

async fn small(store_url: &str, store: Arc<dyn jdos_store::Store>) {
    let config = E2eConfig {
        hosts: 50,
        containers: 1000,
        apps: Some(40),
        seed: 7,
        store_url: store_url.into(),
        concurrency: 64,
        submitters: 4,
        timeout: Duration::from_secs(240),
        heartbeat: Duration::from_millis(200),
        agent_metrics: None,
    };
    let run = run_e2e(&config, store.clone()).await.expect("e2e run");
    let r = &run.report;
    assert_eq!(r.mode, "e2e");
    assert_eq!(r.e2e_timed_out, Some(false), "{r:?}");
    assert!(r.containers_requested >= 900, "{r:?}");
    assert_eq!(r.containers_running, Some(r.containers_requested), "{r:?}");
    assert_eq!(r.containers_placed, r.containers_requested, "{r:?}");
    assert_eq!(r.violations, 0, "{:?}", r.violation_kinds);
    assert_eq!(r.tasks, Some(r.groups as u64));
    assert_eq!(r.tasks_succeeded, Some(r.groups as u64), "{r:?}");
    assert!(r.e2e_seconds.unwrap_or(0.0) > 0.0);
    let apps = r.apps.unwrap_or(0);
    assert!(apps.abs_diff(40) <= 4 && apps <= r.groups, "{r:?}");

    // Independently of the run's own counting: every record running on a
    // registered host, each with its own address.
    let cs: Vec<Container> = jdos_store::json::list_all(store.as_ref(), keys::CONTAINERS)
        .await
        .expect("list");
    assert_eq!(cs.len() as u64, r.containers_requested);
    assert!(cs.iter().all(|c| c.phase == ContainerPhase::Running));
    let ips: std::collections::HashSet<_> = cs.iter().map(|c| c.ip.expect("has an ip")).collect();
    assert_eq!(ips.len(), cs.len(), "an address is used twice");
    assert_eq!(run.distinct_ips, cs.len());
    let hosts: Vec<jdos_types::Host> = jdos_store::json::list_all(store.as_ref(), keys::HOSTS)
        .await
        .expect("hosts");
    assert_eq!(hosts.len(), 50);
    assert!(
        hosts.iter().all(|h| h.driver == "fake"),
        "registered by agents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_small_on_memory() {
    let store = jdos_store::open("memory://").await.expect("store");
    small("memory://", store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_small_on_redb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redb://{}", dir.path().join("sim.redb").display());
    let store = jdos_store::open(&url).await.expect("store");
    small(&url, store).await;
}
