//! `POST /api/v1/apply`: dry runs, idempotency, department scope, and bad
//! specs that write nothing; the group and container lists it feeds; the
//! events long-poll.

mod common;

use axum::http::StatusCode;
use common::api;
use serde_json::{json, Value};

fn spec() -> Value {
    json!({
        "apiVersion": "jdos/v1",
        "kind": "App",
        "name": "web",
        "owner": "alice",
        "department": "retail",
        "template": {
            "image": "jdos-busybox:latest",
            "command": ["httpd", "-f", "-p", "80"],
            "resources": {"cpu": "250m", "memory": "64Mi"},
            "ports": [80],
            "health": {"probe": {"kind": "http", "port": 80, "path": "/"}}
        },
        "groups": [
            {"env": "production", "name": "web-lf", "datacenter": "langfang", "replicas": 2},
            {"env": "production", "name": "web-sq", "datacenter": "suqian", "replicas": 3}
        ]
    })
}

fn changes(r: &Value) -> Vec<(String, String)> {
    r["diff"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"]["group"].as_str().unwrap().to_string(),
                g["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn dry_run_shows_the_diff_and_writes_nothing() {
    let a = api().await;
    let rev = a.revision().await;
    let r = a.post("/api/v1/apply?dry_run=true", &a.admin, spec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["diff"]["app"]["change"], "create");
    assert_eq!(
        changes(&v),
        [
            ("web-lf".to_string(), "create".to_string()),
            ("web-sq".to_string(), "create".to_string())
        ]
    );
    assert_eq!(v["diff"]["groups"][1]["new_replicas"], 3);
    assert_eq!(a.revision().await, rev, "a dry run writes nothing");
    let g = a.get("/api/v1/apps/web", &a.admin).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn apply_creates_then_is_idempotent_then_diffs_changes() {
    let a = api().await;
    let r = a.post("/api/v1/apply", &a.admin, spec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["dry_run"], false);
    assert_eq!(
        kinds(&r.json()),
        [
            (
                "deploy".to_string(),
                "group web/production/web-lf".to_string()
            ),
            (
                "deploy".to_string(),
                "group web/production/web-sq".to_string()
            )
        ]
    );
    let queued = a.get("/api/v1/tasks?app=web", &a.admin).await.json();
    assert_eq!(queued["items"].as_array().unwrap().len(), 2, "{queued}");
    assert_eq!(queued["items"][0]["department"], "retail");
    let app = a.get("/api/v1/apps/web", &a.admin).await.json();
    assert_eq!(app["department"], "retail");
    let groups = a.get("/api/v1/groups?app=web", &a.admin).await.json();
    let items = groups["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["template"]["resources"]["cpu_millis"], 250);
    let g = a
        .get("/api/v1/groups/web/production/web-sq", &a.admin)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(g.json()["group"]["replicas"], 3);
    assert_eq!(g.json()["containers"], json!([]));

    // The same spec again: nothing changes, nothing is written.
    let rev = a.revision().await;
    let again = a.post("/api/v1/apply", &a.admin, spec()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let v = again.json();
    assert_eq!(v["diff"]["app"]["change"], "unchanged");
    assert!(changes(&v).iter().all(|(_, c)| c == "unchanged"), "{v}");
    assert_eq!(v["tasks"], json!([]));
    assert_eq!(a.revision().await, rev, "a no-op apply writes nothing");

    // Scale one group, change the image, drop the other, add a third.
    let next = next_spec();
    let dry = a
        .post("/api/v1/apply?dry_run=true", &a.admin, next.clone())
        .await;
    let d = dry.json();
    assert_eq!(
        changes(&d),
        [
            ("web-lf".to_string(), "update".to_string()),
            ("web-t".to_string(), "create".to_string()),
            ("web-sq".to_string(), "delete".to_string())
        ]
    );
    let lf = &d["diff"]["groups"][0];
    assert_eq!(
        (lf["old_replicas"].clone(), lf["new_replicas"].clone()),
        (json!(2), json!(5))
    );
    assert_eq!(lf["fields"][0]["field"], "template.image");
    assert_eq!(lf["fields"][0]["old"], "jdos-busybox:latest");
    assert_eq!(lf["fields"][0]["new"], "jdos-busybox:v2");

    let real = a.post("/api/v1/apply", &a.admin, next).await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text);
    assert_eq!(
        real.json()["diff"],
        d["diff"],
        "the dry run predicted the apply"
    );
    // Replicas → scale, then template → rolling; new → deploy; removed →
    // delete_group (its record stays until that task removed it).
    assert_eq!(
        kinds(&real.json()),
        [
            (
                "scale".to_string(),
                "group web/production/web-lf".to_string()
            ),
            (
                "rolling".to_string(),
                "group web/production/web-lf".to_string()
            ),
            ("deploy".to_string(), "group web/test/web-t".to_string()),
            (
                "delete_group".to_string(),
                "group web/production/web-sq".to_string()
            )
        ]
    );
    assert_eq!(real.json()["tasks"][0]["params"]["replicas"], 5);
    let groups = a.get("/api/v1/groups?app=web", &a.admin).await.json();
    let names: Vec<&str> = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-lf", "web-sq", "web-t"]);
    let ev = a.events(&a.admin, "&action=app.apply").await;
    assert_eq!(ev.len(), 2, "one event per apply that changed something");
    assert!(
        ev[1]["message"].as_str().unwrap().contains("1 created"),
        "{}",
        ev[1]
    );
    let submitted = a.events(&a.admin, "&action=task.submit").await;
    assert_eq!(submitted.len(), 6, "{submitted:?}");

    // Again while the deletion is under way: nothing new is queued.
    let rev = a.revision().await;
    let again = a.post("/api/v1/apply", &a.admin, next_spec()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["tasks"], json!([]));
    assert_eq!(a.revision().await, rev, "nothing written");
}

/// The second spec of the test above.
fn next_spec() -> Value {
    let mut next = spec();
    next["template"]["image"] = json!("jdos-busybox:v2");
    next["groups"][0]["replicas"] = json!(5);
    next["groups"][1] =
        json!({"env": "test", "name": "web-t", "datacenter": "suqian", "replicas": 1});
    next
}

/// `(kind, object)` of the tasks an apply answered.
fn kinds(r: &Value) -> Vec<(String, String)> {
    r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_string(),
                t["object"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn too_many_groups_are_refused_with_their_field() {
    let a = api().await;
    let mut s = spec();
    let many: Vec<Value> = (0..=jdos_types::spec::MAX_GROUPS)
        .map(|i| json!({"env": "production", "name": format!("g{i}"), "datacenter": "langfang", "replicas": 1}))
        .collect();
    s["groups"] = json!(many);
    let rev = a.revision().await;
    let r = a.post("/api/v1/apply", &a.admin, s).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "groups");
    assert_eq!(r.json()["details"][0]["code"], "too_many");
    assert_eq!(a.revision().await, rev);

    // The most a spec may hold, every group updated in template and
    // replicas (two tasks each), fits one transaction.
    let mut s = spec();
    let full: Vec<Value> = (0..jdos_types::spec::MAX_GROUPS)
        .map(|i| json!({"env": "production", "name": format!("g{i}"), "datacenter": "langfang", "replicas": 1}))
        .collect();
    s["groups"] = json!(full);
    let r = a.post("/api/v1/apply", &a.admin, s.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for g in s["groups"].as_array_mut().unwrap() {
        g["replicas"] = json!(2);
    }
    s["template"]["image"] = json!("jdos-busybox:v2");
    let r = a.post("/api/v1/apply", &a.admin, s).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["tasks"].as_array().unwrap().len(),
        2 * jdos_types::spec::MAX_GROUPS
    );

    // Groups stored beyond the cap (an older, larger limit) all removed
    // at once with as many created: refused whole, with the field.
    let store = a.state.store();
    for i in 0..40 {
        let mut g: jdos_types::Group = jdos_store::json::decode(
            &store
                .get(&jdos_types::keys::group(&jdos_types::GroupKey::new(
                    "web",
                    "production",
                    "g0",
                )))
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        g.name = format!("old{i}");
        store
            .put(
                &jdos_types::keys::group(&g.key()),
                jdos_store::json::encode(&g).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let mut s = spec();
    let fresh: Vec<Value> = (0..jdos_types::spec::MAX_GROUPS)
        .map(|i| json!({"env": "production", "name": format!("new{i}"), "datacenter": "langfang", "replicas": 1}))
        .collect();
    s["groups"] = json!(fresh);
    let rev = a.revision().await;
    let r = a.post("/api/v1/apply", &a.admin, s).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "groups");
    assert!(r.text.contains("jdos delete group"), "{}", r.text);
    assert_eq!(a.revision().await, rev, "nothing written");
}

#[tokio::test]
async fn a_bad_spec_reports_every_field_and_writes_nothing() {
    let a = api().await;
    let rev = a.revision().await;
    let mut bad = spec();
    bad["name"] = json!("Web!");
    bad["template"]["resources"]["memory"] = json!("lots");
    bad["groups"][1]["replicas"] = json!(1_000_000);
    bad["groups"][0]["autoscaling"] = json!({"min": 5, "max": 2});
    let r = a.post("/api/v1/apply", &a.admin, bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v = r.json();
    assert_eq!(v["code"], "validation_failed");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "template.resources.memory",
            "groups[0].autoscaling.max_replicas",
            "groups[1].replicas"
        ]
    );
    assert_eq!(
        a.revision().await,
        rev,
        "a bad spec writes nothing, not even an event"
    );

    // A misspelt field is refused with its path.
    let mut typo = spec();
    typo["groups"][0]["replica"] = json!(3);
    let r = a.post("/api/v1/apply", &a.admin, typo).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("replica"), "{}", r.text);
    assert_eq!(a.revision().await, rev);
}

#[tokio::test]
async fn a_group_cannot_move_datacenter() {
    let a = api().await;
    assert_eq!(
        a.post("/api/v1/apply", &a.admin, spec()).await.status,
        StatusCode::OK
    );
    let rev = a.revision().await;
    let mut moved = spec();
    moved["groups"][1]["datacenter"] = json!("guangzhou");
    let r = a.post("/api/v1/apply?dry_run=true", &a.admin, moved).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "groups[1].datacenter");
    assert_eq!(r.json()["details"][0]["code"], "immutable");
    assert_eq!(a.revision().await, rev);
}

#[tokio::test]
async fn developers_apply_only_for_their_department() {
    let a = api().await;
    let retail = a.token("dev-retail", "developer", Some("retail")).await;
    let data = a.token("dev-data", "developer", Some("data")).await;
    let r = a.post("/api/v1/apply", &data, spec()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = a.post("/api/v1/apply", &retail, spec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Another department's developer can neither take the app over nor see it.
    let mut takeover = spec();
    takeover["department"] = json!("data");
    let r = a.post("/api/v1/apply?dry_run=true", &data, takeover).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        !r.text.contains("retail"),
        "does not tell whose app it is: {}",
        r.text
    );
    let g = a.get("/api/v1/groups", &data).await.json();
    assert_eq!(g["items"], json!([]));
    let g = a.get("/api/v1/groups/web/production/web-lf", &data).await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    let g = a.get("/api/v1/groups", &retail).await.json();
    assert_eq!(g["items"].as_array().unwrap().len(), 2);
    let c = a.get("/api/v1/containers?app=web", &data).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["items"], json!([]));
}

#[tokio::test]
async fn an_autoscaled_group_keeps_the_replicas_the_autoscaler_chose() {
    let a = api().await;
    let mut s = spec();
    s["groups"][0]["autoscaling"] = json!({"min": 2, "max": 10, "target": 0.6});
    assert_eq!(
        a.post("/api/v1/apply", &a.admin, s.clone()).await.status,
        StatusCode::OK
    );
    // The autoscaler moved it to 7 (written directly, as a scale would).
    let key = jdos_types::keys::group(&jdos_types::GroupKey::new("web", "production", "web-lf"));
    let kv = a.state.store().get(&key).await.unwrap().unwrap();
    let mut g: jdos_types::Group = jdos_store::json::decode(&kv).unwrap();
    g.replicas = 7;
    a.state
        .store()
        .put(&key, jdos_store::json::encode(&g).unwrap(), None)
        .await
        .unwrap();
    let r = a
        .post("/api/v1/apply?dry_run=true", &a.admin, s.clone())
        .await
        .json();
    assert_eq!(r["diff"]["groups"][0]["change"], "unchanged", "{r}");
    // A new range that excludes 7 takes over again.
    s["groups"][0]["autoscaling"] = json!({"min": 2, "max": 5, "target": 0.6});
    let r = a
        .post("/api/v1/apply?dry_run=true", &a.admin, s)
        .await
        .json();
    let g = &r["diff"]["groups"][0];
    assert_eq!(
        (g["old_replicas"].clone(), g["new_replicas"].clone()),
        (json!(7), json!(2))
    );
}

#[tokio::test]
async fn events_long_poll_answers_when_a_matching_event_lands() {
    let a = api().await;
    let last = a.events(&a.admin, "").await.last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    // Nothing new: waits, then an empty page.
    let t = std::time::Instant::now();
    let r = a
        .get(
            &format!("/api/v1/events?after={last}&wait_ms=300"),
            &a.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["items"], json!([]));
    assert!(t.elapsed() >= std::time::Duration::from_millis(250));
    // An apply lands while the poll waits: the poll answers with it.
    let poll = {
        let app = a.app.clone();
        let admin = a.admin.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .uri(format!(
                    "/api/v1/events?after={last}&wait_ms=10000&app=web&result=success"
                ))
                .header("authorization", format!("Bearer {admin}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    // An event of another app does not wake it with a match.
    a.post(
        "/api/v1/apps",
        &a.admin,
        common::app_body("other", "retail"),
    )
    .await;
    assert_eq!(
        a.post("/api/v1/apply", &a.admin, spec()).await.status,
        StatusCode::OK
    );
    let got = poll.await.unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    let items = got["items"].as_array().unwrap();
    // The apply, then (if they landed before the answer) its task.submit
    // events, all of app web.
    assert!(!items.is_empty(), "{got}");
    assert_eq!(items[0]["action"], "app.apply");
    assert!(items.iter().all(|e| e["app"] == "web"), "{got}");
    // The result filter.
    let failures = a.events(&a.admin, "&result=failure").await;
    assert!(failures.iter().all(|e| e["result"] == "failure"));
}
