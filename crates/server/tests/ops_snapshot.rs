//! `snapshot_scale` with in-process fake agents: the source's agent commits
//! it once through its work order, the clones run from the snapshot image on
//! the source's host, the group template keeps its image; a server killed
//! while the agent is committing resumes with one commit and no duplicate;
//! bad requests and a scale-out that does not fit leave nothing behind.

mod ops_common;

use jdos_server::ops::{DeployParams, SnapshotScaleParams};
use jdos_store::json;
use jdos_types::agent::{Assignment, SnapshotReport};
use std::sync::atomic::Ordering;

use jdos_types::{keys, ContainerPhase, Group, TaskState};
use ops_common::*;

fn deploy(g: &Group) -> jdos_workflow::NewTask {
    DeployParams {
        group: g.key(),
        timeout_secs: Some(30),
    }
    .task("alice")
}

fn snap(g: &Group, replicas: u32, source_index: Option<u32>) -> SnapshotScaleParams {
    SnapshotScaleParams {
        group: g.key(),
        replicas,
        source_index,
        any_host: false,
        timeout_secs: Some(30),
    }
}

async fn order_of(fx: &Fx, host: &str, id: &jdos_types::InstanceId) -> Assignment {
    let kv = fx
        .store
        .get(&keys::assignment(host, id))
        .await
        .unwrap()
        .expect("work order");
    json::decode(&kv).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_run_from_a_snapshot_committed_once_by_the_sources_agent() {
    let fx = fixture(2).await;
    let g = group("shop", "web", 2);
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    let before = containers(fx.store.as_ref(), &g.key()).await;
    let src = before.iter().find(|c| c.id.index == 1).unwrap().clone();
    let src_host = src.host.clone().unwrap();

    let t = run(&fx.srv.engine, snap(&g, 4, Some(1)).task("alice")).await;
    assert_succeeded(&t);
    let names: Vec<&str> = t.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "choose_source",
            "order_commit",
            "wait_commit",
            "clear_order",
            "set_replicas",
            "place",
            "pre_start_hooks",
            "publish",
            "wait_running",
            "post_start_hooks"
        ]
    );
    let reference = format!("jdos-snapshot/shop-web:{}", t.id);
    // Committed exactly once, by the source host's engine only.
    for (host, d) in &fx.agents.drivers {
        let images = d.images();
        if *host == src_host {
            assert_eq!(images.len(), 1, "{images:?}");
            assert!(images.contains_key(&reference), "{images:?}");
            assert_eq!(d.calls(jdos_runtime::FakeOp::Commit), 1);
        } else {
            assert!(images.is_empty(), "{host} committed {images:?}");
        }
    }
    let rep: SnapshotReport = json::decode(
        &fx.store
            .get(&keys::snapshot(&reference))
            .await
            .unwrap()
            .expect("outcome kept"),
    )
    .unwrap();
    assert!(rep.error.is_empty() && rep.image_id.starts_with("sha256:"));
    // The order is withdrawn once its outcome is kept.
    assert_eq!(order_of(&fx, &src_host, &src.id).await.snapshot, None);

    let after = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|c| c.phase == ContainerPhase::Running));
    for c in &after {
        let order = order_of(&fx, c.host.as_deref().unwrap(), &c.id).await;
        if c.id.index < 2 {
            // The originals are untouched.
            assert_eq!(Some(c), before.iter().find(|b| b.id == c.id));
            assert_eq!(order.template.image, "jdos-busybox:latest");
        } else {
            assert_eq!(c.image, reference, "{}", c.id);
            assert_eq!(order.template.image, reference);
            assert_eq!(order.container.image, reference);
            assert_eq!(c.host.as_deref(), Some(src_host.as_str()), "pinned");
            let spec = fx.agents.drivers[&src_host].spec_of(&c.id).unwrap();
            assert_eq!(spec.image, reference, "the engine runs the snapshot");
        }
    }
    let group: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(group.replicas, 4);
    assert_eq!(group.template.image, "jdos-busybox:latest", "template kept");
    assert_allocations_match(fx.store.as_ref()).await;
}

/// A source that is restarting (a failed probe under load) is waited for
/// within the step's retries instead of failing the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_source_is_waited_for() {
    let fx = fixture(2).await;
    let g = group("shop", "web", 1);
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    let src = containers(fx.store.as_ref(), &g.key()).await[0].clone();
    let key = keys::container(&src.id);
    let set_phase = |phase: ContainerPhase| {
        let mut c = src.clone();
        c.phase = phase;
        let store = fx.store.clone();
        let key = key.clone();
        async move {
            store
                .put(&key, json::encode(&c).unwrap(), None)
                .await
                .unwrap()
        }
    };
    // As the server sees a container its agent is restarting.
    set_phase(ContainerPhase::Starting).await;
    let t = submit(&fx.srv.engine, snap(&g, 2, Some(0)).task("alice")).await;
    // Running again once the first attempt found it starting (the test
    // engine retries after 20 ms, then 40 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = fx.srv.engine.get(&t.id).await.unwrap().unwrap();
        if now.steps[0].attempts >= 1 {
            assert_eq!(now.state, TaskState::Running, "{now:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no first attempt");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    set_phase(ContainerPhase::Running).await;
    let t = fx.srv.engine.wait(&t.id, T).await.unwrap();
    assert_succeeded(&t);
    let first = &t.steps[0];
    assert_eq!(first.name, "choose_source");
    assert!(first.attempts >= 2, "{first:?}");

    // A stopped source is not worth waiting for.
    set_phase(ContainerPhase::Stopped).await;
    let t = run(&fx.srv.engine, snap(&g, 4, Some(0)).task("alice")).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.steps[0].attempts, 1, "{:?}", t.steps[0]);
    assert!(t.error.contains("is stopped"), "{}", t.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_no_room_leave_nothing_behind() {
    let fx = fixture(2).await;
    let g = group("shop", "web", 2);
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    let before = containers(fx.store.as_ref(), &g.key()).await;

    // Refused at submit time: nothing to add.
    let err = fx
        .srv
        .engine
        .submit(snap(&g, 0, None).task("alice"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("replicas"), "{err}");

    // Refused when it runs: not above the live count; no such source.
    for (p, why) in [
        (snap(&g, 2, None), "needs replicas above that"),
        (snap(&g, 4, Some(9)), "no container with index 9"),
    ] {
        let t = run(&fx.srv.engine, p.task("alice")).await;
        assert_eq!(t.state, TaskState::Failed);
        assert!(t.error.contains(why), "{}", t.error);
    }

    // Pinned to the source's host with max 4 per host: 8 do not fit. The
    // commit happened; the placement is undone and the order withdrawn.
    let t = run(&fx.srv.engine, snap(&g, 8, Some(0)).task("alice")).await;
    assert_eq!(t.state, TaskState::Failed, "{:#?}", t.steps);
    let failed = t.steps.iter().find(|s| s.name == "place").unwrap();
    assert!(!failed.message.is_empty() || !t.error.is_empty());
    let src_host = before[0].host.clone().unwrap();
    assert_eq!(order_of(&fx, &src_host, &before[0].id).await.snapshot, None);
    let after = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(after, before, "nothing left placed");
    let group: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(group.replicas, 2, "replicas restored");
    assert_allocations_match(fx.store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_the_agent_commits_resumes_with_one_commit() {
    let fx = fixture(2).await;
    let g = group("shop", "web", 2);
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    fx.agents.hold_snapshots.store(true, Ordering::SeqCst);
    let t = submit(&fx.srv.engine, snap(&g, 4, None).task("alice")).await;
    let store = fx.store.clone();
    let id = t.id.clone();
    until("the commit ordered", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            let kv = store.get(&keys::task(&id)).await.unwrap().unwrap();
            let t: jdos_types::Task = json::decode(&kv).unwrap();
            t.steps
                .iter()
                .any(|s| s.name == "wait_commit" && s.state != TaskState::Pending)
        }
    })
    .await;
    let Fx { store, srv, agents } = fx;
    srv.kill().await;
    agents.hold_snapshots.store(false, Ordering::SeqCst);
    let srv2 = server(store.clone(), "server-1").await;
    let done = srv2.engine.wait(&t.id, T).await.unwrap();
    assert_succeeded(&done);
    let commits: u64 = agents
        .drivers
        .values()
        .map(|d| d.calls(jdos_runtime::FakeOp::Commit))
        .sum();
    assert_eq!(commits, 1, "one commit across the restart");
    let cs = containers(store.as_ref(), &g.key()).await;
    assert_eq!(cs.len(), 4);
    let reference = format!("jdos-snapshot/shop-web:{}", t.id);
    assert_eq!(cs.iter().filter(|c| c.image == reference).count(), 2);
    assert!(cs.iter().all(|c| c.phase == ContainerPhase::Running));
    assert_eq!(agents.running(), 4);
    assert_allocations_match(store.as_ref()).await;
    srv2.kill().await;
}
