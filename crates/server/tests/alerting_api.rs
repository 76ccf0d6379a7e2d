//! The alerting API: policies, receivers, silences and alerts, with
//! validation, department scoping and redacted secrets.

mod common;

use axum::http::StatusCode;
use common::{api, app_body};
use jdos_store::json as sjson;
use jdos_types::alert::Receiver;
use jdos_types::keys;
use serde_json::{json, Value};

fn policy(name: &str, app: Option<&str>, receivers: &[&str]) -> Value {
    let mut p = json!({
        "name": name,
        "condition": {"type": "threshold", "metric": "container_cpu_usage_cores", "op": ">", "value": 0.9},
        "for": "1m",
        "receivers": receivers,
    });
    if let Some(a) = app {
        p["scope"] = json!({"app": a});
    }
    p
}

#[tokio::test]
async fn receivers_validate_and_never_show_their_secret() {
    let a = api().await;
    let body = json!({"name": "sms-oncall", "type": "sms", "url": "http://127.0.0.1:9/send",
                      "to": ["+8613800000000"], "token": "gw-secret"});
    let r = a
        .post("/api/v1/alerting/receivers", &a.admin, body.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["token"], "<redacted>");
    assert!(!r.text.contains("gw-secret"));
    for path in [
        "/api/v1/alerting/receivers",
        "/api/v1/alerting/receivers/sms-oncall",
    ] {
        let r = a.get(path, &a.admin).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            !r.text.contains("gw-secret") && r.text.contains("<redacted>"),
            "{}",
            r.text
        );
    }
    // Sending back what was shown keeps the stored secret.
    let mut shown = a
        .get("/api/v1/alerting/receivers/sms-oncall", &a.admin)
        .await
        .json();
    shown["to"] = json!(["+8613800000001"]);
    let r = a.post("/api/v1/alerting/receivers", &a.admin, shown).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let kv = a
        .state
        .store()
        .get(&keys::alert_receiver("sms-oncall"))
        .await
        .unwrap()
        .unwrap();
    let stored: Receiver = sjson::decode(&kv).unwrap();
    let text = serde_json::to_string(&stored).unwrap();
    assert!(
        text.contains("gw-secret") && text.contains("+8613800000001"),
        "{text}"
    );
    // A redacted token where none is stored is refused.
    let r = a
        .post(
            "/api/v1/alerting/receivers",
            &a.admin,
            json!({"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x", "token": "<redacted>"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "token");

    let r = a
        .post(
            "/api/v1/alerting/receivers",
            &a.admin,
            json!({"name": "mail", "type": "email", "smtp_host": "mx.local", "from": "jdos",
                   "to": ["ops@example.com", "bad address"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["code"], "validation_failed");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["from", "to[1]"]);
    assert!(
        a.state
            .store()
            .get(&keys::alert_receiver("mail"))
            .await
            .unwrap()
            .is_none(),
        "nothing written"
    );

    // A receiver a policy names cannot be deleted.
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &a.admin,
            policy("cpu", None, &["sms-oncall"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = a
        .call(
            "DELETE",
            "/api/v1/alerting/receivers/sms-oncall",
            &a.admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.json()["message"].as_str().unwrap().contains("cpu"));
    let r = a
        .call("DELETE", "/api/v1/alerting/policies/cpu", &a.admin, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .call(
            "DELETE",
            "/api/v1/alerting/receivers/sms-oncall",
            &a.admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("gw-secret"));
}

#[tokio::test]
async fn policies_are_applied_validated_and_scoped_by_department() {
    let a = api().await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    let other = a.token("olga", "developer", Some("logistics")).await;
    assert_eq!(
        a.post("/api/v1/apps", &a.admin, app_body("shop", "retail"))
            .await
            .status,
        StatusCode::CREATED
    );
    a.post(
        "/api/v1/alerting/receivers",
        &dev,
        json!({"name": "retail-hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}),
    )
    .await;
    a.post(
        "/api/v1/alerting/receivers",
        &a.admin,
        json!({"name": "ops-pager", "type": "webhook", "url": "http://127.0.0.1:9/p"}),
    )
    .await;

    let r = a
        .post(
            "/api/v1/alerting/policies",
            &dev,
            policy("shop-cpu", Some("shop"), &["retail-hook"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created = r.json();
    assert_eq!(created["department"], "retail");
    assert_eq!(created["updated_by"], "dora");
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &dev,
            policy("shop-cpu", Some("shop"), &["retail-hook"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "replaced");
    assert_eq!(r.json()["created_at_ms"], created["created_at_ms"]);

    // A developer may not watch the cluster, name ops' receivers, or touch
    // another department's policy.
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &dev,
            policy("all-cpu", None, &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &dev,
            policy("shop-cpu2", Some("shop"), &["ops-pager"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["field"], "receivers[0]");
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &other,
            policy("shop-cpu", Some("shop"), &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        a.get("/api/v1/alerting/policies/shop-cpu", &other)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = a.get("/api/v1/alerting/policies", &other).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
    let r = a.get("/api/v1/alerting/policies?app=shop", &dev).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.get("/api/v1/alerting/receivers", &dev).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a developer sees its department's receivers only"
    );

    // Bad input: every offending field, nothing written.
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &a.admin,
            json!({"name": "Bad Name", "scope": {"group": "web"},
                   "condition": {"type": "rate", "metric": "", "op": ">", "value": 1, "window": "0s"},
                   "annotations": {"summary": "{{valeu}}"}, "receivers": ["nope"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let fields: Vec<String> = r.json()["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    for f in [
        "name",
        "scope.group",
        "condition.metric",
        "condition.window",
        "annotations.summary",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &a.admin,
            policy("cpu", None, &["nope"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "receivers[0]");
    let r = a
        .post(
            "/api/v1/alerting/policies",
            &a.admin,
            policy("cpu", Some("ghost"), &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "scope.app");
    let r = a
        .raw(
            "POST",
            "/api/v1/alerting/policies",
            Some(&a.admin),
            Some(
                r#"{"name":"x","condition":{"type":"threshold","metric":"m","op":"~","value":1}}"#
                    .into(),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Every change is an event, and so is every refused attempt.
    let events = a.events(&a.admin, "&action=alert_policy.apply").await;
    let results: Vec<&str> = events
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["success", "success", "failure", "failure"],
        "{events:?}"
    );
    assert_eq!(events[0]["app"], "shop");
}

#[tokio::test]
async fn silences_are_created_listed_and_expired() {
    let a = api().await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    a.post("/api/v1/apps", &a.admin, app_body("shop", "retail"))
        .await;
    let now = a.state.now_ms();
    let r = a
        .post(
            "/api/v1/alerting/silences",
            &dev,
            json!({"matchers": [{"name": "app", "value": "shop"}, {"name": "instance", "value": "shop.*"}],
                   "ends_at_ms": now + 7_200_000, "comment": "deploying"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let s = r.json();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["created_by"], "dora");
    assert_eq!(s["department"], "retail");
    assert!(s["starts_at_ms"].as_u64().unwrap() >= now);

    let r = a
        .post(
            "/api/v1/alerting/silences",
            &dev,
            json!({"matchers": [{"name": "severity", "value": "critical"}], "ends_at_ms": now + 60_000}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a developer silences its own apps only"
    );
    let r = a
        .post(
            "/api/v1/alerting/silences",
            &a.admin,
            json!({"matchers": [], "ends_at_ms": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "matchers");

    let active = a.get("/api/v1/alerting/silences?status=active", &dev).await;
    assert_eq!(active.json()["items"].as_array().unwrap().len(), 1);
    let r = a
        .call(
            "DELETE",
            &format!("/api/v1/alerting/silences/{id}"),
            &dev,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["ends_at_ms"].as_u64().unwrap() <= a.state.now_ms());
    let expired = a
        .get("/api/v1/alerting/silences?status=expired", &dev)
        .await;
    assert_eq!(expired.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.get("/api/v1/alerting/silences?status=sleepy", &dev)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        a.call("DELETE", "/api/v1/alerting/silences/ffff", &dev, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn alerts_are_listed_by_state_and_department() {
    let a = api().await;
    let dev = a.token("dora", "developer", Some("retail")).await;
    let mk = |policy: &str, app: &str, dept: Option<&str>, state: &str| {
        let labels = json!({"alertname": policy, "severity": "warning", "app": app});
        let labels_map: std::collections::BTreeMap<String, String> =
            serde_json::from_value(labels.clone()).unwrap();
        json!({
            "fingerprint": jdos_types::alert::fingerprint(policy, &labels_map),
            "policy": policy, "severity": "warning", "labels": labels, "state": state,
            "value": 1.0, "active_since_ms": 1, "changed_at_ms": 1, "updated_at_ms": 1,
            "department": dept,
        })
    };
    for v in [
        mk("cpu", "shop", Some("retail"), "firing"),
        mk("mem", "shop", Some("retail"), "pending"),
        mk("cpu", "cart", Some("logistics"), "firing"),
        mk("disk", "", None, "firing"),
    ] {
        let fp = v["fingerprint"].as_str().unwrap().to_string();
        a.state
            .store()
            .put(&keys::alert(&fp), serde_json::to_vec(&v).unwrap(), None)
            .await
            .unwrap();
    }
    let n = |r: common::Resp| r.json()["items"].as_array().unwrap().len();
    assert_eq!(n(a.get("/api/v1/alerts", &a.admin).await), 4);
    assert_eq!(n(a.get("/api/v1/alerts?state=firing", &a.admin).await), 3);
    assert_eq!(
        n(a.get("/api/v1/alerts?state=firing&app=shop", &a.admin)
            .await),
        1
    );
    assert_eq!(n(a.get("/api/v1/alerts?policy=cpu", &a.admin).await), 2);
    assert_eq!(n(a.get("/api/v1/alerts", &dev).await), 2);
    assert_eq!(n(a.get("/api/v1/alerts?state=firing", &dev).await), 1);
    let r = a.get("/api/v1/alerts?state=burning", &a.admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "state");
}
