//! The agents' endpoints: register, heartbeat, assignments.
//!
//! Each is a plain async function (callable in-process, as `jdos dev`'s
//! agents do) behind a thin handler. An agent registers with the server's
//! join token and gets a per-host token (stored hashed at `keys::agent`),
//! which authorizes that host's endpoints only.
//!
//! Heartbeats update an in-memory liveness table ([`AppState::liveness`]);
//! the host record's `last_heartbeat_ms` is written at most every
//! [`PERSIST_HEARTBEAT_MS`], so thousands of agents heartbeating every second
//! do not write the store every second. Reports that changed are applied
//! to the container records in one transaction per heartbeat.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::Json;
use jdos_store::{json, Compare, Txn, TxnOp};
use jdos_types::agent::{
    AgentRegister, AgentSession, Assignment, AssignmentList, ContainerReport, Heartbeat,
    HeartbeatReply,
};
use jdos_types::api::RegisterHost;
use jdos_types::name::check_name;
use jdos_types::topology::HostAllocation;
use jdos_types::{
    keys, Container, ContainerPhase, Host, HostState, InstanceId, Resources, UnixMillis, Validate,
};
use serde::{Deserialize, Serialize};

use super::{Param, Route};
use crate::auth::{constant_time_eq, hash_secret, random_hex};
use crate::error::HttpError;
use crate::events::{EventDraft, Mutation};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv::{self, Versioned};
use crate::openapi::Documented;
use crate::state::AppState;

/// `last_heartbeat_ms` is written to the host record at most this often.
pub const PERSIST_HEARTBEAT_MS: u64 = 30_000;
/// Longest long-poll of the assignments endpoint.
pub const MAX_WAIT_MS: u64 = 60_000;
pub use crate::dev::SIMULATED_DRIVER;

/// A host's agent credential, at `keys::agent(host)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCredential {
    /// Host.
    pub host: String,
    /// SHA-256 of the agent token (the token itself is never stored).
    pub token_sha256: String,
    /// When it was issued.
    pub issued_at_ms: UnixMillis,
    /// Agent version at registration.
    #[serde(default)]
    pub version: String,
}

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/agents/register", register_handler)
            .doc(
                "agents",
                "Register (or re-register) an agent's host; Bearer = the server's join token",
            )
            .accepts::<AgentRegister>()
            .returns::<AgentSession>(),
        Route::new(
            Method::POST,
            "/api/v1/agents/{host}/heartbeat",
            heartbeat_handler,
        )
        .doc(
            "agents",
            "An agent's heartbeat with its changed container reports; Bearer = its agent token",
        )
        .accepts::<Heartbeat>()
        .returns::<HeartbeatReply>(),
        Route::new(
            Method::GET,
            "/api/v1/agents/{host}/assignments",
            assignments_handler,
        )
        .doc(
            "agents",
            "The host's work orders; long-polls until they change after `after` or `wait_ms` passes",
        )
        .query(&ASSIGNMENT_PARAMS)
        .returns::<AssignmentList>(),
    ]
}

const ASSIGNMENT_PARAMS: [Param; 2] = [
    Param {
        name: "after",
        ty: "integer",
        description: "answer once the assignments changed after this revision (0: at once)",
    },
    Param {
        name: "wait_ms",
        ty: "integer",
        description: "longest wait in ms (default 0, at most 60000)",
    },
];

/// The bearer token of an agent request, checked for presence before the
/// body is read (a call without one is a 401 whatever its body).
pub struct AgentBearer(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AgentBearer {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, HttpError> {
        Ok(AgentBearer(bearer(&parts.headers)?.to_string()))
    }
}

/// The bearer string of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, HttpError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            HttpError::unauthorized(
                "missing Authorization header: send 'Authorization: Bearer <token>'",
            )
        })?
        .to_str()
        .map_err(|_| HttpError::unauthorized("the Authorization header is not ASCII"))?;
    h.split_once(' ')
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| HttpError::unauthorized("the Authorization header must be 'Bearer <token>'"))
}

async fn register_handler(
    State(st): State<AppState>,
    AgentBearer(token): AgentBearer,
    ApiJson(req): ApiJson<AgentRegister>,
) -> Result<Json<AgentSession>, HttpError> {
    Ok(Json(register(&st, &token, req).await?))
}

async fn heartbeat_handler(
    State(st): State<AppState>,
    AgentBearer(token): AgentBearer,
    ApiPath(host): ApiPath<String>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatReply>, HttpError> {
    Ok(Json(heartbeat(&st, &host, &token, hb).await?))
}

/// Query of the assignments endpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct AssignmentQuery {
    /// Revision the agent holds.
    #[serde(default)]
    pub after: u64,
    /// Longest wait.
    #[serde(default)]
    pub wait_ms: u64,
    /// Revision of the list the agent holds: the assignments unchanged
    /// since then come as identities only (`kept`). 0: every one in full.
    #[serde(default)]
    pub known: u64,
}

async fn assignments_handler(
    State(st): State<AppState>,
    AgentBearer(token): AgentBearer,
    ApiPath(host): ApiPath<String>,
    ApiQuery(q): ApiQuery<AssignmentQuery>,
) -> Result<Json<AssignmentList>, HttpError> {
    Ok(Json(
        assignments(&st, &host, &token, q.after, q.wait_ms, q.known).await?,
    ))
}

/// Checks the join token.
fn check_join_token(st: &AppState, token: &str) -> Result<(), HttpError> {
    let Some(want) = st.join_token_sha256() else {
        return Err(HttpError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server has no join token configured: start it with --join-token or let it create join.token",
        ));
    };
    if constant_time_eq(hash_secret(token).as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        Err(HttpError::unauthorized(
            "invalid join token: use the server's join token (join.token in its data dir, or --join-token)",
        ))
    }
}

/// Checks that `token` is `host`'s agent token.
pub async fn authenticate_agent(st: &AppState, host: &str, token: &str) -> Result<(), HttpError> {
    let bad = || HttpError::unauthorized("invalid agent token for this host: register again");
    let Some(cred) = kv::get_json::<AgentCredential>(st.store(), &keys::agent(host)).await? else {
        return Err(bad());
    };
    if constant_time_eq(
        hash_secret(token).as_bytes(),
        cred.value.token_sha256.as_bytes(),
    ) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Registers an agent's host. A new host is created ready; an existing one
/// keeps its epoch, state and cordon and takes the reported capacity,
/// zone, labels, topology and driver. A host registered in another
/// datacenter is refused, unless it is a `simulated` host with no
/// containers (taken over). Issues a new agent token (the previous one
/// stops working).
#[tracing::instrument(skip_all, fields(host = %req.host.name))]
pub async fn register(
    st: &AppState,
    join_token: &str,
    req: AgentRegister,
) -> Result<AgentSession, HttpError> {
    check_join_token(st, join_token)?;
    let fresh = host_of(&req.host, st.now_ms())?;
    let token = format!("agent.{}", random_hex(32)?);
    let cred = AgentCredential {
        host: fresh.name.clone(),
        token_sha256: hash_secret(&token),
        issued_at_ms: st.now_ms(),
        version: req.version.clone(),
    };
    let key = keys::host(&fresh.name);
    let actor = format!("agent:{}", fresh.name);
    let host = st
        .mutate(|| {
            let fresh = fresh.clone();
            let cred = cred.clone();
            let key = key.clone();
            let actor = actor.clone();
            async move {
                let current: Option<Versioned<Host>> = kv::get_json(st.store(), &key).await?;
                let alloc: Option<Versioned<HostAllocation>> =
                    kv::get_json(st.store(), &keys::alloc(&fresh.name)).await?;
                let event = EventDraft::new(&actor, "agent.register", "host", &fresh.name);
                let mut ops = vec![TxnOp::put(keys::agent(&fresh.name), json::encode(&cred)?)];
                let (compares, host, msg) = match current {
                    None => {
                        let a = HostAllocation {
                            host: fresh.name.clone(),
                            ..Default::default()
                        };
                        ops.push(TxnOp::put(keys::alloc(&fresh.name), json::encode(&a)?));
                        (
                            vec![Compare::absent(key.as_str())],
                            fresh.clone(),
                            format!(
                                "registered in {}/{}/{} ({})",
                                fresh.datacenter, fresh.switch, fresh.rack, fresh.driver
                            ),
                        )
                    }
                    Some(cur) => {
                        let simulated = cur.value.driver == SIMULATED_DRIVER;
                        let busy = alloc.as_ref().is_some_and(|a| a.value.containers > 0);
                        if cur.value.datacenter != fresh.datacenter && (!simulated || busy) {
                            return Err(HttpError::conflict(format!(
                                "host {:?} is registered in datacenter {:?}: delete it first or register under another name",
                                fresh.name, cur.value.datacenter
                            ))
                            .with_field("host.datacenter"));
                        }
                        let mut h = cur.value.clone();
                        h.datacenter = fresh.datacenter.clone();
                        h.switch = fresh.switch.clone();
                        h.rack = fresh.rack.clone();
                        h.capacity = fresh.capacity;
                        h.resource_zone = fresh.resource_zone.clone();
                        h.labels = fresh.labels.clone();
                        h.driver = fresh.driver.clone();
                        let msg = if simulated {
                            format!("agent took over simulated host ({})", h.driver)
                        } else {
                            "agent re-registered".to_string()
                        };
                        (
                            vec![Compare::mod_revision(key.as_str(), cur.mod_revision)],
                            h,
                            msg,
                        )
                    }
                };
                ops.push(TxnOp::put(key.as_str(), json::encode(&host)?));
                Ok((
                    Mutation {
                        compares,
                        ops,
                        event: event.message(msg),
                    },
                    host,
                ))
            }
        })
        .await?;
    st.liveness().touch(&host.name, st.now_ms(), host.epoch);
    let t = st.timings();
    Ok(AgentSession {
        host,
        token,
        heartbeat_interval_ms: t.heartbeat_interval_ms,
        suspect_after_ms: t.suspect_after_ms,
        down_after_ms: t.down_after_ms,
        fence_after_ms: t.fence_after_ms,
    })
}

/// The host an agent describes, validated.
fn host_of(req: &RegisterHost, now: UnixMillis) -> Result<Host, HttpError> {
    let h = Host {
        name: req.name.clone(),
        datacenter: req.datacenter.clone(),
        switch: req.switch.clone(),
        rack: req.rack.clone(),
        capacity: req.capacity,
        resource_zone: req
            .resource_zone
            .clone()
            .unwrap_or_else(|| "general".into()),
        labels: req.labels.clone(),
        state: HostState::Ready,
        cordoned: false,
        epoch: 0,
        last_heartbeat_ms: now,
        registered_at_ms: now,
        driver: req.driver.clone().unwrap_or_else(|| "docker".into()),
    };
    let mut errs = h.validate().err().unwrap_or_default();
    check_name(&mut errs, "driver", &h.driver);
    if h.driver == SIMULATED_DRIVER {
        errs.add(
            "driver",
            "invalid",
            "an agent cannot register a simulated host: name its real driver",
        );
    }
    errs.into_result().map_err(|e| {
        // Fields are the agent's `host.*`.
        let mut e: HttpError = e.into();
        if let Some(f) = e.body.field.take() {
            e.body.field = Some(format!("host.{f}"));
        }
        e
    })?;
    Ok(h)
}

/// Takes a heartbeat: marks the host seen, applies changed reports, and
/// answers the host's state and epoch and whether its work orders changed.
#[tracing::instrument(skip_all, fields(host, reports = hb.reports.len()))]
pub async fn heartbeat(
    st: &AppState,
    host: &str,
    token: &str,
    hb: Heartbeat,
) -> Result<HeartbeatReply, HttpError> {
    authenticate_agent(st, host, token).await?;
    let now = st.now_ms();
    let Some(rec) = kv::get_json::<Host>(st.store(), &keys::host(host)).await? else {
        return Err(HttpError::not_found("host", host));
    };
    let prev = st.liveness().touch(host, now, hb.epoch);
    let outcome = st
        .platform()
        .apply_reports(host, &hb.reports)
        .await
        .map_err(HttpError::from)?;
    if outcome.ignored > 0 {
        tracing::debug!(
            ignored = outcome.ignored,
            "reports ignored (not here or stale epoch)"
        );
    }
    // The restart back-off gave up on these: the failover controller moves
    // them (it ignores a report about a copy that is not the current one).
    for r in hb.reports.iter().filter(|r| r.crash_loop && !r.gone) {
        st.failover().crash_loop(host, r.epoch, &r.id);
    }
    let persisted = prev
        .map_or(0, |p| p.persisted_ms)
        .max(rec.value.last_heartbeat_ms);
    if now.saturating_sub(persisted) >= PERSIST_HEARTBEAT_MS {
        let mut h = rec.value.clone();
        h.last_heartbeat_ms = now;
        // A plain timestamp refresh: no event, and a concurrent change of
        // the host wins (the next heartbeat writes it then).
        let txn = Txn::new()
            .when(Compare::mod_revision(keys::host(host), rec.mod_revision))
            .and_then(TxnOp::put(keys::host(host), json::encode(&h)?));
        if st.store().txn(txn).await?.succeeded {
            st.liveness().persisted(host, now);
        }
    }
    Ok(HeartbeatReply {
        state: rec.value.state,
        epoch: rec.value.epoch,
        assignments_revision: st
            .platform()
            .hub()
            .revision_of(host)
            .await
            .map_err(HttpError::from)?,
        // A server that never heard from this agent (it restarted) or an
        // agent behind the host's epoch needs the whole picture.
        want_full: prev.is_none() || hb.epoch != rec.value.epoch,
    })
}

/// The host's work orders at a revision: at once when they changed after
/// `after` (or `after` is 0), else when they change or `wait_ms` passes.
#[tracing::instrument(skip_all, fields(host, after, wait_ms))]
pub async fn assignments(
    st: &AppState,
    host: &str,
    token: &str,
    after: u64,
    wait_ms: u64,
    known: u64,
) -> Result<AssignmentList, HttpError> {
    authenticate_agent(st, host, token).await?;
    let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    st.platform()
        .hub()
        .wait_change(host, after, wait)
        .await
        .map_err(HttpError::from)?;
    let mut items = Vec::new();
    let mut kept = Vec::new();
    let prefix = keys::assignments_of_host(host);
    let revision = jdos_store::for_each_page(st.store(), &prefix, 2_000, |kvs| {
        for kv in kvs {
            // Unchanged since the agent's list: it has this one. Most of a
            // busy host's refetches were decoding and sending those.
            let id = (known > 0 && kv.mod_revision <= known)
                .then(|| kv.key.strip_prefix(&prefix)?.parse::<InstanceId>().ok())
                .flatten();
            match id {
                Some(id) => kept.push(id),
                None => items.push(json::decode::<Assignment>(kv)?),
            }
        }
        Ok::<_, HttpError>(())
    })
    .await?;
    let epoch = kv::get_json::<Host>(st.store(), &keys::host(host))
        .await?
        .map_or(0, |h| h.value.epoch);
    Ok(AssignmentList {
        revision,
        epoch,
        items,
        kept,
    })
}

fn sample_container() -> Container {
    Container {
        id: InstanceId {
            app: "shop".into(),
            env: "production".into(),
            group: "web".into(),
            index: 3,
        },
        datacenter: "langfang".into(),
        host: Some("lf-h001".into()),
        host_epoch: 1,
        network: Some("prod-vlan100".into()),
        ip: Some("10.20.0.13".parse().expect("valid")),
        image: "jdos-busybox:latest".into(),
        resources: Resources::new(1000, 1 << 30),
        desired: Default::default(),
        phase: ContainerPhase::Running,
        restarts: 0,
        message: "health check passed".into(),
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
    }
}

fn sample_register() -> RegisterHost {
    RegisterHost {
        name: "lf-h001".into(),
        datacenter: "langfang".into(),
        switch: "sw01".into(),
        rack: "r01".into(),
        capacity: Resources::new(32_000, 128 << 30),
        resource_zone: Some("general".into()),
        labels: [("jdos.io/hardware".to_string(), "r740".to_string())].into(),
        driver: Some("docker".into()),
    }
}

impl Documented for AgentRegister {
    fn schema_name() -> String {
        "AgentRegister".into()
    }
    fn sample() -> Self {
        AgentRegister {
            host: sample_register(),
            version: "0.1.0".into(),
        }
    }
}

impl Documented for AgentSession {
    fn schema_name() -> String {
        "AgentSession".into()
    }
    fn sample() -> Self {
        let t = crate::Timings::default();
        AgentSession {
            host: host_of(&sample_register(), 1_700_000_000_000).expect("valid sample"),
            token: "agent.0f3c…".into(),
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            suspect_after_ms: t.suspect_after_ms,
            down_after_ms: t.down_after_ms,
            fence_after_ms: t.fence_after_ms,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![(
            "state",
            vec!["ready", "suspect", "down", "draining", "degraded"],
        )]
    }
}

impl Documented for Heartbeat {
    fn schema_name() -> String {
        "Heartbeat".into()
    }
    fn sample() -> Self {
        let c = sample_container();
        Heartbeat {
            epoch: 1,
            reports: vec![ContainerReport {
                id: c.id,
                phase: ContainerPhase::Running,
                gone: false,
                restarts: 0,
                crash_loop: false,
                epoch: 1,
                generation: 0,
                message: "health check passed".into(),
                snapshot: None,
            }],
            full: false,
            sent_at_ms: 1_700_000_000_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![(
            "phase",
            vec![
                "pending",
                "scheduled",
                "starting",
                "running",
                "unhealthy",
                "stopped",
                "failed",
                "lost",
            ],
        )]
    }
}

impl Documented for HeartbeatReply {
    fn schema_name() -> String {
        "HeartbeatReply".into()
    }
    fn sample() -> Self {
        HeartbeatReply {
            state: HostState::Ready,
            epoch: 1,
            assignments_revision: 4711,
            want_full: false,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![(
            "state",
            vec!["ready", "suspect", "down", "draining", "degraded"],
        )]
    }
}

impl Documented for AssignmentList {
    fn schema_name() -> String {
        "AssignmentList".into()
    }
    fn sample() -> Self {
        AssignmentList {
            revision: 4711,
            epoch: 1,
            items: vec![Assignment {
                container: sample_container(),
                template: jdos_types::group::ContainerTemplate {
                    image: "jdos-busybox:latest".into(),
                    command: vec!["httpd".into(), "-f".into(), "-p".into(), "8080".into()],
                    resources: Resources::new(1000, 1 << 30),
                    ports: vec![8080],
                    ..Default::default()
                },
                network: None,
                generation: 0,
                snapshot: None,
            }],
            kept: vec![InstanceId {
                app: "shop".into(),
                env: "production".into(),
                group: "web".into(),
                index: 4,
            }],
        }
    }
}
