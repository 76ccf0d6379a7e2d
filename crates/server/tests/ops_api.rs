//! The operations' HTTP API: submit (202 with the task), follow, list,
//! cancel; bad input refused with its field and nothing queued; developer
//! tokens scoped to their department.

mod ops_common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jdos_server::{auth, router};
use jdos_store::json as sjson;
use jdos_types::{keys, Task};
use ops_common::*;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    app: Router,
    admin: String,
}

async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    let req = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            req.body(Body::from(b.to_string())).unwrap()
        }
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, v)
}

async fn setup() -> (Fx, Api) {
    let fx = fixture(2).await;
    let admin = auth::bootstrap_admin(&fx.srv.st, None)
        .await
        .unwrap()
        .unwrap();
    let api = Api {
        app: router(fx.srv.st.clone()),
        admin,
    };
    (fx, api)
}

async fn token(api: &Api, name: &str, role: &str, dept: Option<&str>) -> String {
    let (s, v) = call(
        api,
        "POST",
        "/api/v1/tokens",
        &api.admin,
        Some(json!({"name": name, "role": role, "department": dept})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn follow(api: &Api, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (s, v) = call(api, "GET", &format!("/api/v1/tasks/{id}"), token, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if matches!(
            v["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "task {id} still {}", v["state"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tasks_in_store(fx: &Fx) -> usize {
    sjson::list_all::<Task>(fx.store.as_ref(), keys::TASKS)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_through_the_api_is_a_task_to_follow_and_list() {
    let (fx, api) = setup().await;
    let g = group("shop", "web", 0);
    put_group(fx.store.as_ref(), &g).await;
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/groups/shop/production/web/scale",
        &api.admin,
        Some(json!({"replicas": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["kind"], "scale");
    assert_eq!(v["department"], "retail");
    assert_eq!(v["object"], "group shop/production/web");
    let id = v["id"].as_str().unwrap().to_string();
    let done = follow(&api, &api.admin, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["steps"].as_array().unwrap().len(), 11);
    assert_eq!(containers(fx.store.as_ref(), &g.key()).await.len(), 3);
    let (s, v) = call(
        &api,
        "GET",
        "/api/v1/tasks?app=shop&kind=scale",
        &api.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["id"], id.as_str());
    // A finished task cannot be cancelled into another state.
    let (s, v) = call(
        &api,
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        &api.admin,
        None,
    )
    .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("succeeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_their_field_and_queue_nothing() {
    let (fx, api) = setup().await;
    put_group(fx.store.as_ref(), &group("shop", "web", 1)).await;
    let cases = [
        (
            "/api/v1/groups/shop/production/web/scale",
            json!({"replicas": 200000}),
            "replicas",
        ),
        (
            "/api/v1/groups/shop/production/web/resize",
            json!({}),
            "cpu_millis",
        ),
        (
            "/api/v1/groups/shop/production/web/resize",
            json!({"memory_bytes": 1}),
            "memory_bytes",
        ),
        (
            "/api/v1/groups/shop/production/web/migrate",
            json!({}),
            "indexes",
        ),
        (
            "/api/v1/groups/shop/production/web/rollout",
            json!({"max_unavailable": 0}),
            "max_unavailable",
        ),
        (
            "/api/v1/groups/shop/production/web/rollout",
            json!({"template": {"image": "", "resources": {"cpu_millis": 0, "memory_bytes": 0}}}),
            "template.image",
        ),
        (
            "/api/v1/scale",
            json!({"selector": {}, "replicas": "+1"}),
            "selector",
        ),
    ];
    for (path, body, field) in cases {
        let (s, v) = call(&api, "POST", path, &api.admin, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert_eq!(v["field"], field, "{path} {body}: {v}");
    }
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/scale",
        &api.admin,
        Some(json!({"selector": {"department": "retail"}, "replicas": "50%"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/groups/shop/production/nope/scale",
        &api.admin,
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(tasks_in_store(&fx).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developers_act_on_and_see_their_own_department_only() {
    let (fx, api) = setup().await;
    put_app(fx.store.as_ref(), "books", "media", &[]).await;
    put_group(fx.store.as_ref(), &group("shop", "web", 0)).await;
    put_group(fx.store.as_ref(), &group("books", "web", 0)).await;
    let retail = token(&api, "dev-retail", "developer", Some("retail")).await;
    let media = token(&api, "dev-media", "developer", Some("media")).await;
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/groups/books/production/web/scale",
        &retail,
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/groups/shop/production/web/scale",
        &retail,
        Some(json!({"replicas": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["actor"], "dev-retail");
    follow(&api, &retail, &id).await;
    let (s, _) = call(&api, "GET", &format!("/api/v1/tasks/{id}"), &media, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = call(&api, "GET", "/api/v1/tasks", &media, None).await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
    // A developer's batch is its own department's, whatever it asks.
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/scale",
        &retail,
        Some(json!({"selector": {"department": "media"}, "replicas": "+1"})),
    )
    .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("selector.department"))
    );
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/scale",
        &retail,
        Some(json!({"selector": {"tier": "web"}, "replicas": "+1"})),
    )
    .await;
    // `tier` is not a selector field: it is refused as unknown.
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = call(
        &api,
        "POST",
        "/api/v1/scale",
        &retail,
        Some(json!({"selector": {"labels": {"tier": "web"}}, "replicas": "+1"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["params"]["selector"]["department"], "retail");
    let done = follow(&api, &retail, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        containers(fx.store.as_ref(), &group("shop", "web", 0).key())
            .await
            .len(),
        2
    );
    assert!(
        containers(fx.store.as_ref(), &group("books", "web", 0).key())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_group_and_app_through_the_api() {
    let (fx, api) = setup().await;
    put_group(fx.store.as_ref(), &group("shop", "web", 0)).await;
    let (s, v) = call(
        &api,
        "DELETE",
        "/api/v1/groups/shop/production/web",
        &api.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["kind"], "delete_group");
    assert_eq!(
        follow(&api, &api.admin, v["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    let (s, v) = call(&api, "POST", "/api/v1/apps/shop/delete", &api.admin, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        follow(&api, &api.admin, v["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    let (s, _) = call(&api, "GET", "/api/v1/apps/shop", &api.admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
