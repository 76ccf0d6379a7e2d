//! Host lifecycle, topology sums and pagination.

mod common;

use axum::http::StatusCode;
use common::{api, host_body};
use jdos_store::json as sjson;
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, GroupKey, InstanceId, Resources};
use serde_json::json;

#[tokio::test]
async fn register_reregister_cordon_uncordon_delete() {
    let a = api().await;
    let r = a.register(&a.admin, "h1", "dc1", "s1", "r1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let h = r.json();
    assert_eq!(
        (h["state"].as_str(), h["cordoned"].as_bool()),
        (Some("ready"), Some(false))
    );
    let registered_at = h["registered_at_ms"].clone();

    // A new host gets a zeroed allocation.
    let d = a.get("/api/v1/hosts/h1", &a.admin).await.json();
    assert_eq!(d["allocation"]["containers"], 0);
    assert_eq!(d["allocation"]["host"], "h1");

    // Cordon sticks across a re-registration, which updates what the host reports.
    assert_eq!(
        a.call("POST", "/api/v1/hosts/h1/cordon", &a.admin, None)
            .await
            .json()["cordoned"],
        true
    );
    let mut body = host_body("h1", "dc1", "s2", "r9");
    body["capacity"]["cpu_millis"] = json!(16000);
    let r = a.post("/api/v1/hosts", &a.admin, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let h = r.json();
    assert_eq!(
        (h["switch"].as_str(), h["rack"].as_str()),
        (Some("s2"), Some("r9"))
    );
    assert_eq!(h["capacity"]["cpu_millis"], 16000);
    assert_eq!(h["cordoned"], true);
    assert_eq!(h["registered_at_ms"], registered_at);

    // Same name in another datacenter: conflict, nothing changed.
    let r = a.register(&a.admin, "h1", "dc2", "s1", "r1").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["field"], "name");
    assert_eq!(
        a.get("/api/v1/hosts/h1", &a.admin).await.json()["host"]["datacenter"],
        "dc1"
    );

    let h = a
        .call("POST", "/api/v1/hosts/h1/uncordon", &a.admin, None)
        .await
        .json();
    assert_eq!(h["cordoned"], false);
    let r = a
        .call(
            "PATCH",
            "/api/v1/hosts/h1",
            &a.admin,
            Some(json!({"labels": {"gpu": "a100"}, "resource_zone": "core"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["labels"], json!({"gpu": "a100"}));
    assert_eq!(r.json()["resource_zone"], "core");

    // A host with containers cannot be deleted.
    let store = a.state.store();
    let g = GroupKey::new("shop", "production", "web");
    let c = Container {
        id: InstanceId::new(&g, 0),
        datacenter: "dc1".into(),
        host: Some("h1".into()),
        host_epoch: 0,
        network: None,
        ip: None,
        image: "busybox".into(),
        resources: Resources::new(1000, 1 << 30),
        desired: Default::default(),
        phase: Default::default(),
        restarts: 0,
        message: String::new(),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    store
        .put(&keys::container(&c.id), sjson::encode(&c).unwrap(), None)
        .await
        .unwrap();
    // Whoever places a container writes its work order too: the by-host
    // index `describe` reads.
    let order = jdos_types::agent::Assignment {
        container: c.clone(),
        template: Default::default(),
        network: None,
        generation: 0,
        snapshot: None,
    };
    store
        .put(
            &keys::assignment("h1", &c.id),
            sjson::encode(&order).unwrap(),
            None,
        )
        .await
        .unwrap();
    let alloc = HostAllocation {
        host: "h1".into(),
        allocated: c.resources,
        containers: 1,
    };
    store
        .put(&keys::alloc("h1"), sjson::encode(&alloc).unwrap(), None)
        .await
        .unwrap();
    let d = a.get("/api/v1/hosts/h1", &a.admin).await.json();
    assert_eq!(d["containers"].as_array().unwrap().len(), 1);
    assert_eq!(d["containers"][0]["id"]["app"], "shop");
    let r = a.call("DELETE", "/api/v1/hosts/h1", &a.admin, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    store.delete(&keys::container(&c.id)).await.unwrap();
    let alloc = HostAllocation {
        host: "h1".into(),
        ..Default::default()
    };
    store
        .put(&keys::alloc("h1"), sjson::encode(&alloc).unwrap(), None)
        .await
        .unwrap();
    let r = a.call("DELETE", "/api/v1/hosts/h1", &a.admin, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["name"], "h1");
    assert_eq!(
        a.get("/api/v1/hosts/h1", &a.admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(store.get(&keys::alloc("h1")).await.unwrap().is_none());
    assert_eq!(
        a.call("DELETE", "/api/v1/hosts/h1", &a.admin, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.call("POST", "/api/v1/hosts/h1/cordon", &a.admin, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn topology_sums_every_level() {
    let a = api().await;
    // dc1: s1/r1 {h1,h2}, s1/r2 {h3}, s2/r3 {h4}; dc2: s1/r1 {h5}
    for (h, dc, s, r) in [
        ("h1", "dc1", "s1", "r1"),
        ("h2", "dc1", "s1", "r1"),
        ("h3", "dc1", "s1", "r2"),
        ("h4", "dc1", "s2", "r3"),
        ("h5", "dc2", "s1", "r1"),
    ] {
        assert_eq!(
            a.register(&a.admin, h, dc, s, r).await.status,
            StatusCode::CREATED
        );
    }
    a.call("POST", "/api/v1/hosts/h2/cordon", &a.admin, None)
        .await;
    let alloc = HostAllocation {
        host: "h1".into(),
        allocated: Resources::new(3000, 1 << 30),
        containers: 3,
    };
    a.state
        .store()
        .put(&keys::alloc("h1"), sjson::encode(&alloc).unwrap(), None)
        .await
        .unwrap();
    let alloc = HostAllocation {
        host: "h4".into(),
        allocated: Resources::new(500, 1 << 29),
        containers: 1,
    };
    a.state
        .store()
        .put(&keys::alloc("h4"), sjson::encode(&alloc).unwrap(), None)
        .await
        .unwrap();

    let r = a.get("/api/v1/datacenters", &a.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.json();
    let dcs = t.as_array().unwrap();
    assert_eq!(dcs.len(), 2);
    let dc1 = &dcs[0];
    assert_eq!(
        (dc1["name"].as_str(), dc1["level"].as_str()),
        (Some("dc1"), Some("datacenter"))
    );
    assert_eq!(dc1["hosts"], 4);
    assert_eq!(dc1["ready_hosts"], 3);
    assert_eq!(dc1["capacity"]["cpu_millis"], 32000);
    assert_eq!(dc1["capacity"]["disk"]["l1"], 4000);
    assert_eq!(dc1["allocated"]["cpu_millis"], 3500);
    assert_eq!(dc1["containers"], 4);
    let s1 = &dc1["children"][0];
    assert_eq!(
        (
            s1["name"].as_str(),
            s1["hosts"].as_u64(),
            s1["containers"].as_u64()
        ),
        (Some("s1"), Some(3), Some(3))
    );
    let r1 = &s1["children"][0];
    assert_eq!(
        (
            r1["level"].as_str(),
            r1["hosts"].as_u64(),
            r1["ready_hosts"].as_u64()
        ),
        (Some("rack"), Some(2), Some(1))
    );
    assert_eq!(r1["children"][0]["level"], "host");
    assert_eq!(r1["children"][0]["allocated"]["cpu_millis"], 3000);
    assert_eq!(dcs[1]["hosts"], 1);
    assert_eq!(dcs[1]["containers"], 0);
}

#[tokio::test]
async fn host_lists_paginate_and_filter() {
    let a = api().await;
    for i in 0..25 {
        let dc = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(
            a.register(&a.admin, &format!("h{i:02}"), dc, "s", "r")
                .await
                .status,
            StatusCode::CREATED
        );
    }
    a.call("POST", "/api/v1/hosts/h03/cordon", &a.admin, None)
        .await;
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cont: Option<String> = None;
    loop {
        let p = match &cont {
            Some(c) => format!("/api/v1/hosts?limit=10&continue={c}"),
            None => "/api/v1/hosts?limit=10".to_string(),
        };
        let v = a.get(&p, &a.admin).await.json();
        pages += 1;
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .map(|h| h["name"].as_str().unwrap().to_string()),
        );
        match v.get("continue").and_then(|c| c.as_str()) {
            Some(c) => cont = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("h{i:02}")).collect();
    assert_eq!(seen, expected);

    let v = a
        .get("/api/v1/hosts?datacenter=odd&limit=100", &a.admin)
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 12);
    assert!(v.get("continue").is_none());
    let v = a
        .get("/api/v1/hosts?datacenter=odd&limit=5", &a.admin)
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    assert!(v["continue"].is_string());
    let v = a.get("/api/v1/hosts?state=ready", &a.admin).await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 25);
    let v = a.get("/api/v1/hosts?state=down", &a.admin).await.json();
    assert_eq!(v["items"], json!([]));
}
