//! Alerting: policies and receivers (create or replace, list, get, delete),
//! silences (create, list, expire) and the alerts the evaluator keeps.
//!
//! Scoping: a developer's policies must watch an app of its department and
//! name receivers of its department; its receivers and silences belong to
//! its department (a silence must match one of its apps exactly); it sees
//! only its department's policies, receivers, silences and alerts. Policies
//! scoped to a host, a datacenter or the whole cluster are for admin and ops.
//! Receiver secrets (gateway tokens) are never shown back.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::alert::{
    Alert, AlertPolicy, AlertState, LabelMatcher, Receiver, Silence, REDACTED,
};
use jdos_types::api::ListResponse;
use jdos_types::{keys, App, Role, Validate, ValidationErrors};
use serde::Deserialize;

use super::list::PageParams;
use super::{Param, Route, PAGE_PARAMS};
use crate::auth::{self, Caller};
use crate::error::HttpError;
use crate::events::Mutation;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv::{self, Versioned};
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/alerting/policies", apply_policy_handler)
            .doc(
                "alerting",
                "Create or replace an alert policy (201 when created, 200 when replaced)",
            )
            .accepts::<AlertPolicy>()
            .returns::<AlertPolicy>(),
        Route::new(Method::GET, "/api/v1/alerting/policies", list_policies_handler)
            .doc("alerting", "List alert policies")
            .query(&APP_PARAMS)
            .returns::<ListResponse<AlertPolicy>>(),
        Route::new(Method::GET, "/api/v1/alerting/policies/{name}", get_policy_handler)
            .doc("alerting", "Get an alert policy")
            .returns::<AlertPolicy>(),
        Route::new(
            Method::DELETE,
            "/api/v1/alerting/policies/{name}",
            delete_policy_handler,
        )
        .doc(
            "alerting",
            "Delete an alert policy (its alerts resolve); answers the deleted policy",
        )
        .returns::<AlertPolicy>(),
        Route::new(Method::POST, "/api/v1/alerting/receivers", apply_receiver_handler)
            .doc(
                "alerting",
                "Create or replace a receiver (email, sms, webhook); a secret sent back as <redacted> keeps the stored one",
            )
            .accepts::<Receiver>()
            .returns::<Receiver>(),
        Route::new(Method::GET, "/api/v1/alerting/receivers", list_receivers_handler)
            .doc("alerting", "List receivers (secrets redacted)")
            .query(&PAGE_PARAMS)
            .returns::<ListResponse<Receiver>>(),
        Route::new(
            Method::GET,
            "/api/v1/alerting/receivers/{name}",
            get_receiver_handler,
        )
        .doc("alerting", "Get a receiver (secrets redacted)")
        .returns::<Receiver>(),
        Route::new(
            Method::DELETE,
            "/api/v1/alerting/receivers/{name}",
            delete_receiver_handler,
        )
        .doc(
            "alerting",
            "Delete a receiver no policy names; answers it (secrets redacted)",
        )
        .returns::<Receiver>(),
        Route::new(Method::POST, "/api/v1/alerting/silences", create_silence_handler)
            .doc(
                "alerting",
                "Create a silence: no notifications for alerts matching every matcher until it ends",
            )
            .accepts::<Silence>()
            .returns::<Silence>()
            .status(201),
        Route::new(Method::GET, "/api/v1/alerting/silences", list_silences_handler)
            .doc("alerting", "List silences")
            .query(&SILENCE_PARAMS)
            .returns::<ListResponse<Silence>>(),
        Route::new(
            Method::DELETE,
            "/api/v1/alerting/silences/{id}",
            expire_silence_handler,
        )
        .doc(
            "alerting",
            "Expire a silence now (it stays listed as expired); answers it",
        )
        .returns::<Silence>(),
        Route::new(Method::GET, "/api/v1/alerts", list_alerts_handler)
            .doc("alerting", "List alerts (pending, firing, recently resolved)")
            .query(&ALERT_PARAMS)
            .returns::<ListResponse<Alert>>(),
    ]
}

const APP_PARAMS: [Param; 3] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "app",
        ty: "string",
        description: "only policies watching this app",
    },
];

const SILENCE_PARAMS: [Param; 3] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "status",
        ty: "string",
        description: "only silences in this status: active, pending or expired",
    },
];

const ALERT_PARAMS: [Param; 6] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "state",
        ty: "string",
        description: "only alerts in this state: pending, firing or resolved",
    },
    Param {
        name: "app",
        ty: "string",
        description: "only alerts with this app label",
    },
    Param {
        name: "policy",
        ty: "string",
        description: "only alerts of this policy",
    },
    Param {
        name: "severity",
        ty: "string",
        description: "only alerts of this severity: critical, warning or info",
    },
];

const ROLES: &[Role] = &[Role::Admin, Role::Ops, Role::Developer];

fn in_scope(caller: &Caller, department: Option<&str>) -> bool {
    match department {
        Some(d) => caller.in_scope(d),
        None => caller.role != Role::Developer,
    }
}

fn require_in_scope(
    caller: &Caller,
    department: Option<&str>,
    what: &str,
) -> Result<(), HttpError> {
    match department {
        Some(d) => caller.require_scope(d, what),
        None if caller.role == Role::Developer => Err(HttpError::forbidden(format!(
            "{what} is not of a department: only admin and ops tokens may see or change it"
        ))),
        None => Ok(()),
    }
}

/// Reads an app, as a field error when it does not exist.
async fn app_of(st: &AppState, field: &str, name: &str) -> Result<Versioned<App>, HttpError> {
    kv::get_json::<App>(st.store(), &keys::app(name))
        .await?
        .ok_or_else(|| {
            let mut e = ValidationErrors::new();
            e.add(
                field,
                "not_found",
                format!("app {name:?} does not exist: create it first"),
            );
            e.into()
        })
}

// ---- policies ----------------------------------------------------------

async fn apply_policy_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(p): ApiJson<AlertPolicy>,
) -> Result<(StatusCode, Json<AlertPolicy>), HttpError> {
    let draft = st.draft(&caller, "alert_policy.apply", "alert_policy", &p.name);
    st.audited(draft, async {
        caller.require(ROLES, "write alert policies")?;
        let (created, p) = apply_policy(&st, &caller, p).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(p)))
    })
    .await
}

/// Creates or replaces a policy; answers whether it was created.
#[tracing::instrument(skip_all, fields(policy = %p.name))]
pub async fn apply_policy(
    st: &AppState,
    caller: &Caller,
    mut p: AlertPolicy,
) -> Result<(bool, AlertPolicy), HttpError> {
    p.validate()?;
    // The department comes from the watched app, never from the body.
    p.department = match &p.scope.app {
        Some(app) => Some(app_of(st, "scope.app", app).await?.value.department),
        None => None,
    };
    if caller.role == Role::Developer && p.scope.app.is_none() {
        return Err(HttpError::forbidden(
            "a developer token may only write policies that watch an app (scope.app): host, datacenter and cluster-wide policies are for admin and ops",
        )
        .with_field("scope.app"));
    }
    require_in_scope(
        caller,
        p.department.as_deref(),
        &format!("policy {:?}", p.name),
    )?;
    let mut errs = ValidationErrors::new();
    for (i, r) in p.receivers.iter().enumerate() {
        match kv::get_json::<Receiver>(st.store(), &keys::alert_receiver(r)).await? {
            None => errs.add(
                format!("receivers[{i}]"),
                "not_found",
                format!(
                    "receiver {r:?} does not exist: create it with POST /api/v1/alerting/receivers"
                ),
            ),
            Some(rv)
                if caller.role == Role::Developer && rv.value.department != caller.department =>
            {
                errs.add(
                    format!("receivers[{i}]"),
                    "forbidden",
                    format!("receiver {r:?} is not of this token's department"),
                )
            }
            Some(_) => {}
        }
    }
    errs.into_result()?;
    let key = keys::alert_policy(&p.name);
    st.mutate(|| {
        let mut p = p.clone();
        let key = key.clone();
        async move {
            let cur = kv::get_json::<AlertPolicy>(st.store(), &key).await?;
            let now = st.now_ms();
            let compare = match &cur {
                Some(c) => {
                    require_in_scope(
                        caller,
                        c.value.department.as_deref(),
                        &format!("policy {:?}", p.name),
                    )?;
                    p.created_at_ms = c.value.created_at_ms;
                    Compare::mod_revision(key.as_str(), c.mod_revision)
                }
                None => {
                    p.created_at_ms = now;
                    Compare::absent(key.as_str())
                }
            };
            p.updated_at_ms = now;
            p.updated_by = caller.name.clone();
            let mut event = st
                .draft(caller, "alert_policy.apply", "alert_policy", &p.name)
                .message(format!(
                    "{} {}: {}",
                    if cur.is_some() { "replaced" } else { "created" },
                    p.severity.as_str(),
                    p.condition.describe()
                ));
            if let (Some(app), Some(d)) = (&p.scope.app, &p.department) {
                event = event.app(app, d);
            }
            let m = Mutation {
                compares: vec![compare],
                ops: vec![TxnOp::put(key.as_str(), json::encode(&p)?)],
                event,
            };
            Ok((m, (cur.is_none(), p)))
        }
    })
    .await
}

/// Query of the policy list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyFilter {
    /// Only policies watching this app.
    #[serde(default)]
    pub app: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_policies_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PolicyFilter>,
) -> Result<Json<ListResponse<AlertPolicy>>, HttpError> {
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    let found = page
        .list(st.store(), keys::ALERT_POLICIES, |p: &AlertPolicy| {
            in_scope(&caller, p.department.as_deref())
                && q.app
                    .as_ref()
                    .is_none_or(|a| p.scope.app.as_ref() == Some(a))
        })
        .await?;
    Ok(Json(found))
}

async fn load_policy(st: &AppState, name: &str) -> Result<Versioned<AlertPolicy>, HttpError> {
    kv::get_json(st.store(), &keys::alert_policy(name))
        .await?
        .ok_or_else(|| HttpError::not_found("alert policy", name))
}

async fn get_policy_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AlertPolicy>, HttpError> {
    let p = load_policy(&st, &name).await?.value;
    require_in_scope(
        &caller,
        p.department.as_deref(),
        &format!("policy {name:?}"),
    )?;
    Ok(Json(p))
}

async fn delete_policy_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AlertPolicy>, HttpError> {
    let draft = st.draft(&caller, "alert_policy.delete", "alert_policy", &name);
    st.audited(draft, async {
        caller.require(ROLES, "delete alert policies")?;
        st.mutate(|| async {
            let cur = load_policy(&st, &name).await?;
            require_in_scope(
                &caller,
                cur.value.department.as_deref(),
                &format!("policy {name:?}"),
            )?;
            let m = Mutation {
                compares: vec![Compare::mod_revision(
                    keys::alert_policy(&name),
                    cur.mod_revision,
                )],
                ops: vec![TxnOp::delete(keys::alert_policy(&name))],
                event: st.draft(&caller, "alert_policy.delete", "alert_policy", &name),
            };
            Ok((m, Json(cur.value)))
        })
        .await
    })
    .await
}

// ---- receivers ---------------------------------------------------------

async fn apply_receiver_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(r): ApiJson<Receiver>,
) -> Result<(StatusCode, Json<Receiver>), HttpError> {
    let draft = st.draft(&caller, "alert_receiver.apply", "alert_receiver", &r.name);
    st.audited(draft, async {
        caller.require(ROLES, "write alert receivers")?;
        let (created, r) = apply_receiver(&st, &caller, r).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(r.redacted())))
    })
    .await
}

/// Creates or replaces a receiver; answers whether it was created and the
/// stored receiver (with its secret: redact it before showing it).
#[tracing::instrument(skip_all, fields(receiver = %r.name))]
pub async fn apply_receiver(
    st: &AppState,
    caller: &Caller,
    mut r: Receiver,
) -> Result<(bool, Receiver), HttpError> {
    if caller.role == Role::Developer {
        r.department = caller.department.clone();
    }
    if let Some(d) = &r.department {
        let mut e = ValidationErrors::new();
        jdos_types::name::check_name(&mut e, "department", d);
        e.into_result()?;
    }
    let key = keys::alert_receiver(&r.name);
    st.mutate(|| {
        let mut r = r.clone();
        let key = key.clone();
        async move {
            let cur = kv::get_json::<Receiver>(st.store(), &key).await?;
            let compare = match &cur {
                Some(c) => {
                    require_in_scope(caller, c.value.department.as_deref(), &format!("receiver {:?}", r.name))?;
                    r.keep_secret_from(&c.value);
                    Compare::mod_revision(key.as_str(), c.mod_revision)
                }
                None => Compare::absent(key.as_str()),
            };
            let secret_left_redacted = serde_json::to_string(&r)
                .map_err(|e| HttpError::internal(e.to_string()))?
                .contains(REDACTED);
            if secret_left_redacted {
                return Err(HttpError::invalid(
                    "token",
                    format!("{REDACTED} keeps a stored secret, and this receiver has none: send the token itself"),
                ));
            }
            r.validate()?;
            r.updated_at_ms = st.now_ms();
            let m = Mutation {
                compares: vec![compare],
                ops: vec![TxnOp::put(key.as_str(), json::encode(&r)?)],
                event: st
                    .draft(caller, "alert_receiver.apply", "alert_receiver", &r.name)
                    .message(format!(
                        "{} {} receiver: {}",
                        if cur.is_some() { "replaced" } else { "created" },
                        r.kind.as_str(),
                        r.kind.target()
                    )),
            };
            Ok((m, (cur.is_none(), r)))
        }
    })
    .await
}

async fn list_receivers_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<Receiver>>, HttpError> {
    let mut found = page
        .list(st.store(), keys::ALERT_RECEIVERS, |r: &Receiver| {
            in_scope(&caller, r.department.as_deref())
        })
        .await?;
    found.items = found.items.into_iter().map(Receiver::redacted).collect();
    Ok(Json(found))
}

async fn load_receiver(st: &AppState, name: &str) -> Result<Versioned<Receiver>, HttpError> {
    kv::get_json(st.store(), &keys::alert_receiver(name))
        .await?
        .ok_or_else(|| HttpError::not_found("receiver", name))
}

async fn get_receiver_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Receiver>, HttpError> {
    let r = load_receiver(&st, &name).await?.value;
    require_in_scope(
        &caller,
        r.department.as_deref(),
        &format!("receiver {name:?}"),
    )?;
    Ok(Json(r.redacted()))
}

async fn delete_receiver_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Receiver>, HttpError> {
    let draft = st.draft(&caller, "alert_receiver.delete", "alert_receiver", &name);
    st.audited(draft, async {
        caller.require(ROLES, "delete alert receivers")?;
        st.mutate(|| async {
            let cur = load_receiver(&st, &name).await?;
            require_in_scope(
                &caller,
                cur.value.department.as_deref(),
                &format!("receiver {name:?}"),
            )?;
            let users: Vec<String> = kv::list_all::<AlertPolicy>(st.store(), keys::ALERT_POLICIES)
                .await?
                .into_iter()
                .filter(|p| p.receivers.contains(&name))
                .map(|p| p.name)
                .collect();
            if !users.is_empty() {
                return Err(HttpError::conflict(format!(
                    "receiver {name:?} is named by polic{} {}: remove it from them first",
                    if users.len() == 1 { "y" } else { "ies" },
                    users.join(", ")
                )));
            }
            let m = Mutation {
                compares: vec![Compare::mod_revision(
                    keys::alert_receiver(&name),
                    cur.mod_revision,
                )],
                ops: vec![TxnOp::delete(keys::alert_receiver(&name))],
                event: st.draft(&caller, "alert_receiver.delete", "alert_receiver", &name),
            };
            Ok((m, Json(cur.value.redacted())))
        })
        .await
    })
    .await
}

// ---- silences ----------------------------------------------------------

async fn create_silence_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(s): ApiJson<Silence>,
) -> Result<(StatusCode, Json<Silence>), HttpError> {
    let draft = st.draft(&caller, "silence.create", "silence", "");
    st.audited(draft, async {
        caller.require(ROLES, "create silences")?;
        Ok((
            StatusCode::CREATED,
            Json(create_silence(&st, &caller, s).await?),
        ))
    })
    .await
}

/// Creates a silence; a start of 0 means now.
#[tracing::instrument(skip_all)]
pub async fn create_silence(
    st: &AppState,
    caller: &Caller,
    mut s: Silence,
) -> Result<Silence, HttpError> {
    let now = st.now_ms();
    if s.starts_at_ms == 0 {
        s.starts_at_ms = now;
    }
    s.validate()?;
    if s.ends_at_ms <= now {
        return Err(HttpError::invalid(
            "ends_at_ms",
            "the silence would already be over: give an end in the future",
        ));
    }
    s.department = None;
    let apps: Vec<&LabelMatcher> = s
        .matchers
        .iter()
        .filter(|m| m.name == "app" && m.is_exact())
        .collect();
    if caller.role == Role::Developer {
        let Some(m) = apps.first() else {
            return Err(HttpError::forbidden(
                "a developer's silence must match one of its department's apps exactly (e.g. app=shop)",
            )
            .with_field("matchers"));
        };
        let app = app_of(st, "matchers", &m.value).await?.value;
        caller.require_scope(&app.department, &format!("app {:?}", app.name))?;
        s.department = Some(app.department);
    } else if let Some(m) = apps.first() {
        if let Some(app) = kv::get_json::<App>(st.store(), &keys::app(&m.value)).await? {
            s.department = Some(app.value.department);
        }
    }
    s.id = auth::random_hex(8)?;
    s.created_by = caller.name.clone();
    s.created_at_ms = now;
    let key = keys::silence(&s.id);
    let matchers: Vec<String> = s.matchers.iter().map(|m| m.to_string()).collect();
    let mut event = st
        .draft(caller, "silence.create", "silence", &s.id)
        .message(format!(
            "{} until {} (unix ms): {}",
            matchers.join(","),
            s.ends_at_ms,
            s.comment
        ));
    if let (Some(m), Some(d)) = (apps.first(), &s.department) {
        event = event.app(&m.value, d);
    }
    let m = Mutation {
        compares: vec![Compare::absent(key.as_str())],
        ops: vec![TxnOp::put(key.as_str(), json::encode(&s)?)],
        event,
    };
    match st.events().commit(st.store(), m, now).await? {
        crate::events::Commit::Done { .. } => Ok(s),
        crate::events::Commit::Stale => Err(HttpError::conflict("silence id collision: try again")),
    }
}

/// Query of the silence list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SilenceFilter {
    /// Only this status: active, pending, expired.
    #[serde(default)]
    pub status: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_silences_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SilenceFilter>,
) -> Result<Json<ListResponse<Silence>>, HttpError> {
    if let Some(s) = &q.status {
        if !["active", "pending", "expired"].contains(&s.as_str()) {
            return Err(HttpError::invalid(
                "status",
                format!("unknown status {s:?}: use active, pending or expired"),
            ));
        }
    }
    let now = st.now_ms();
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    let found = page
        .list(st.store(), keys::SILENCES, |s: &Silence| {
            in_scope(&caller, s.department.as_deref())
                && q.status.as_ref().is_none_or(|st| s.status(now) == st)
        })
        .await?;
    Ok(Json(found))
}

async fn expire_silence_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Silence>, HttpError> {
    let draft = st.draft(&caller, "silence.expire", "silence", &id);
    st.audited(draft, async {
        caller.require(ROLES, "expire silences")?;
        st.mutate(|| async {
            let cur = kv::get_json::<Silence>(st.store(), &keys::silence(&id))
                .await?
                .ok_or_else(|| HttpError::not_found("silence", &id))?;
            require_in_scope(
                &caller,
                cur.value.department.as_deref(),
                &format!("silence {id:?}"),
            )?;
            let now = st.now_ms();
            let mut s = cur.value;
            if s.ends_at_ms <= now {
                return Ok((
                    Mutation {
                        compares: vec![Compare::mod_revision(keys::silence(&id), cur.mod_revision)],
                        ops: Vec::new(),
                        event: st
                            .draft(&caller, "silence.expire", "silence", &id)
                            .message("already expired"),
                    },
                    Json(s),
                ));
            }
            s.ends_at_ms = now;
            // One that had not started yet ends right as it starts.
            s.starts_at_ms = s.starts_at_ms.min(now.saturating_sub(1));
            let m = Mutation {
                compares: vec![Compare::mod_revision(keys::silence(&id), cur.mod_revision)],
                ops: vec![TxnOp::put(keys::silence(&id), json::encode(&s)?)],
                event: st.draft(&caller, "silence.expire", "silence", &id),
            };
            Ok((m, Json(s)))
        })
        .await
    })
    .await
}

// ---- alerts ------------------------------------------------------------

/// Query of the alert list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertFilter {
    /// Only this state.
    #[serde(default)]
    pub state: Option<AlertState>,
    /// Only alerts with this app label.
    #[serde(default)]
    pub app: Option<String>,
    /// Only alerts of this policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Only this severity.
    #[serde(default)]
    pub severity: Option<jdos_types::alert::Severity>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_alerts_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AlertFilter>,
) -> Result<Json<ListResponse<Alert>>, HttpError> {
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    let found = page
        .list(st.store(), keys::ALERTS, |a: &Alert| {
            in_scope(&caller, a.department.as_deref())
                && q.state.is_none_or(|s| a.state == s)
                && q.severity.is_none_or(|s| a.severity == s)
                && q.app
                    .as_ref()
                    .is_none_or(|x| a.labels.get("app") == Some(x))
                && q.policy.as_ref().is_none_or(|x| &a.policy == x)
        })
        .await?;
    Ok(Json(found))
}

// ---- documentation samples ---------------------------------------------

impl Documented for AlertPolicy {
    fn schema_name() -> String {
        "AlertPolicy".into()
    }
    fn sample() -> Self {
        serde_json::from_value(serde_json::json!({
            "name": "shop-high-cpu",
            "description": "a container of shop burns its cpu",
            "scope": {"app": "shop", "env": "production", "group": "web", "host": "lf-h001", "datacenter": "langfang"},
            "condition": {"type": "threshold", "metric": "container_cpu_usage_cores", "aggregation": "max",
                          "per": "instance", "op": ">", "value": 0.9, "window": "5m"},
            "for": "2m",
            "severity": "critical",
            "labels": {"team": "retail"},
            "annotations": {"summary": "cpu of {{labels.instance}} at {{value}}"},
            "receivers": ["oncall-mail"],
            "repeat_interval": "4h",
            "group_by": ["app"],
            "group_wait": "5s",
            "enabled": true,
            "department": "retail",
            "updated_by": "admin",
            "created_at_ms": 1_700_000_000_000u64,
            "updated_at_ms": 1_700_000_000_000u64
        }))
        .expect("valid sample")
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            ("severity", vec!["critical", "warning", "info"]),
            ("type", vec!["threshold", "rate", "absence", "event"]),
            ("aggregation", vec!["avg", "max", "min", "sum", "p95"]),
            ("per", vec!["instance", "group", "host", "scope"]),
            ("op", vec![">", ">=", "<", "<=", "==", "!="]),
        ]
    }
}

impl Documented for Receiver {
    fn schema_name() -> String {
        "Receiver".into()
    }
    fn sample() -> Self {
        serde_json::from_value(serde_json::json!({
            "name": "oncall-mail", "type": "email", "smtp_host": "127.0.0.1", "smtp_port": 25,
            "from": "jdos@example.com", "to": ["oncall@example.com"], "timeout": "10s",
            "department": "retail", "updated_at_ms": 1_700_000_000_000u64
        }))
        .expect("valid sample")
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("type", vec!["email", "sms", "webhook"])]
    }
}

impl Documented for Silence {
    fn schema_name() -> String {
        "Silence".into()
    }
    fn sample() -> Self {
        Silence {
            id: "9f2c4d1e8a7b6c5d".into(),
            matchers: vec![LabelMatcher {
                name: "app".into(),
                value: "shop".into(),
            }],
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: 1_700_007_200_000,
            created_by: "admin".into(),
            comment: "planned maintenance".into(),
            department: Some("retail".into()),
            created_at_ms: 1_700_000_000_000,
        }
    }
}

impl Documented for Alert {
    fn schema_name() -> String {
        "Alert".into()
    }
    fn sample() -> Self {
        let labels: std::collections::BTreeMap<String, String> = [
            ("alertname", "shop-high-cpu"),
            ("severity", "critical"),
            ("app", "shop"),
            ("instance", "shop.production.web.3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Alert {
            fingerprint: jdos_types::alert::fingerprint("shop-high-cpu", &labels),
            policy: "shop-high-cpu".into(),
            severity: jdos_types::alert::Severity::Critical,
            labels,
            annotations: [(
                "summary".to_string(),
                "cpu of shop.production.web.3 at 0.97".to_string(),
            )]
            .into(),
            state: AlertState::Firing,
            value: 0.97,
            active_since_ms: 1_700_000_000_000,
            fired_at_ms: Some(1_700_000_120_000),
            resolved_at_ms: Some(1_700_000_900_000),
            changed_at_ms: 1_700_000_120_000,
            updated_at_ms: 1_700_000_135_000,
            department: Some("retail".into()),
            silenced_by: Some("9f2c4d1e8a7b6c5d".into()),
            notified: [(
                "oncall-mail".to_string(),
                jdos_types::alert::NotifyMark {
                    state: AlertState::Firing,
                    at_ms: 1_700_000_125_000,
                },
            )]
            .into(),
            errors: [("sms-oncall".to_string(), "gateway answered 503".to_string())].into(),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            ("state", vec!["pending", "firing", "resolved"]),
            ("severity", vec!["critical", "warning", "info"]),
        ]
    }
}
