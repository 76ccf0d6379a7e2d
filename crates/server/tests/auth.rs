//! Authentication and role scoping.

mod common;

use axum::http::StatusCode;
use common::{api, app_body};
use serde_json::json;

#[tokio::test]
async fn missing_malformed_and_unknown_tokens_are_401_json() {
    let a = api().await;
    let r = a.raw("GET", "/api/v1/hosts", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "unauthorized");
    for bad in [
        "garbage",
        "abc.def",
        "0123456789abcdef.00",
        &format!("{}x", a.admin),
    ] {
        let r = a.raw("GET", "/api/v1/whoami", Some(bad), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r.json()["code"], "unauthorized");
    }
    let r = a.get("/api/v1/whoami", &a.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["role"], "admin");
    // The scheme is case-insensitive; other schemes are refused.
    for (header, status) in [
        (format!("bearer {}", a.admin), StatusCode::OK),
        (format!("BEARER {}", a.admin), StatusCode::OK),
        (format!("Basic {}", a.admin), StatusCode::UNAUTHORIZED),
        (format!("Bearer{}", a.admin), StatusCode::UNAUTHORIZED),
    ] {
        let req = axum::http::Request::builder()
            .uri("/api/v1/whoami")
            .header("authorization", header.as_str())
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(a.app.clone(), req)
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{header}");
    }
    // Public endpoints need no token.
    assert_eq!(a.raw("GET", "/healthz", None, None).await.text, "ok");
    assert_eq!(
        a.raw("GET", "/api/v1/openapi.json", None, None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn roles_are_enforced_per_resource() {
    let a = api().await;
    let ops = a.token("oscar", "ops", None).await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    assert_eq!(
        a.get("/api/v1/whoami", &dev).await.json()["department"],
        "retail"
    );

    // Tokens: admin only.
    for t in [&ops, &dev] {
        let r = a
            .post("/api/v1/tokens", t, json!({"name": "x", "role": "admin"}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json()["code"], "forbidden");
        assert_eq!(
            a.get("/api/v1/tokens", t).await.status,
            StatusCode::FORBIDDEN
        );
    }
    // Hosts: admin and ops write, developers may not.
    assert_eq!(
        a.register(&ops, "h1", "dc1", "s1", "r1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        a.register(&dev, "h2", "dc1", "s1", "r1").await.status,
        StatusCode::FORBIDDEN
    );
    for (m, p) in [
        ("POST", "/api/v1/hosts/h1/cordon"),
        ("POST", "/api/v1/hosts/h1/uncordon"),
        ("DELETE", "/api/v1/hosts/h1"),
    ] {
        assert_eq!(
            a.call(m, p, &dev, None).await.status,
            StatusCode::FORBIDDEN,
            "{m} {p}"
        );
    }
    let r = a
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            &dev,
            Some(json!({"labels": {}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Reading the infrastructure is allowed to every role.
    assert_eq!(a.get("/api/v1/hosts/h1", &dev).await.status, StatusCode::OK);
    assert_eq!(
        a.call("POST", "/api/v1/hosts/h1/cordon", &ops, None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn developers_see_and_change_only_their_department() {
    let a = api().await;
    let retail = a.token("dora", "developer", Some("retail")).await;
    let finance = a.token("fred", "developer", Some("finance")).await;
    assert_eq!(
        a.post("/api/v1/apps", &retail, app_body("shop", "retail"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        a.post("/api/v1/apps", &finance, app_body("ledger", "finance"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        a.post("/api/v1/apps", &a.admin, app_body("search", "retail"))
            .await
            .status,
        StatusCode::CREATED
    );
    // Creating in another department is forbidden.
    let r = a
        .post("/api/v1/apps", &retail, app_body("pay", "finance"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let names = |v: serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(a.get("/api/v1/apps", &retail).await.json()),
        ["search", "shop"]
    );
    assert_eq!(
        names(a.get("/api/v1/apps", &finance).await.json()),
        ["ledger"]
    );
    assert_eq!(
        names(a.get("/api/v1/apps", &a.admin).await.json()),
        ["ledger", "search", "shop"]
    );

    assert_eq!(
        a.get("/api/v1/apps/ledger", &retail).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.get("/api/v1/apps/shop", &retail).await.status,
        StatusCode::OK
    );
    let r = a
        .call(
            "PUT",
            "/api/v1/apps/ledger",
            &retail,
            Some(app_body("ledger", "retail")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Moving one's own app to another department is forbidden too.
    let r = a
        .call(
            "PUT",
            "/api/v1/apps/shop",
            &retail,
            Some(app_body("shop", "finance")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.call("DELETE", "/api/v1/apps/ledger", &retail, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.get("/api/v1/apps/ledger", &a.admin).await.status,
        StatusCode::OK
    );

    // Events: a developer sees its department's only.
    let seen = a.events(&retail, "").await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|e| e["department"] == "retail"), "{seen:?}");
    assert!(seen.iter().any(|e| e["object"] == "search"));
    // Its own refused attempts on ledger are its events; ledger's own are not.
    assert!(!seen
        .iter()
        .any(|e| e["object"] == "ledger" && e["result"] == "success"));
    assert!(seen
        .iter()
        .any(|e| e["object"] == "ledger" && e["result"] == "failure" && e["actor"] == "dora"));
    let all = a.events(&a.admin, "").await;
    assert!(all.iter().any(|e| e["object"] == "ledger"));
}

#[tokio::test]
async fn revoked_tokens_stop_working_and_the_last_admin_stays() {
    let a = api().await;
    let r = a
        .post(
            "/api/v1/tokens",
            &a.admin,
            json!({"name": "tmp", "role": "ops"}),
        )
        .await;
    let created = r.json();
    let (id, tok) = (
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    assert_eq!(a.get("/api/v1/whoami", tok).await.status, StatusCode::OK);
    let listed = a.get("/api/v1/tokens", &a.admin).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["secret_sha256"] == ""));
    assert_eq!(
        a.call("DELETE", &format!("/api/v1/tokens/{id}"), &a.admin, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        a.get("/api/v1/whoami", tok).await.status,
        StatusCode::UNAUTHORIZED
    );

    let admin_id = a.admin.split('.').next().unwrap();
    let r = a
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{admin_id}"),
            &a.admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        a.get("/api/v1/whoami", &a.admin).await.status,
        StatusCode::OK
    );
    // A developer token needs a department.
    let r = a
        .post(
            "/api/v1/tokens",
            &a.admin,
            json!({"name": "d", "role": "developer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "department");
}

#[tokio::test]
async fn every_route_the_table_marks_private_refuses_anonymous_calls() {
    let a = api().await;
    let before = a.revision().await;
    for r in jdos_server::api::routes() {
        let path = r.path.replace("{name}", "x").replace("{id}", "x");
        let body = r.request.as_ref().map(|_| "{}".to_string());
        let resp = a.raw(r.method.as_str(), &path, None, body).await;
        if r.auth {
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{r:?}: {}",
                resp.text
            );
            assert_eq!(resp.json()["code"], "unauthorized");
        } else {
            // The table's own flag is what this test trusts: pin the public
            // set, so that a route marked public by mistake fails here.
            assert!(
                matches!(r.path, "/healthz" | "/metrics" | "/api/v1/openapi.json"),
                "{r:?} is marked public: every /api/v1 route but openapi.json needs a token"
            );
            assert_eq!(resp.status, StatusCode::OK, "{r:?}");
        }
    }
    assert_eq!(a.revision().await, before);
}

#[tokio::test]
async fn a_developer_describing_a_host_sees_only_its_departments_containers() {
    let a = api().await;
    let r = a.register(&a.admin, "h1", "dc1", "sw1", "r1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for (app, dept) in [("ledger", "finance"), ("shop", "retail")] {
        let r = a.post("/api/v1/apps", &a.admin, app_body(app, dept)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Two containers placed on h1, one per department (written as the
    // scheduler's commit would: container records plus the allocation).
    let container = |app: &str| {
        json!({"id": {"app": app, "env": "production", "group": "web", "index": 0},
            "datacenter": "dc1", "host": "h1", "image": format!("registry/{app}:1"),
            "resources": {"cpu_millis": 100, "memory_bytes": 1024},
            "desired": "running", "phase": "running"})
    };
    let alloc = json!({"host": "h1", "containers": 2,
        "allocated": {"cpu_millis": 200, "memory_bytes": 2048}});
    let txn = jdos_store::Txn::new()
        .and_then(jdos_store::TxnOp::put(
            "/jdos/containers/ledger/production/web/00000000",
            container("ledger").to_string().into_bytes(),
        ))
        .and_then(jdos_store::TxnOp::put(
            "/jdos/containers/shop/production/web/00000000",
            container("shop").to_string().into_bytes(),
        ))
        .and_then(jdos_store::TxnOp::put(
            "/jdos/alloc/h1",
            alloc.to_string().into_bytes(),
        ));
    // Their work orders: the by-host index a host's description reads.
    let mut txn = txn;
    for app in ["ledger", "shop"] {
        let order = json!({"container": container(app),
            "template": {"image": format!("registry/{app}:1"),
                "resources": {"cpu_millis": 100, "memory_bytes": 1024}}});
        txn = txn.and_then(jdos_store::TxnOp::put(
            format!("/jdos/assign/h1/{app}/production/web/00000000"),
            order.to_string().into_bytes(),
        ));
    }
    assert!(a.state.store().txn(txn).await.unwrap().succeeded);

    let apps_on = |token: String| {
        let a = &a;
        async move {
            let r = a.get("/api/v1/hosts/h1", &token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let mut apps: Vec<String> = r.json()["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"]["app"].as_str().unwrap().to_string())
                .collect();
            apps.sort();
            apps
        }
    };
    let retail = a.token("dora", "developer", Some("retail")).await;
    let ops = a.token("otto", "ops", None).await;
    assert_eq!(apps_on(retail).await, ["shop"]);
    assert_eq!(apps_on(ops).await, ["ledger", "shop"]);
    assert_eq!(apps_on(a.admin.clone()).await, ["ledger", "shop"]);
}

#[tokio::test]
async fn ops_actions_stay_out_of_a_departments_event_trail() {
    let a = api().await;
    // Admin and ops tokens may carry a department; it scopes nothing for them.
    let ops = a.token("olga", "ops", Some("retail")).await;
    let retail = a.token("dora", "developer", Some("retail")).await;
    let r = a.register(&ops, "h1", "dc1", "sw1", "r1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = a.call("POST", "/api/v1/hosts/h1/cordon", &ops, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = a
        .post("/api/v1/apps", &ops, app_body("shop", "retail"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let seen: Vec<String> = a
        .events(&retail, "")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        ["app.create"],
        "the developer sees its app, not the hosts"
    );
}

#[tokio::test]
async fn a_name_clash_does_not_tell_a_developer_whose_app_it_is() {
    let a = api().await;
    let r = a
        .post("/api/v1/apps", &a.admin, app_body("ledger", "finance"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let retail = a.token("dora", "developer", Some("retail")).await;
    let r = a
        .post("/api/v1/apps", &retail, app_body("ledger", "retail"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["field"], "name");
    assert!(!r.text.contains("finance"), "{}", r.text);
    // Nor does a refused read or change of that app.
    for (m, body) in [
        ("GET", None),
        ("PUT", Some(app_body("ledger", "finance"))),
        ("DELETE", None),
    ] {
        let r = a.call(m, "/api/v1/apps/ledger", &retail, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m}: {}", r.text);
        assert!(!r.text.contains("finance"), "{m}: {}", r.text);
    }
    let trail = serde_json::to_string(&a.events(&retail, "").await).unwrap();
    assert!(!trail.contains("finance"), "{trail}");
    // Someone who may see the other app is told where it is.
    let r = a
        .post("/api/v1/apps", &a.admin, app_body("ledger", "retail"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("finance"), "{}", r.text);
}
