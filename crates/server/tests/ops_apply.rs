//! `POST /api/v1/apply` queues the tasks that converge its groups, in the
//! transaction that writes them, and in-process fake agents run them: a new
//! group is deployed, a replica change scaled, a template change rolled,
//! a removed group deleted, and a re-apply of the same spec queues nothing.

mod ops_common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jdos_server::{auth, router};
use jdos_store::json as sjson;
use jdos_types::agent::Assignment;
use jdos_types::{keys, ContainerPhase, GroupKey, IpState, Task, TaskState};
use ops_common::*;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn apply(app: &Router, token: &str, spec: &Value) -> Value {
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/apply")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(spec.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn spec(groups: Value, image: &str) -> Value {
    json!({
        "apiVersion": "jdos/v1",
        "kind": "App",
        "name": "web",
        "owner": "alice",
        "department": "retail",
        "template": {
            "image": image,
            "command": ["httpd", "-f"],
            "resources": {"cpu": "250m", "memory": "64Mi"},
            "placement": {"max_per_host": 4}
        },
        "groups": groups
    })
}

fn grp(name: &str, replicas: u32) -> Value {
    json!({"env": "production", "name": name, "datacenter": "langfang", "replicas": replicas})
}

/// `(kind, group)` of each task an apply answered.
fn submitted(r: &Value) -> Vec<(String, String)> {
    r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_string(),
                t["params"]["group"]["group"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits for every task of an apply; all must succeed.
async fn wait_all(fx: &Fx, r: &Value) -> Vec<Task> {
    let mut out = Vec::new();
    for t in r["tasks"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let done = fx.srv.engine.wait(id, T).await.unwrap();
        assert_succeeded(&done);
        out.push(done);
    }
    out
}

fn key(name: &str) -> GroupKey {
    GroupKey::new("web", "production", name)
}

/// Index → IP of the group's running containers.
async fn running(fx: &Fx, name: &str) -> BTreeMap<u32, String> {
    containers(fx.store.as_ref(), &key(name))
        .await
        .into_iter()
        .filter(|c| c.phase == ContainerPhase::Running)
        .map(|c| (c.id.index, c.ip.unwrap().to_string()))
        .collect()
}

async fn images(fx: &Fx, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in containers(fx.store.as_ref(), &key(name)).await {
        let host = c.host.unwrap();
        let kv = fx
            .store
            .get(&keys::assignment(&host, &c.id))
            .await
            .unwrap()
            .unwrap();
        let a: Assignment = sjson::decode(&kv).unwrap();
        out.push(a.container.image);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_deploys_scales_rolls_and_deletes_through_tasks() {
    let fx = fixture(2).await;
    let admin = auth::bootstrap_admin(&fx.srv.st, None)
        .await
        .unwrap()
        .unwrap();
    let app = router(fx.srv.st.clone());

    // Two new groups: a deploy each, containers running through the agents.
    let v1 = spec(json!([grp("a", 3), grp("b", 2)]), "jdos-busybox:latest");
    let r = apply(&app, &admin, &v1).await;
    assert_eq!(
        submitted(&r),
        [
            ("deploy".to_string(), "a".to_string()),
            ("deploy".to_string(), "b".to_string())
        ]
    );
    wait_all(&fx, &r).await;
    let a_ips = running(&fx, "a").await;
    assert_eq!(a_ips.len(), 3);
    assert_eq!(running(&fx, "b").await.len(), 2);
    assert_eq!(fx.agents.running(), 5);

    // The same spec again: no task (the agents keep writing reports, so
    // the store's revision is no witness here; `tests/apply.rs` checks it).
    let r = apply(&app, &admin, &v1).await;
    assert_eq!(r["tasks"], json!([]));
    assert_eq!(r["diff"]["app"]["change"], "unchanged");

    // More replicas: a scale; the survivors keep their IPs.
    let v2 = spec(json!([grp("a", 5), grp("b", 2)]), "jdos-busybox:latest");
    let r = apply(&app, &admin, &v2).await;
    assert_eq!(submitted(&r), [("scale".to_string(), "a".to_string())]);
    wait_all(&fx, &r).await;
    let grown = running(&fx, "a").await;
    assert_eq!(grown.len(), 5);
    for (i, ip) in &a_ips {
        assert_eq!(grown.get(i), Some(ip), "container a/{i} kept its IP");
    }

    // A new image: a rolling update of both groups, in place.
    let v3 = spec(json!([grp("a", 5), grp("b", 2)]), "jdos-busybox:v2");
    let r = apply(&app, &admin, &v3).await;
    assert_eq!(
        submitted(&r),
        [
            ("rolling".to_string(), "a".to_string()),
            ("rolling".to_string(), "b".to_string())
        ]
    );
    let tasks = wait_all(&fx, &r).await;
    assert!(
        tasks[0].steps[2].message.contains("5 container(s) rolled"),
        "{:?}",
        tasks[0].steps
    );
    assert_eq!(images(&fx, "a").await, vec!["jdos-busybox:v2"; 5]);
    assert_eq!(images(&fx, "b").await, vec!["jdos-busybox:v2"; 2]);
    assert_eq!(running(&fx, "a").await, grown, "rolled in place");

    // Group b removed: a delete_group task removes its containers, then
    // its record.
    let v4 = spec(json!([grp("a", 5)]), "jdos-busybox:v2");
    let r = apply(&app, &admin, &v4).await;
    assert_eq!(
        submitted(&r),
        [("delete_group".to_string(), "b".to_string())]
    );
    wait_all(&fx, &r).await;
    assert!(fx
        .store
        .get(&keys::group(&key("b")))
        .await
        .unwrap()
        .is_none());
    assert!(containers(fx.store.as_ref(), &key("b")).await.is_empty());
    until("the agents removed group b", || async {
        fx.agents.running() == 5
    })
    .await;
    assert_allocations_match(fx.store.as_ref()).await;
    let ips = ips_of(fx.store.as_ref(), "web").await;
    let held = |state| ips.iter().filter(|a| a.state == state).count();
    assert_eq!(
        (held(IpState::Assigned), held(IpState::Quarantined)),
        (5, 2),
        "group b's addresses went to quarantine"
    );

    // Converged: re-applying queues nothing.
    let r = apply(&app, &admin, &v4).await;
    assert_eq!(r["tasks"], json!([]));
    let all: Vec<Task> = sjson::list_all(fx.store.as_ref(), keys::TASKS)
        .await
        .unwrap();
    assert_eq!(all.len(), 6, "2 deploys, 1 scale, 2 rollings, 1 delete");
    assert!(all.iter().all(|t| t.state == TaskState::Succeeded));
    assert!(all
        .iter()
        .all(|t| t.department.as_deref() == Some("retail")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_queues_nothing() {
    let fx = fixture(1).await;
    let admin = auth::bootstrap_admin(&fx.srv.st, None)
        .await
        .unwrap()
        .unwrap();
    let app = router(fx.srv.st.clone());
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/apply?dry_run=true")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from(
            spec(json!([grp("a", 3)]), "jdos-busybox:latest").to_string(),
        ))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(fx.store.get(&keys::app("web")).await.unwrap().is_none());
    assert!(fx
        .store
        .get(&keys::group(&key("a")))
        .await
        .unwrap()
        .is_none());
    assert!(sjson::list_all::<Task>(fx.store.as_ref(), keys::TASKS)
        .await
        .unwrap()
        .is_empty());
}
