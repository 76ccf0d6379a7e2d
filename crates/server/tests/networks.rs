//! The networks API: create / list / get / delete / ips, roles, validation,
//! conflicts and audit events, on the real router over a MemoryStore.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jdos_ipam::Ipam;
use jdos_server::{auth, router, AppState};
use jdos_store::{MemoryStore, Store};
use jdos_types::{GroupKey, InstanceId};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    store: Arc<dyn Store>,
    app: Router,
    admin: String,
}

async fn api() -> Api {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let state = AppState::new(store.clone());
    let admin = auth::bootstrap_admin(&state, None)
        .await
        .unwrap()
        .expect("first start creates the admin token");
    Api {
        store,
        app: router(state),
        admin,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, v)
    }

    async fn token(&self, name: &str, role: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/tokens",
                &self.admin,
                Some(json!({"name": name, "role": role, "department": "retail"})),
            )
            .await;
        assert!(s.is_success(), "{s}: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    async fn events(&self, action: &str) -> Vec<Value> {
        let (s, v) = self
            .call(
                "GET",
                "/api/v1/events?object_kind=network",
                &self.admin,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }
}

fn prod() -> Value {
    json!({
        "name": "prod-a",
        "vlan": 100,
        "subnet": "10.20.0.0/24",
        "gateway": "10.20.0.1",
        "reserved": [{"start": "10.20.0.2", "end": "10.20.0.9"}],
        "zone": "prod",
        "switches": ["sw01", "sw02"]
    })
}

#[tokio::test]
async fn create_get_list_ips_delete() {
    let api = api().await;
    let ops = api.token("oscar", "ops").await;
    let (s, v) = api
        .call("POST", "/api/v1/networks", &ops, Some(prod()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["quarantine_secs"], 300, "default quarantine");
    assert_eq!(api.events("network.create").await.len(), 1);

    let (s, v) = api.call("GET", "/api/v1/networks/prod-a", &ops, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["vlan"], 100);
    assert_eq!(v["switches"], json!(["sw01", "sw02"]));
    let (s, v) = api.call("GET", "/api/v1/networks", &ops, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);

    // Addresses handed out by IPAM show with identity and state.
    let ipam = Ipam::new(api.store.clone());
    let web = GroupKey::new("shop", "production", "web");
    let a = ipam
        .allocate("prod-a", &InstanceId::new(&web, 1), None, 1_000)
        .await
        .unwrap();
    assert_eq!(
        a.ip.to_string(),
        "10.20.0.10",
        "first after the reserved range"
    );
    ipam.allocate("prod-a", &InstanceId::new(&web, 2), None, 1_000)
        .await
        .unwrap();
    ipam.release(&InstanceId::new(&web, 2), 2_000)
        .await
        .unwrap();
    let (s, v) = api
        .call("GET", "/api/v1/networks/prod-a/ips", &ops, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["ip"], "10.20.0.10");
    assert_eq!(items[0]["identity"]["app"], "shop");
    assert_eq!(items[0]["identity"]["index"], 1);
    assert_eq!(items[0]["state"], "assigned");
    assert_eq!(items[1]["state"], "quarantined");

    // Delete is refused while an address is assigned, and the refusal is audited.
    let (s, v) = api
        .call("DELETE", "/api/v1/networks/prod-a", &ops, None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("10.20.0.10 (shop/production/web/1)"),
        "{v}"
    );
    let failed = api.events("network.delete").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["result"], "failure");

    ipam.release(&InstanceId::new(&web, 1), 3_000)
        .await
        .unwrap();
    let (s, v) = api
        .call("DELETE", "/api/v1/networks/prod-a", &ops, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "prod-a");
    let (s, _) = api.call("GET", "/api/v1/networks/prod-a", &ops, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .call("GET", "/api/v1/networks/prod-a/ips", &ops, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let ok: Vec<_> = api
        .events("network.delete")
        .await
        .into_iter()
        .filter(|e| e["result"] == "success")
        .collect();
    assert_eq!(ok.len(), 1);
}

#[tokio::test]
async fn bad_input_and_conflicts_write_nothing() {
    let api = api().await;
    let (s, _) = api
        .call("POST", "/api/v1/networks", &api.admin, Some(prod()))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let rev = api.store.revision().await.unwrap();

    // Every offending field is reported.
    let mut bad = prod();
    bad["name"] = json!("b");
    bad["vlan"] = json!(5000);
    bad["gateway"] = json!("10.99.0.1");
    bad["subnet"] = json!("10.30.0.0/24");
    let (s, v) = api
        .call("POST", "/api/v1/networks", &api.admin, Some(bad))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "validation_failed");
    let fields: Vec<_> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["vlan", "gateway", "reserved[0]"]);

    // Overlap, VLAN and name conflicts name the other network and the field.
    let cases = [
        (
            json!({"name": "b", "vlan": 101, "subnet": "10.20.0.128/25", "gateway": "10.20.0.129"}),
            "subnet",
            "overlaps network \"prod-a\"",
        ),
        (
            json!({"name": "b", "vlan": 100, "subnet": "10.21.0.0/24", "gateway": "10.21.0.1"}),
            "vlan",
            "vlan 100",
        ),
        (
            json!({"name": "prod-a", "vlan": 102, "subnet": "10.22.0.0/24", "gateway": "10.22.0.1"}),
            "name",
            "already exists",
        ),
    ];
    for (body, field, text) in cases {
        let (s, v) = api
            .call("POST", "/api/v1/networks", &api.admin, Some(body))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(v["message"].as_str().unwrap().contains(text), "{v}");
    }

    // Malformed subnet: a 400 before anything is looked at.
    let mut bad = prod();
    bad["subnet"] = json!("10.20.0.0/33");
    let (s, _) = api
        .call("POST", "/api/v1/networks", &api.admin, Some(bad))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Only failure events were written (conflicts are audited, 400s are not).
    let after = api.store.revision().await.unwrap();
    let failures = api.events("network.create").await;
    assert_eq!(
        failures.iter().filter(|e| e["result"] == "failure").count(),
        3
    );
    assert_eq!(after - rev, 3, "nothing but the three failure events");
    let (_, v) = api.call("GET", "/api/v1/networks", &api.admin, None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn developers_read_but_do_not_change_networks() {
    let api = api().await;
    let dev = api.token("dana", "developer").await;
    let (s, v) = api
        .call("POST", "/api/v1/networks", &dev, Some(prod()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = api
        .call("POST", "/api/v1/networks", &api.admin, Some(prod()))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .call("DELETE", "/api/v1/networks/prod-a", &dev, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api.call("GET", "/api/v1/networks/prod-a", &dev, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api.call("GET", "/api/v1/networks/nope", &dev, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // No token: 401.
    let req = Request::builder()
        .uri("/api/v1/networks")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn developers_see_only_their_departments_address_records() {
    let api = api().await;
    let (s, v) = api
        .call("POST", "/api/v1/networks", &api.admin, Some(prod()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for (app, dept) in [("shop", "retail"), ("ledger", "finance")] {
        let body = json!({"name": app, "owner": "o", "department": dept, "business_level": "core"});
        let (s, v) = api
            .call("POST", "/api/v1/apps", &api.admin, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let ipam = Ipam::new(api.store.clone());
    for app in ["shop", "ledger"] {
        let g = GroupKey::new(app, "production", "web");
        ipam.allocate("prod-a", &InstanceId::new(&g, 0), None, 1_000)
            .await
            .unwrap();
    }
    let apps = |v: &Value| -> Vec<String> {
        let mut a: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["identity"]["app"].as_str().unwrap().to_string())
            .collect();
        a.sort();
        a
    };
    // `token` makes retail tokens.
    let dev = api.token("dana", "developer").await;
    let (s, v) = api
        .call("GET", "/api/v1/networks/prod-a/ips", &dev, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(apps(&v), ["shop"]);
    let (s, v) = api
        .call("GET", "/api/v1/networks/prod-a/ips", &api.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(apps(&v), ["ledger", "shop"]);
}
