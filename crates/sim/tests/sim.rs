//! End-to-end runs of the simulator on small estates: everything placed,
//! the independent checker finds nothing, the outside checker agrees, and
//! the checker does catch a planted violation.

use std::process::Command;
use std::sync::Arc;

use jdos_scheduler::ZonePolicy;
use jdos_sim::{checker, dump, SimConfig};
use jdos_store::{json, MemoryStore, Store};
use jdos_types::{keys, Container, InstanceId};

fn config(schedulers: usize) -> SimConfig {
    SimConfig {
        hosts: 1000,
        containers: 12_000,
        seed: 7,
        schedulers,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_run_places_everything_without_violations_and_dumps() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = jdos_sim::run(&config(3), store.clone()).await.unwrap();
    let r = &run.report;
    assert_eq!(r.hosts, 1000);
    assert_eq!(r.containers_requested, 12_000);
    assert_eq!(r.containers_placed + r.unplaceable, 12_000);
    assert_eq!(r.unplaceable, 0, "the generated estate has room");
    assert_eq!(r.violations, 0, "{:?}", r.violation_kinds);
    assert!(r.peak_rss_bytes > 0);
    assert!(r.placements_per_sec > 0.0);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    dump::write_dump(&run, store.as_ref(), &ZonePolicy::default(), &mut f)
        .await
        .unwrap();
    drop(f);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(r#""type":"container""#))
            .count(),
        12_000
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/check-sim-dump.py"
    );
    let out = Command::new("python3").arg(script).arg(&path).output();
    match out {
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "outside checker: {stdout} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(v["violations"], 0);
            assert_eq!(v["containers"], 12_000);
        }
        Err(e) => panic!("python3 is needed to run scripts/check-sim-dump.py: {e}"),
    }

    // Plant a second replica of a group on a host it already uses: both
    // the in-process and the outside checker must see it.
    let (victim, host) = {
        let c: Container = json::decode(
            &store
                .range(keys::CONTAINERS, Default::default())
                .await
                .unwrap()
                .kvs[0],
        )
        .unwrap();
        (c.clone(), c.host.clone().unwrap())
    };
    let mut dup = victim.clone();
    dup.id = InstanceId::new(&victim.id.group_key(), 99_999);
    dup.host = Some(host);
    store
        .put(&keys::container(&dup.id), json::encode(&dup).unwrap(), None)
        .await
        .unwrap();
    let rep = checker::check(store.as_ref(), &run.groups, &ZonePolicy::default())
        .await
        .unwrap();
    assert!(
        rep.kinds.get("cap.host").copied().unwrap_or(0) >= 1,
        "{rep:?}"
    );
    assert!(rep.kinds.contains_key("allocation_mismatch"), "{rep:?}");
    let mut f = std::fs::File::create(&path).unwrap();
    dump::write_dump(&run, store.as_ref(), &ZonePolicy::default(), &mut f)
        .await
        .unwrap();
    drop(f);
    let o = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "outside checker missed the planted violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_run_matches_memory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("sim.redb").display());
    let store = jdos_store::open(&url).await.unwrap();
    let mut c = config(1);
    c.containers = 1500;
    c.store_url = url;
    let run = jdos_sim::run(&c, store).await.unwrap();
    assert_eq!(run.report.containers_placed, 1500);
    assert_eq!(run.report.violations, 0, "{:?}", run.report.violation_kinds);

    let mem = jdos_sim::run(&c, Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    assert_eq!(mem.report.containers_placed, 1500);
    // Same seed, one scheduler: the same plan whatever the backend.
    assert_eq!(
        mem.results.iter().map(|r| r.caps).collect::<Vec<_>>(),
        run.results.iter().map(|r| r.caps).collect::<Vec<_>>()
    );
}
