//! `migrate`, `rolling`, `resize`, `delete_group`, `delete_app` and
//! `batch_scale` over the platform layer with in-process fake agents.

mod ops_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jdos_server::ops::{
    BatchScaleParams, DeleteAppParams, DeleteGroupParams, DeployParams, MigrateParams,
    ReplicaChange, ResizeParams, RollingParams, Selector,
};
use jdos_store::json;
use jdos_types::{keys, ContainerPhase, Group, IpState, Task, TaskState};
use ops_common::*;

async fn deployed(fx: &Fx, g: &Group) {
    put_group(fx.store.as_ref(), g).await;
    let t = run(
        &fx.srv.engine,
        DeployParams {
            group: g.key(),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_containers_off_their_hosts_with_the_same_ips() {
    let fx = fixture(3).await;
    let g = group("shop", "web", 6);
    deployed(&fx, &g).await;
    let before: BTreeMap<u32, _> = containers(fx.store.as_ref(), &g.key())
        .await
        .into_iter()
        .map(|c| (c.id.index, c))
        .collect();
    let t = run(
        &fx.srv.engine,
        MigrateParams {
            group: g.key(),
            indexes: vec![0, 1],
            from_host: None,
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    let after = containers(fx.store.as_ref(), &g.key()).await;
    assert_eq!(after.len(), 6);
    for c in &after {
        let old = &before[&c.id.index];
        assert_eq!(c.ip, old.ip, "{} changed its IP", c.id);
        assert_eq!(c.phase, ContainerPhase::Running);
        if c.id.index <= 1 {
            assert_ne!(c.host, old.host, "{} did not move", c.id);
        } else {
            assert_eq!(c.host, old.host, "{} moved", c.id);
        }
    }
    assert_eq!(fx.agents.running(), 6);
    assert_allocations_match(fx.store.as_ref()).await;

    // Everything of the group on one host.
    let host = after[2].host.clone().unwrap();
    let on_host: BTreeSet<u32> = after
        .iter()
        .filter(|c| c.host.as_ref() == Some(&host))
        .map(|c| c.id.index)
        .collect();
    let t = run(
        &fx.srv.engine,
        MigrateParams {
            group: g.key(),
            indexes: vec![],
            from_host: Some(host.clone()),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    let again = containers(fx.store.as_ref(), &g.key()).await;
    assert!(again.iter().all(|c| c.host.as_ref() != Some(&host)));
    for c in &again {
        assert_eq!(c.ip, before[&c.id.index].ip);
    }
    assert!(!on_host.is_empty());
    assert_allocations_match(fx.store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_of_a_missing_index_fails_clearly_and_touches_nothing() {
    let fx = fixture(2).await;
    let g = group("shop", "web", 2);
    deployed(&fx, &g).await;
    let before = containers(fx.store.as_ref(), &g.key()).await;
    let t = run(
        &fx.srv.engine,
        MigrateParams {
            group: g.key(),
            indexes: vec![7],
            from_host: None,
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        t.error.contains("no live container with index 7"),
        "{}",
        t.error
    );
    assert_eq!(containers(fx.store.as_ref(), &g.key()).await, before);
}

/// Samples the group's non-running count until told to stop; returns the
/// largest seen.
fn watch_down(fx: &Fx, g: &Group) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let store = fx.store.clone();
    let key = g.key();
    let h = tokio::spawn(async move {
        let mut max = 0;
        while !s.load(Ordering::SeqCst) {
            let cs = containers(store.as_ref(), &key).await;
            let down = cs
                .iter()
                .filter(|c| c.phase != ContainerPhase::Running)
                .count() as u32;
            max = max.max(down);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        max
    });
    (stop, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_never_has_more_than_max_unavailable_down() {
    let fx = fixture(3).await;
    let g = group("shop", "web", 10);
    deployed(&fx, &g).await;
    let before: BTreeMap<u32, _> = containers(fx.store.as_ref(), &g.key())
        .await
        .into_iter()
        .map(|c| (c.id.index, (c.ip, c.host)))
        .collect();
    let creates = fx.agents.creates.load(Ordering::SeqCst);
    let (stop, sampler) = watch_down(&fx, &g);
    let t = run(
        &fx.srv.engine,
        RollingParams {
            group: g.key(),
            max_unavailable: 3,
            restart: true,
            template: None,
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let max_down = sampler.await.unwrap();
    assert_succeeded(&t);
    assert!(max_down <= 3, "{max_down} down at once");
    assert!(max_down >= 1, "the sampler never saw a restart");
    assert_eq!(
        fx.agents.creates.load(Ordering::SeqCst) - creates,
        10,
        "every container recreated once"
    );
    let roll = t.steps.iter().find(|s| s.name == "roll").unwrap();
    assert!(
        roll.message
            .starts_with("10 container(s) rolled, 3 at a time"),
        "{}",
        roll.message
    );
    for c in containers(fx.store.as_ref(), &g.key()).await {
        assert_eq!((c.ip, c.host), before[&c.id.index], "{} moved", c.id);
        assert_eq!(c.phase, ContainerPhase::Running);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_rolls_only_what_changed_to_the_new_template() {
    let fx = fixture(3).await;
    let g = group("shop", "web", 5);
    deployed(&fx, &g).await;
    let mut t2 = g.template.clone();
    t2.image = "jdos-busybox:v2".into();
    t2.env.insert("GREETING".into(), "hi".into());
    let (stop, sampler) = watch_down(&fx, &g);
    let t = run(
        &fx.srv.engine,
        RollingParams {
            group: g.key(),
            max_unavailable: 1,
            restart: false,
            template: Some(Box::new(t2.clone())),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    assert_succeeded(&t);
    assert!(sampler.await.unwrap() <= 1);
    for c in containers(fx.store.as_ref(), &g.key()).await {
        assert_eq!(c.image, "jdos-busybox:v2");
        let host = c.host.clone().unwrap();
        let spec = fx.agents.drivers[&host].spec_of(&c.id).unwrap();
        assert_eq!(spec.image, "jdos-busybox:v2");
        assert_eq!(spec.env.get("GREETING").map(String::as_str), Some("hi"));
    }
    let grp: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(grp.template, t2);
    // Nothing stale left: a second update rolls nothing.
    let again = run(
        &fx.srv.engine,
        RollingParams {
            group: g.key(),
            max_unavailable: 1,
            restart: false,
            template: None,
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&again);
    let plan = again.steps.iter().find(|s| s.name == "plan").unwrap();
    assert!(
        plan.message.starts_with("0 container(s)"),
        "{}",
        plan.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_is_live_where_the_host_has_room_and_migrates_the_rest() {
    let fx = fixture(2).await;
    // Binpack stacks the four on few hosts (16 cpu each): at 9 cpu only the
    // first container of each host still fits there, the others move.
    let mut g = group("shop", "web", 4);
    g.placement.strategy = jdos_types::group::PlacementStrategy::Binpack;
    g.placement.max_per_rack = Some(4);
    g.placement.max_per_switch = Some(4);
    deployed(&fx, &g).await;
    let cs = containers(fx.store.as_ref(), &g.key()).await;
    let hosts: BTreeSet<_> = cs.iter().map(|c| c.host.clone().unwrap()).collect();
    assert!(hosts.len() < 4, "binpack stacked some: {hosts:?}");
    let ips: BTreeMap<u32, _> = cs.iter().map(|c| (c.id.index, c.ip)).collect();
    let creates = fx.agents.creates.load(Ordering::SeqCst);
    let t = run(
        &fx.srv.engine,
        ResizeParams {
            group: g.key(),
            cpu_millis: Some(9000),
            memory_bytes: None,
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    let (in_place, to_move) = (hosts.len(), 4 - hosts.len());
    let step = t
        .steps
        .iter()
        .find(|s| s.name == "resize_in_place")
        .unwrap();
    assert!(
        step.message.starts_with(&format!(
            "{in_place} resized in place; {to_move} to migrate"
        )),
        "{}",
        step.message
    );
    let after = containers(fx.store.as_ref(), &g.key()).await;
    assert!(after.iter().all(|c| c.resources.cpu_millis == 9000));
    assert!(after.iter().all(|c| c.phase == ContainerPhase::Running));
    for c in &after {
        assert_eq!(c.ip, ips[&c.id.index]);
    }
    let moved = after
        .iter()
        .filter(|c| !hosts.contains(c.host.as_ref().unwrap()))
        .count();
    assert_eq!(moved, to_move);
    // Those in place were updated live; only the moved ones were created.
    until("live updates", || async {
        fx.agents.live_updates.load(Ordering::SeqCst) == in_place as u64
    })
    .await;
    assert_eq!(
        fx.agents.creates.load(Ordering::SeqCst) - creates,
        to_move as u64
    );
    assert_allocations_match(fx.store.as_ref()).await;
    let grp: Group =
        json::decode(&fx.store.get(&keys::group(&g.key())).await.unwrap().unwrap()).unwrap();
    assert_eq!(grp.template.resources.cpu_millis, 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_group_and_delete_app_remove_everything() {
    let fx = fixture(2).await;
    let web = group("shop", "web", 3);
    let api = group("shop", "api", 2);
    deployed(&fx, &web).await;
    deployed(&fx, &api).await;
    let t = run(
        &fx.srv.engine,
        DeleteGroupParams {
            group: web.key(),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    assert!(containers(fx.store.as_ref(), &web.key()).await.is_empty());
    assert!(fx
        .store
        .get(&keys::group(&web.key()))
        .await
        .unwrap()
        .is_none());
    assert!(fx
        .store
        .get(&keys::placement(&web.key()))
        .await
        .unwrap()
        .is_none());
    assert_eq!(containers(fx.store.as_ref(), &api.key()).await.len(), 2);
    assert_eq!(fx.agents.running(), 2);

    let t = run(
        &fx.srv.engine,
        DeleteAppParams {
            app: "shop".into(),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    assert!(fx.store.get(&keys::app("shop")).await.unwrap().is_none());
    assert!(json::list_all::<Group>(fx.store.as_ref(), keys::GROUPS)
        .await
        .unwrap()
        .is_empty());
    assert!(
        json::list_all::<jdos_types::Container>(fx.store.as_ref(), keys::CONTAINERS)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fx.agents.running(), 0);
    assert!(ips_of(fx.store.as_ref(), "shop")
        .await
        .iter()
        .all(|a| a.state == IpState::Quarantined));
    assert_allocations_match(fx.store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_scale_grows_every_selected_group_through_child_tasks() {
    let fx = fixture(3).await;
    put_app(fx.store.as_ref(), "cart", "retail", &[("tier", "web")]).await;
    put_app(fx.store.as_ref(), "books", "media", &[("tier", "web")]).await;
    let a = group("shop", "web", 2);
    let b = group("cart", "web", 4);
    let c = group("books", "web", 2);
    for g in [&a, &b, &c] {
        deployed(&fx, g).await;
    }
    let t = run(
        &fx.srv.engine,
        BatchScaleParams {
            selector: Selector::parse("department=retail,tier=web").unwrap(),
            replicas: "+50%".parse::<ReplicaChange>().unwrap(),
            timeout_secs: Some(30),
        }
        .task("alice"),
    )
    .await;
    assert_succeeded(&t);
    assert_eq!(t.app, "_batch");
    assert_eq!(containers(fx.store.as_ref(), &a.key()).await.len(), 3);
    assert_eq!(containers(fx.store.as_ref(), &b.key()).await.len(), 6);
    assert_eq!(
        containers(fx.store.as_ref(), &c.key()).await.len(),
        2,
        "other department untouched"
    );
    let children: Vec<Task> = fx
        .srv
        .engine
        .list(&jdos_workflow::TaskFilter {
            kind: Some("scale".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 2);
    assert!(children
        .iter()
        .all(|c| c.state == TaskState::Succeeded && c.department.as_deref() == Some("retail")));
    let apps: BTreeSet<&str> = children.iter().map(|c| c.app.as_str()).collect();
    assert_eq!(apps, BTreeSet::from(["shop", "cart"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_scale_out_stops_and_reports_cancelled() {
    let fx = fixture(2).await;
    fx.agents.hold_running.store(true, Ordering::SeqCst);
    let g = group("shop", "web", 2);
    put_group(fx.store.as_ref(), &g).await;
    let req = DeployParams {
        group: g.key(),
        timeout_secs: Some(60),
    }
    .task("alice");
    let t = submit(&fx.srv.engine, req).await;
    let store = fx.store.clone();
    let id = t.id.clone();
    until("the wait step", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            let kv = store.get(&keys::task(&id)).await.unwrap().unwrap();
            let t: Task = json::decode(&kv).unwrap();
            t.steps
                .iter()
                .any(|s| s.name == "wait_running" && s.state == TaskState::Running)
        }
    })
    .await;
    fx.srv.engine.cancel(&t.id, "bob").await.unwrap();
    let done = fx.srv.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(done.state, TaskState::Cancelled, "{done:?}");
}
