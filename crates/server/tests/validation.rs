//! Bad input: every offending field reported, JSON errors, nothing written.

mod common;

use axum::http::StatusCode;
use common::{api, app_body, host_body};
use serde_json::json;

fn fields(v: &serde_json::Value) -> Vec<String> {
    v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn bad_host_reports_every_field_and_writes_nothing() {
    let a = api().await;
    let before = a.revision().await;
    let body = json!({
        "name": "Bad_Name", "datacenter": "", "switch": "s1", "rack": "-r",
        "capacity": {"cpu_millis": 0, "memory_bytes": 0},
        "resource_zone": "UPPER", "labels": {"bad key": "v"}, "driver": "Dock er"
    });
    let r = a.post("/api/v1/hosts", &a.admin, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v = r.json();
    assert_eq!(v["code"], "validation_failed");
    assert_eq!(v["field"], "name");
    assert_eq!(
        fields(&v),
        [
            "name",
            "datacenter",
            "rack",
            "resource_zone",
            "capacity.cpu_millis",
            "capacity.memory_bytes",
            "labels.bad key",
            "driver"
        ]
    );
    assert_eq!(
        a.revision().await,
        before,
        "a rejected request wrote something"
    );
    assert_eq!(
        a.get("/api/v1/hosts", &a.admin).await.json()["items"],
        json!([])
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_shapes_are_json_400s() {
    let a = api().await;
    let before = a.revision().await;
    let cases = [
        ("POST", "/api/v1/hosts", "{\"name\": ", "malformed JSON"),
        (
            "POST",
            "/api/v1/hosts",
            "{\"name\": \"h\"}",
            "expected shape",
        ),
        ("POST", "/api/v1/apps", "[1,2]", "expected shape"),
        (
            "POST",
            "/api/v1/tokens",
            "{\"name\":\"x\",\"role\":\"root\"}",
            "expected shape",
        ),
        (
            "PATCH",
            "/api/v1/hosts/h1",
            "{\"capacity\": 5}",
            "expected shape",
        ),
    ];
    for (m, p, body, needle) in cases {
        let r = a.raw(m, p, Some(&a.admin), Some(body.to_string())).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{m} {p} {body}: {}",
            r.text
        );
        let v = r.json();
        assert_eq!(v["code"], "bad_request");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{}",
            v["message"]
        );
        // A wrong shape names the offending field, as a validation error does.
        let field = match (p, body) {
            (_, "{\"name\": \"h\"}") => Some("datacenter"),
            ("/api/v1/tokens", _) => Some("role"),
            ("/api/v1/hosts/h1", _) => Some("capacity"),
            _ => None,
        };
        assert_eq!(v["field"].as_str(), field, "{m} {p} {body}: {v}");
    }
    // No content type.
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/apps")
        .header("authorization", format!("Bearer {}", a.admin))
        .body(axum::body::Body::from(app_body("x", "y").to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(a.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Bad query parameters.
    for p in [
        "/api/v1/hosts?state=melting",
        "/api/v1/hosts?limit=0",
        "/api/v1/hosts?limit=x",
        "/api/v1/events?continue=abc",
    ] {
        let r = a.get(p, &a.admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{p}: {}", r.text);
        assert!(r.json()["code"].is_string());
        let field = if p.contains("state=") {
            "state"
        } else if p.contains("limit=") {
            "limit"
        } else {
            "continue"
        };
        assert_eq!(r.json()["field"], field, "{p}: {}", r.text);
    }
    // Unknown routes and methods answer JSON too.
    let r = a.get("/api/v1/nope", &a.admin).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = a.call("PUT", "/api/v1/hosts", &a.admin, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["code"], "method_not_allowed");
    assert_eq!(a.revision().await, before);
}

#[tokio::test]
async fn bad_app_patch_and_rename_write_nothing() {
    let a = api().await;
    assert_eq!(
        a.register(&a.admin, "h1", "dc1", "s1", "r1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        a.post("/api/v1/apps", &a.admin, app_body("shop", "retail"))
            .await
            .status,
        StatusCode::CREATED
    );
    let before = a.revision().await;

    let r = a
        .post(
            "/api/v1/apps",
            &a.admin,
            json!({"name": "", "owner": "Zhang San", "department": "r&d", "description": "x".repeat(2000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&r.json()),
        ["name", "owner", "department", "description"]
    );

    let r = a
        .call(
            "PUT",
            "/api/v1/apps/shop",
            &a.admin,
            Some(app_body("other", "BAD")),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(fields(&r.json()), ["department", "name"]);

    let r = a
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            &a.admin,
            Some(json!({"capacity": {"cpu_millis": 0, "memory_bytes": 0}, "resource_zone": "", "labels": {"k": "v v"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        fields(&r.json()),
        [
            "capacity.cpu_millis",
            "capacity.memory_bytes",
            "resource_zone",
            "labels.k"
        ]
    );

    // Bad input for a host that does not exist is still a 400, not a 404.
    let r = a
        .call(
            "PATCH",
            "/api/v1/hosts/ghost",
            &a.admin,
            Some(json!({"resource_zone": "X"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.revision().await,
        before,
        "a rejected request wrote something"
    );
    let h = a.get("/api/v1/hosts/h1", &a.admin).await.json();
    assert_eq!(h["host"]["resource_zone"], "general");
    assert_eq!(
        h["host"]["capacity"]["cpu_millis"],
        host_body("h1", "dc1", "s1", "r1")["capacity"]["cpu_millis"]
    );
    assert_eq!(h["host"]["labels"], json!({"jdos.io/hw": "r740"}));
}
