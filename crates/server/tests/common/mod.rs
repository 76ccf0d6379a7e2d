//! In-process harness: the real router over a MemoryStore, driven with
//! `tower::ServiceExt::oneshot`.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jdos_server::{auth, router, AppState};
use jdos_store::{MemoryStore, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct Api {
    pub state: AppState,
    pub app: Router,
    pub admin: String,
}

pub async fn api() -> Api {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let state = AppState::new(store);
    // The engine is installed (apply and the operations queue tasks through
    // it) but not started: tasks stay pending, as with a busy worker.
    let cx = jdos_server::ops::OpsContext::new(&state);
    jdos_server::ops::engine(&state, jdos_workflow::EngineConfig::new("test-worker"), &cx);
    let admin = auth::bootstrap_admin(&state, None)
        .await
        .unwrap()
        .expect("first start creates the admin token");
    Api {
        app: router(state.clone()),
        state,
        admin,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Api {
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        Resp {
            status,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        self.raw(method, path, Some(token), body.map(|b| b.to_string()))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, token, Some(body)).await
    }

    /// Creates a token through the API and returns its bearer string.
    pub async fn token(&self, name: &str, role: &str, department: Option<&str>) -> String {
        let r = self
            .post(
                "/api/v1/tokens",
                &self.admin,
                json!({"name": name, "role": role, "department": department}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["token"].as_str().unwrap().to_string()
    }

    pub async fn revision(&self) -> u64 {
        self.state.store().revision().await.unwrap()
    }

    pub async fn register(&self, token: &str, name: &str, dc: &str, sw: &str, rack: &str) -> Resp {
        self.post("/api/v1/hosts", token, host_body(name, dc, sw, rack))
            .await
    }

    /// Every event, following pagination.
    pub async fn events(&self, token: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?limit=100{query}");
            if let Some(c) = &cont {
                path.push_str(&format!("&continue={c}"));
            }
            let r = self.get(&path, token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let v = r.json();
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v.get("continue").and_then(|c| c.as_str()) {
                Some(c) => cont = Some(c.to_string()),
                None => return out,
            }
        }
    }
}

pub fn host_body(name: &str, dc: &str, sw: &str, rack: &str) -> Value {
    json!({
        "name": name, "datacenter": dc, "switch": sw, "rack": rack,
        "capacity": {"cpu_millis": 8000, "memory_bytes": 34359738368u64, "disk": {"l1": 1000}},
        "labels": {"jdos.io/hw": "r740"}
    })
}

pub fn app_body(name: &str, department: &str) -> Value {
    json!({"name": name, "owner": "zhangsan", "department": department, "business_level": "core"})
}
