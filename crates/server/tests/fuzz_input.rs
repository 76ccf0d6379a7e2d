//! Random host registrations: the server answers 2xx, 400 or 409 (never a
//! 5xx or a non-JSON error), and a 400 writes nothing.

mod common;

use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::json;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        "[A-Za-z0-9_ .-]{0,12}",
        Just(String::new()),
        "[a-z]{64,70}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn registrations_are_answered_cleanly(
        regs in proptest::collection::vec(
            (name(), prop_oneof![Just("dc1".to_string()), Just("dc2".to_string()), name()], name(), name(), 0u64..4, 0u64..4),
            1..6,
        )
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = common::api().await;
            for (n, dc, sw, rack, cpu, mem) in regs {
                let before = a.revision().await;
                let body = json!({
                    "name": n, "datacenter": dc, "switch": sw, "rack": rack,
                    "capacity": {"cpu_millis": cpu * 1000, "memory_bytes": mem << 30},
                });
                let r = a.post("/api/v1/hosts", &a.admin, body).await;
                let v = if r.status.is_success() { None } else { Some(r.json()) };
                match r.status {
                    StatusCode::CREATED | StatusCode::OK => {
                        let got = a.get(&format!("/api/v1/hosts/{n}"), &a.admin).await;
                        assert_eq!(got.status, StatusCode::OK, "{}", got.text);
                        assert_eq!(got.json()["host"]["datacenter"], dc.as_str());
                    }
                    StatusCode::BAD_REQUEST => {
                        let v = v.unwrap();
                        assert_eq!(v["code"], "validation_failed", "{v}");
                        assert!(!v["details"].as_array().unwrap().is_empty());
                        assert_eq!(a.revision().await, before, "a 400 wrote something");
                    }
                    StatusCode::CONFLICT => assert_eq!(v.unwrap()["code"], "conflict"),
                    other => panic!("unexpected {other}: {}", r.text),
                }
            }
        });
    }
}
