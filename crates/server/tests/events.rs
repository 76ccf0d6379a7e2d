//! Every mutating call records an event; failures too; seq is unique and increasing.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{api, app_body};
use serde_json::json;

#[tokio::test]
async fn every_mutating_call_records_one_event() {
    let a = api().await;
    let ops = a.token("oscar", "ops", None).await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    let start = a.events(&a.admin, "").await.len();
    assert_eq!(start, 3, "bootstrap + two token.create");

    a.register(&ops, "h1", "dc1", "s1", "r1").await;
    a.register(&ops, "h1", "dc1", "s1", "r1").await;
    a.call("POST", "/api/v1/hosts/h1/cordon", &ops, None).await;
    a.call("POST", "/api/v1/hosts/h1/uncordon", &ops, None)
        .await;
    a.call(
        "PATCH",
        "/api/v1/hosts/h1",
        &ops,
        Some(json!({"resource_zone": "core"})),
    )
    .await;
    a.post("/api/v1/apps", &dev, app_body("shop", "retail"))
        .await;
    a.call(
        "PUT",
        "/api/v1/apps/shop",
        &dev,
        Some(app_body("shop", "retail")),
    )
    .await;
    a.call("DELETE", "/api/v1/apps/shop", &dev, None).await;
    a.call("DELETE", "/api/v1/hosts/h1", &ops, None).await;

    let evs = a.events(&a.admin, "").await;
    let got: Vec<(String, String, String, String)> = evs[start..]
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["object"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String)> = [
        ("oscar", "host.register", "h1"),
        ("oscar", "host.register", "h1"),
        ("oscar", "host.cordon", "h1"),
        ("oscar", "host.uncordon", "h1"),
        ("oscar", "host.update", "h1"),
        ("dora", "app.create", "shop"),
        ("dora", "app.update", "shop"),
        ("dora", "app.delete", "shop"),
        ("oscar", "host.delete", "h1"),
    ]
    .iter()
    .map(|(a, b, c)| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            "success".to_string(),
        )
    })
    .collect();
    assert_eq!(got, want);
    let app_ev = &evs[start + 5];
    assert_eq!(
        (app_ev["app"].as_str(), app_ev["department"].as_str()),
        (Some("shop"), Some("retail"))
    );
    assert!(evs.iter().all(|e| e["time_ms"].as_u64().unwrap() > 0));
    // Sequence numbers: 1, 2, 3… in order.
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // Filters.
    let host_evs = a.events(&a.admin, "&object_kind=host&object=h1").await;
    assert_eq!(host_evs.len(), 6);
    let cordons = a.events(&a.admin, "&action=host.cordon").await;
    assert_eq!(cordons.len(), 1);
    let after = a
        .events(&a.admin, &format!("&after_seq={}", seqs[seqs.len() - 2]))
        .await;
    assert_eq!(after.len(), 1);
    assert_eq!(a.events(&a.admin, "&app=shop").await.len(), 3);
    assert_eq!(
        a.events(&a.admin, "&since_ms=99999999999999").await.len(),
        0
    );
}

#[tokio::test]
async fn refused_and_failed_mutations_record_failure_events_but_bad_input_does_not() {
    let a = api().await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    a.register(&a.admin, "h1", "dc1", "s1", "r1").await;
    a.post("/api/v1/apps", &a.admin, app_body("shop", "retail"))
        .await;
    let n = a.events(&a.admin, "").await.len();

    assert_eq!(
        a.register(&dev, "h2", "dc1", "s1", "r1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.register(&a.admin, "h1", "dc9", "s1", "r1").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        a.call("POST", "/api/v1/hosts/ghost/cordon", &a.admin, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        a.post("/api/v1/apps", &a.admin, app_body("shop", "retail"))
            .await
            .status,
        StatusCode::CONFLICT
    );

    let rev = a.revision().await;
    assert_eq!(
        a.post("/api/v1/apps", &a.admin, app_body("BAD", "retail"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        a.raw("POST", "/api/v1/hosts", None, Some("{}".into()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.revision().await,
        rev,
        "bad input and unauthenticated calls write nothing"
    );

    let evs = a.events(&a.admin, "").await;
    let failures: Vec<(String, String, String)> = evs[n..]
        .iter()
        .map(|e| {
            assert_eq!(e["result"], "failure");
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["message"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (
                "dora".to_string(),
                "host.register".to_string(),
                "forbidden".to_string()
            ),
            ("admin".into(), "host.register".into(), "conflict".into()),
            ("admin".into(), "host.cordon".into(), "not_found".into()),
            ("admin".into(), "app.create".into(), "conflict".into()),
        ]
    );
    // The conflicting registration changed nothing about h1.
    assert_eq!(
        a.get("/api/v1/hosts/h1", &a.admin).await.json()["host"]["datacenter"],
        "dc1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mutations_get_unique_increasing_seqs() {
    let a = std::sync::Arc::new(api().await);
    for i in 0..8 {
        a.register(&a.admin, &format!("h{i}"), "dc1", "s1", "r1")
            .await;
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        for j in 0..10 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                let verb = if j % 2 == 0 { "cordon" } else { "uncordon" };
                let r = a
                    .call(
                        "POST",
                        &format!("/api/v1/hosts/h{i}/{verb}"),
                        &a.admin,
                        None,
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let evs = a.events(&a.admin, "").await;
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        evs.iter()
            .filter(|e| e["action"] == "host.cordon" || e["action"] == "host.uncordon")
            .count(),
        80
    );
    // Paging by small pages sees the same trail.
    let mut paged = Vec::new();
    let mut cont = String::new();
    loop {
        let v = a
            .get(&format!("/api/v1/events?limit=7{cont}"), &a.admin)
            .await
            .json();
        paged.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match v.get("continue").and_then(|c| c.as_str()) {
            Some(c) => cont = format!("&continue={c}"),
            None => break,
        }
    }
    assert_eq!(paged, seqs);
}
