//! `deploy` and `scale` as workflow tasks over the platform layer, with
//! in-process fake agents: all running, survivors keep their IPs, a failed
//! pre-start hook leaves nothing behind, a crash mid-deploy duplicates
//! nothing and leaks no address.

mod ops_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use jdos_scheduler::commit::GroupPlacements;
use jdos_server::ops::{DeployParams, ScaleParams};
use jdos_store::json;
use jdos_types::group::{Hook, HookAction};
use jdos_types::{keys, ContainerPhase, Event, EventResult, Group, IpState, TaskState};
use ops_common::*;

fn deploy(g: &Group) -> jdos_workflow::NewTask {
    DeployParams {
        group: g.key(),
        timeout_secs: Some(30),
    }
    .task("alice")
}

fn scale(g: &Group, replicas: u32) -> jdos_workflow::NewTask {
    ScaleParams {
        group: g.key(),
        replicas,
        timeout_secs: Some(30),
    }
    .task("alice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_20_reaches_all_running_each_with_its_own_ip() {
    let fx = fixture(3).await;
    let g = group("shop", "web", 20);
    put_group(fx.store.as_ref(), &g).await;
    let t = run(&fx.srv.engine, deploy(&g)).await;
    assert_succeeded(&t);
    let names: Vec<&str> = t.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "read_target",
            "place",
            "pre_start_hooks",
            "publish",
            "wait_running",
            "post_start_hooks",
            "choose_victims",
            "pre_stop_hooks",
            "retire",
            "wait_gone",
            "finalize"
        ]
    );
    let cs = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(cs.len(), 20);
    assert!(
        cs.iter().all(|c| c.phase == ContainerPhase::Running),
        "{cs:#?}"
    );
    let ips: BTreeSet<_> = cs.iter().map(|c| c.ip.unwrap()).collect();
    assert_eq!(ips.len(), 20);
    assert_eq!(fx.agents.running(), 20);
    assert_allocations_match(fx.store.as_ref()).await;
    // Re-running the deploy changes nothing.
    let again = run(&fx.srv.engine, deploy(&g)).await;
    assert_succeeded(&again);
    assert_eq!(containers(fx.store.as_ref(), &g.key()).await, cs);
    // Task events carry the task's actor and department.
    let events: Vec<Event> = json::list_all(fx.store.as_ref(), keys::EVENTS)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.action == "task.succeeded"
        && e.object == t.id
        && e.department.as_deref() == Some("retail")
        && e.actor == "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_40_and_back_to_20_keeps_the_survivors_ips() {
    let fx = fixture(3).await;
    let g = group("shop", "web", 20);
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    let before: BTreeMap<u32, _> = containers(fx.store.as_ref(), &g.key())
        .await
        .into_iter()
        .map(|c| (c.id.index, (c.ip.unwrap(), c.host.clone().unwrap())))
        .collect();

    let up = run(&fx.srv.engine, scale(&g, 40)).await;
    assert_succeeded(&up);
    let cs = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(cs.len(), 40);
    assert!(cs.iter().all(|c| c.phase == ContainerPhase::Running));
    for c in &cs {
        if let Some((ip, host)) = before.get(&c.id.index) {
            assert_eq!((c.ip.unwrap(), c.host.as_ref().unwrap()), (*ip, host));
        }
    }
    let grp: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(grp.replicas, 40);
    assert_eq!(fx.agents.running(), 40);
    let at40: BTreeMap<u32, _> = cs.iter().map(|c| (c.id.index, c.ip.unwrap())).collect();

    let down = run(&fx.srv.engine, scale(&g, 20)).await;
    assert_succeeded(&down);
    let cs = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(cs.len(), 20);
    for c in &cs {
        assert_eq!(
            Some(&c.ip.unwrap()),
            at40.get(&c.id.index),
            "{} moved",
            c.id
        );
        assert_eq!(c.phase, ContainerPhase::Running);
    }
    assert_eq!(fx.agents.running(), 20);
    assert_allocations_match(fx.store.as_ref()).await;
    let ips = ips_of(fx.store.as_ref(), "shop").await;
    let assigned = ips.iter().filter(|a| a.state == IpState::Assigned).count();
    let quarantined = ips
        .iter()
        .filter(|a| a.state == IpState::Quarantined)
        .count();
    assert_eq!((assigned, quarantined), (20, 20));
    let rec: GroupPlacements = json::decode(
        &fx.store
            .get(&keys::placement(&g.key()))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec.containers.len(), 20);
    let victims = down
        .steps
        .iter()
        .find(|s| s.name == "choose_victims")
        .unwrap();
    assert!(
        victims.message.starts_with("20 to remove"),
        "{}",
        victims.message
    );
}

/// A webhook receiver answering `status` to every call.
async fn receiver(status: StatusCode) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                (status, "grant refused")
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/hook"), calls)
}

fn with_hook(mut g: Group, url: &str) -> Group {
    g.template.hooks.pre_start = vec![Hook {
        name: "db-grant".into(),
        action: HookAction::Webhook {
            url: url.into(),
            method: "POST".into(),
            headers: Default::default(),
        },
        timeout_ms: 1000,
        retries: 1,
    }];
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_start_hook_leaves_no_record_allocation_or_address() {
    let fx = fixture(2).await;
    let (url, calls) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let g = with_hook(group("shop", "web", 0), &url);
    put_group(fx.store.as_ref(), &g).await;
    let t = run(&fx.srv.engine, scale(&g, 5)).await;
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        t.error.contains("pre_start hook \"db-grant\" failed"),
        "{}",
        t.error
    );
    assert!(t.error.contains("answered 500"), "{}", t.error);
    assert!(calls.load(Ordering::SeqCst) >= 2, "retried");
    assert!(containers(fx.store.as_ref(), &g.key()).await.is_empty());
    assert!(
        ips_of(fx.store.as_ref(), "shop")
            .await
            .iter()
            .all(|a| a.state != IpState::Assigned),
        "an address is still assigned"
    );
    assert!(
        json::list_all::<jdos_types::agent::Assignment>(fx.store.as_ref(), keys::ASSIGN)
            .await
            .unwrap()
            .is_empty()
    );
    assert_allocations_match(fx.store.as_ref()).await;
    let allocs: Vec<jdos_types::topology::HostAllocation> =
        json::list_all(fx.store.as_ref(), keys::ALLOC)
            .await
            .unwrap();
    assert!(allocs.iter().all(|a| a.containers == 0));
    let grp: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(grp.replicas, 0, "replicas restored");
    assert_eq!(fx.agents.running(), 0);
    // Each hook run is an event, failures marked.
    let events: Vec<Event> = json::list_all(fx.store.as_ref(), keys::EVENTS)
        .await
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "hook.pre_start" && e.result == EventResult::Failure));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_once_per_container_around_start_and_stop() {
    let fx = fixture(2).await;
    let (url, calls) = receiver(StatusCode::OK).await;
    let mut g = with_hook(group("shop", "web", 4), &url);
    g.template.hooks.post_start = g.template.hooks.pre_start.clone();
    g.template.hooks.pre_stop = g.template.hooks.pre_start.clone();
    put_group(fx.store.as_ref(), &g).await;
    assert_succeeded(&run(&fx.srv.engine, deploy(&g)).await);
    assert_eq!(calls.load(Ordering::SeqCst), 8, "pre and post start × 4");
    assert_succeeded(&run(&fx.srv.engine, scale(&g, 1)).await);
    assert_eq!(calls.load(Ordering::SeqCst), 11, "pre-stop × 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_never_runs_fails_the_wait_naming_it() {
    let fx = fixture(2).await;
    fx.agents
        .hold_running
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let g = group("shop", "web", 2);
    put_group(fx.store.as_ref(), &g).await;
    let req = DeployParams {
        group: g.key(),
        timeout_secs: Some(1),
    }
    .task("alice");
    let t = run(&fx.srv.engine, req).await;
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        t.error
            .contains("2 of 2 container(s) not running after 1 s")
            && t.error.contains("shop/production/web/0 on langfang-")
            && t.error.contains("is starting"),
        "{}",
        t.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_deploy_resumes_without_duplicates_or_leaked_ips() {
    // Kill at different points of the deploy: during placement, between
    // hooks and publish, while waiting.
    for kill_at in ["place", "publish", "wait_running"] {
        let fx = fixture(3).await;
        let g = group("shop", "web", 20);
        put_group(fx.store.as_ref(), &g).await;
        let t = submit(&fx.srv.engine, deploy(&g)).await;
        let store = fx.store.clone();
        let id = t.id.clone();
        until(&format!("step {kill_at}"), || {
            let store = store.clone();
            let id = id.clone();
            async move {
                let kv = store.get(&keys::task(&id)).await.unwrap().unwrap();
                let t: jdos_types::Task = json::decode(&kv).unwrap();
                t.steps
                    .iter()
                    .find(|s| s.name == kill_at)
                    .is_some_and(|s| s.state != TaskState::Pending)
            }
        })
        .await;
        let Fx { store, srv, agents } = fx;
        srv.kill().await;
        // A new server process on the same store, same worker id.
        let srv2 = server(store.clone(), "server-1").await;
        let done = srv2.engine.wait(&t.id, T).await.unwrap();
        assert_succeeded(&done);
        let cs = containers(store.as_ref(), &g.key()).await;
        assert_eq!(cs.len(), 20, "killed at {kill_at}");
        let idx: BTreeSet<u32> = cs.iter().map(|c| c.id.index).collect();
        assert_eq!(idx.len(), 20);
        assert!(cs.iter().all(|c| c.phase == ContainerPhase::Running));
        let ips = ips_of(store.as_ref(), "shop").await;
        assert_eq!(ips.len(), 20, "killed at {kill_at}: {ips:#?}");
        let held: BTreeSet<_> = cs.iter().map(|c| c.ip.unwrap()).collect();
        assert!(ips
            .iter()
            .all(|a| held.contains(&a.ip) && a.state == IpState::Assigned));
        assert_eq!(agents.running(), 20);
        assert_allocations_match(store.as_ref()).await;
        drop(agents);
        srv2.kill().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
