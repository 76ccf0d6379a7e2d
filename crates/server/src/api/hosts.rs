//! Hosts: register (idempotent), update, list, describe, cordon, uncordon, delete.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_store::{json, Compare, Store, TxnOp};
use jdos_types::api::{HostDetail, ListResponse, RegisterHost, UpdateHost};
use jdos_types::name::check_name;
use jdos_types::topology::HostAllocation;
use jdos_types::{keys, Container, Host, HostState, Role, Validate, ValidationErrors};
use serde::Deserialize;

use super::list::PageParams;
use super::{Param, Route, PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{EventDraft, Mutation};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv::{self, Versioned};
use crate::state::AppState;

/// Roles that may change hosts.
pub const HOST_WRITERS: &[Role] = &[Role::Admin, Role::Ops];

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/hosts", register_handler)
            .doc(
                "hosts",
                "Register a host, or re-register it (same datacenter) to update it",
            )
            .accepts::<RegisterHost>()
            .returns::<Host>()
            .status(201),
        Route::new(Method::GET, "/api/v1/hosts", list_handler)
            .doc("hosts", "List hosts")
            .query(&LIST_PARAMS)
            .returns::<ListResponse<Host>>(),
        Route::new(Method::GET, "/api/v1/hosts/{name}", get_handler)
            .doc(
                "hosts",
                "Describe a host: allocation and containers (a developer sees its department's only)",
            )
            .returns::<HostDetail>(),
        Route::new(Method::PATCH, "/api/v1/hosts/{name}", update_handler)
            .doc("hosts", "Change a host's capacity, resource zone or labels")
            .accepts::<UpdateHost>()
            .returns::<Host>(),
        Route::new(Method::DELETE, "/api/v1/hosts/{name}", delete_handler)
            .doc(
                "hosts",
                "Remove a host that runs no containers; answers the removed host",
            )
            .returns::<Host>(),
        Route::new(Method::POST, "/api/v1/hosts/{name}/cordon", cordon_handler)
            .doc("hosts", "Stop placing new containers on a host")
            .returns::<Host>(),
        Route::new(
            Method::POST,
            "/api/v1/hosts/{name}/uncordon",
            uncordon_handler,
        )
        .doc("hosts", "Place new containers on a host again")
        .returns::<Host>(),
    ]
}

const LIST_PARAMS: [Param; 4] = [
    PAGE_PARAMS[0],
    PAGE_PARAMS[1],
    Param {
        name: "datacenter",
        ty: "string",
        description: "only hosts of this datacenter",
    },
    Param {
        name: "state",
        ty: "string",
        description: "only hosts in this state (ready, suspect, down, draining, degraded)",
    },
];

async fn register_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterHost>,
) -> Result<(StatusCode, Json<Host>), HttpError> {
    let draft = st.draft(&caller, "host.register", "host", &req.name);
    st.audited(draft, async {
        caller.require(HOST_WRITERS, "register hosts")?;
        let (host, created) = register(&st, &caller, req).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(host)))
    })
    .await
}

/// Registers a host, or updates it when it exists in the same datacenter.
/// Returns the host and whether it was new. The one code path for the API,
/// `jdos dev`'s simulated hosts and (later) agents.
#[tracing::instrument(skip_all, fields(host = %req.name))]
pub async fn register(
    st: &AppState,
    caller: &Caller,
    req: RegisterHost,
) -> Result<(Host, bool), HttpError> {
    let now = st.now_ms();
    let fresh = Host {
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
        last_heartbeat_ms: 0,
        registered_at_ms: now,
        driver: req.driver.clone().unwrap_or_default(),
    };
    let mut errs = fresh.validate().err().unwrap_or_default();
    if let Some(d) = &req.driver {
        check_name(&mut errs, "driver", d);
    }
    errs.into_result()?;
    let key = keys::host(&req.name);
    st.mutate(|| {
        let fresh = fresh.clone();
        let key = key.clone();
        async move {
            let current: Option<Versioned<Host>> = kv::get_json(st.store(), &key).await?;
            let event = st.draft(caller, "host.register", "host", &fresh.name);
            match current {
                Some(cur) if cur.value.datacenter != fresh.datacenter => {
                    Err(HttpError::conflict(format!(
                        "host {:?} is already registered in datacenter {:?}: delete it first or pick another name",
                        fresh.name, cur.value.datacenter
                    ))
                    .with_field("name"))
                }
                Some(cur) => {
                    // Re-registration keeps what the platform decided about the
                    // host (state, cordon, epoch) and takes what the host reports.
                    let mut h = cur.value.clone();
                    h.switch = fresh.switch;
                    h.rack = fresh.rack;
                    h.capacity = fresh.capacity;
                    h.resource_zone = fresh.resource_zone;
                    h.labels = fresh.labels;
                    if !fresh.driver.is_empty() {
                        h.driver = fresh.driver;
                    }
                    let changed = h != cur.value;
                    let m = Mutation {
                        compares: vec![Compare::mod_revision(key.as_str(), cur.mod_revision)],
                        ops: vec![TxnOp::put(key.as_str(), json::encode(&h)?)],
                        event: event.message(if changed {
                            "re-registered: updated"
                        } else {
                            "re-registered: unchanged"
                        }),
                    };
                    Ok((m, (h, false)))
                }
                None => {
                    let alloc = HostAllocation {
                        host: fresh.name.clone(),
                        ..Default::default()
                    };
                    let m = Mutation {
                        compares: vec![Compare::absent(key.as_str())],
                        ops: vec![
                            TxnOp::put(key.as_str(), json::encode(&fresh)?),
                            TxnOp::put(keys::alloc(&fresh.name), json::encode(&alloc)?),
                        ],
                        event: event.message(format!(
                            "registered in {}/{}/{}",
                            fresh.datacenter, fresh.switch, fresh.rack
                        )),
                    };
                    Ok((m, (fresh, true)))
                }
            }
        }
    })
    .await
}

/// Query of `GET /api/v1/hosts`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostFilter {
    /// Only this datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Only this state.
    #[serde(default)]
    pub state: Option<HostState>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

async fn list_handler(
    State(st): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<HostFilter>,
) -> Result<Json<ListResponse<Host>>, HttpError> {
    let page = PageParams {
        limit: q.limit,
        continue_token: q.continue_token.clone(),
    };
    let found = page
        .list(st.store(), keys::HOSTS, |h: &Host| {
            q.datacenter.as_ref().is_none_or(|d| &h.datacenter == d)
                && q.state.is_none_or(|s| h.state == s)
        })
        .await?;
    Ok(Json(found))
}

async fn get_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HostDetail>, HttpError> {
    let mut detail = describe(&st, &name).await?;
    if caller.role == Role::Developer {
        detail.containers = in_scope(st.store(), &caller, detail.containers).await?;
    }
    Ok(Json(detail))
}

/// Keeps the containers of apps the caller may see: a developer describing a
/// host must not learn other departments' apps, images and addresses.
async fn in_scope(
    store: &dyn Store,
    caller: &Caller,
    containers: Vec<Container>,
) -> Result<Vec<Container>, HttpError> {
    let mut visible: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(containers.len());
    for c in containers {
        let app = c.id.app.clone();
        let ok = match visible.get(&app) {
            Some(ok) => *ok,
            None => {
                // An app deleted meanwhile has no department: hide its containers.
                let ok = kv::get_json::<jdos_types::App>(store, &keys::app(&app))
                    .await?
                    .is_some_and(|a| caller.in_scope(&a.value.department));
                visible.insert(app, ok);
                ok
            }
        };
        if ok {
            out.push(c);
        }
    }
    Ok(out)
}

/// A host with its allocation and the containers placed on it.
#[tracing::instrument(skip(st))]
pub async fn describe(st: &AppState, name: &str) -> Result<HostDetail, HttpError> {
    let host = load(st.store(), name).await?.value;
    let allocation = load_alloc(st.store(), name)
        .await?
        .map(|v| v.value)
        .unwrap_or(HostAllocation {
            host: name.to_string(),
            ..Default::default()
        });
    // The allocation's count lets an empty host skip even the index read.
    let containers = if allocation.containers == 0 {
        Vec::new()
    } else {
        containers_on(st.store(), name).await?
    };
    Ok(HostDetail {
        host,
        allocation,
        containers,
    })
}

/// The containers whose work orders are on `host` (the by-host index of
/// `keys::assignment`), read through their records. A container placed but
/// not yet published has no work order and is not listed.
pub async fn containers_on(store: &dyn Store, host: &str) -> Result<Vec<Container>, HttpError> {
    let prefix = keys::assignments_of_host(host);
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .range(
                &prefix,
                jdos_store::RangeOptions {
                    start_after: after.clone(),
                    limit: 4096,
                    keys_only: true,
                },
            )
            .await?;
        for kv in &page.kvs {
            let rest = &kv.key[prefix.len()..];
            let parts: Vec<&str> = rest.split('/').collect();
            if let [app, env, group, index] = parts.as_slice() {
                if let Ok(index) = index.parse::<u32>() {
                    ids.push(jdos_types::InstanceId {
                        app: app.to_string(),
                        env: env.to_string(),
                        group: group.to_string(),
                        index,
                    });
                }
            }
        }
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more || after.is_none() {
            break;
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) = kv::get_json::<Container>(store, &keys::container(&id)).await? {
            if c.value.host.as_deref() == Some(host) {
                out.push(c.value);
            }
        }
    }
    Ok(out)
}

async fn update_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateHost>,
) -> Result<Json<Host>, HttpError> {
    let draft = st.draft(&caller, "host.update", "host", &name);
    st.audited(draft, async {
        caller.require(HOST_WRITERS, "change hosts")?;
        Ok(Json(update(&st, &caller, &name, req).await?))
    })
    .await
}

/// Applies an [`UpdateHost`].
#[tracing::instrument(skip(st, caller, req))]
pub async fn update(
    st: &AppState,
    caller: &Caller,
    name: &str,
    req: UpdateHost,
) -> Result<Host, HttpError> {
    // Validate the patch on its own first, so that bad input is a 400 even
    // for a host that does not exist.
    let mut errs = ValidationErrors::new();
    if let Some(c) = &req.capacity {
        if c.cpu_millis == 0 {
            errs.add(
                "capacity.cpu_millis",
                "out_of_range",
                "must be greater than 0",
            );
        }
        if c.memory_bytes == 0 {
            errs.add(
                "capacity.memory_bytes",
                "out_of_range",
                "must be greater than 0",
            );
        }
    }
    if let Some(z) = &req.resource_zone {
        check_name(&mut errs, "resource_zone", z);
    }
    if let Some(labels) = &req.labels {
        for (k, v) in labels {
            jdos_types::name::check_label(&mut errs, "labels", k, v);
        }
    }
    errs.into_result()?;
    st.mutate(|| {
        let req = req.clone();
        async move {
            let cur = load(st.store(), name).await?;
            let mut h = cur.value.clone();
            let mut what = Vec::new();
            if let Some(c) = req.capacity {
                h.capacity = c;
                what.push("capacity");
            }
            if let Some(z) = req.resource_zone {
                h.resource_zone = z;
                what.push("resource_zone");
            }
            if let Some(l) = req.labels {
                h.labels = l;
                what.push("labels");
            }
            h.validate()?;
            let m = put_host(&cur, &h, st.draft(caller, "host.update", "host", name))?;
            let msg = if what.is_empty() {
                "nothing changed".to_string()
            } else {
                format!("updated {}", what.join(", "))
            };
            Ok((
                Mutation {
                    event: m.event.message(msg),
                    ..m
                },
                h,
            ))
        }
    })
    .await
}

async fn cordon_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Host>, HttpError> {
    set_cordon(st, caller, name, true).await
}

async fn uncordon_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Host>, HttpError> {
    set_cordon(st, caller, name, false).await
}

async fn set_cordon(
    st: AppState,
    caller: Caller,
    name: String,
    cordoned: bool,
) -> Result<Json<Host>, HttpError> {
    let action = if cordoned {
        "host.cordon"
    } else {
        "host.uncordon"
    };
    let draft = st.draft(&caller, action, "host", &name);
    st.audited(draft, async {
        caller.require(HOST_WRITERS, "cordon or uncordon hosts")?;
        Ok(Json(cordon(&st, &caller, &name, cordoned).await?))
    })
    .await
}

/// Cordons (`true`) or uncordons a host.
#[tracing::instrument(skip(st, caller))]
pub async fn cordon(
    st: &AppState,
    caller: &Caller,
    name: &str,
    cordoned: bool,
) -> Result<Host, HttpError> {
    let action = if cordoned {
        "host.cordon"
    } else {
        "host.uncordon"
    };
    st.mutate(|| async move {
        let cur = load(st.store(), name).await?;
        let mut h = cur.value.clone();
        let was = h.cordoned;
        h.cordoned = cordoned;
        let m = put_host(&cur, &h, st.draft(caller, action, "host", name))?;
        let msg = match (was, cordoned) {
            (true, true) => "already cordoned",
            (false, false) => "already schedulable",
            (false, true) => "cordoned: no new containers",
            (true, false) => "uncordoned: schedulable again",
        };
        Ok((
            Mutation {
                event: m.event.message(msg),
                ..m
            },
            h,
        ))
    })
    .await
}

async fn delete_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Host>, HttpError> {
    let draft = st.draft(&caller, "host.delete", "host", &name);
    st.audited(draft, async {
        caller.require(HOST_WRITERS, "delete hosts")?;
        Ok(Json(delete(&st, &caller, &name).await?))
    })
    .await
}

/// Deletes a host with no containers, and its allocation record.
#[tracing::instrument(skip(st, caller))]
pub async fn delete(st: &AppState, caller: &Caller, name: &str) -> Result<Host, HttpError> {
    st.mutate(|| async move {
        let cur = load(st.store(), name).await?;
        let alloc = load_alloc(st.store(), name).await?;
        let mut compares = vec![Compare::mod_revision(keys::host(name), cur.mod_revision)];
        // The compare on the allocation makes a concurrent placement (a CAS
        // on the same record) and this delete exclude each other.
        let alloc_rev = match &alloc {
            Some(a) if a.value.containers > 0 => {
                return Err(HttpError::conflict(format!(
                    "host {name:?} still has {} containers: migrate them away first (cordon it so that none come back)",
                    a.value.containers
                )))
            }
            Some(a) => a.mod_revision,
            None => 0,
        };
        compares.push(Compare::mod_revision(keys::alloc(name), alloc_rev));
        let m = Mutation {
            compares,
            ops: vec![TxnOp::delete(keys::host(name)), TxnOp::delete(keys::alloc(name))],
            event: st
                .draft(caller, "host.delete", "host", name)
                .message(format!("removed from {}", cur.value.datacenter)),
        };
        Ok((m, cur.value))
    })
    .await
}

fn put_host(cur: &Versioned<Host>, h: &Host, event: EventDraft) -> Result<Mutation, HttpError> {
    Ok(Mutation {
        compares: vec![Compare::mod_revision(keys::host(&h.name), cur.mod_revision)],
        ops: vec![TxnOp::put(keys::host(&h.name), json::encode(h)?)],
        event,
    })
}

/// Reads a host, 404 when missing.
pub async fn load(store: &dyn Store, name: &str) -> Result<Versioned<Host>, HttpError> {
    kv::get_json(store, &keys::host(name))
        .await?
        .ok_or_else(|| HttpError::not_found("host", name))
}

/// Reads a host's allocation record.
pub async fn load_alloc(
    store: &dyn Store,
    name: &str,
) -> Result<Option<Versioned<HostAllocation>>, HttpError> {
    Ok(kv::get_json(store, &keys::alloc(name)).await?)
}
