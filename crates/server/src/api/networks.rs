//! Networks: create, list, get, delete, and the address records of one
//! network. The rules (validation, no overlapping subnets, unique VLAN ids,
//! no delete while addresses are assigned) live in `jdos-ipam`; this file
//! only adds auth, the audit event (committed in the same transaction as the
//! change) and HTTP errors.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_ipam::IpamError;
use jdos_types::api::ListResponse;
use std::collections::HashSet;

use jdos_types::{keys, App, InstanceId, IpAssignment, IpRange, IpState, Network, Role};

use super::list::PageParams;
use super::{Route, PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::Mutation;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// Roles that may create and delete networks.
pub const NETWORK_WRITERS: &[Role] = &[Role::Admin, Role::Ops];

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/networks", create_handler)
            .doc(
                "networks",
                "Create a VLAN network (subnet, gateway, reserved ranges, zone, switches)",
            )
            .accepts::<Network>()
            .returns::<Network>()
            .status(201),
        Route::new(Method::GET, "/api/v1/networks", list_handler)
            .doc("networks", "List networks")
            .query(&PAGE_PARAMS)
            .returns::<ListResponse<Network>>(),
        Route::new(Method::GET, "/api/v1/networks/{name}", get_handler)
            .doc("networks", "Get a network")
            .returns::<Network>(),
        Route::new(Method::DELETE, "/api/v1/networks/{name}", delete_handler)
            .doc(
                "networks",
                "Delete a network with no assigned address; answers the removed network",
            )
            .returns::<Network>(),
        Route::new(Method::GET, "/api/v1/networks/{name}/ips", ips_handler)
            .doc(
                "networks",
                "Address records of a network: identity and state (a developer sees its department's only)",
            )
            .query(&PAGE_PARAMS)
            .returns::<ListResponse<IpAssignment>>(),
    ]
}

/// An IPAM error as an HTTP error, with the offending field where one is at fault.
fn http(e: IpamError) -> HttpError {
    let msg = e.to_string();
    match e {
        IpamError::Invalid(v) => v.into(),
        IpamError::Store(s) => s.into(),
        IpamError::NetworkNotFound(n) => HttpError::not_found("network", &n),
        IpamError::NetworkExists(_) => HttpError::conflict(msg).with_field("name"),
        IpamError::SubnetOverlap { .. } => HttpError::conflict(msg).with_field("subnet"),
        IpamError::VlanInUse { .. } => HttpError::conflict(msg).with_field("vlan"),
        e if e.code() == "validation_failed" => HttpError::bad_request(msg),
        _ => HttpError::conflict(msg),
    }
}

async fn create_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(net): ApiJson<Network>,
) -> Result<(StatusCode, Json<Network>), HttpError> {
    let draft = st.draft(&caller, "network.create", "network", &net.name);
    st.audited(draft, async {
        caller.require(NETWORK_WRITERS, "create networks")?;
        Ok((StatusCode::CREATED, Json(create(&st, &caller, net).await?)))
    })
    .await
}

/// Creates a network; the change and its event commit in one transaction.
#[tracing::instrument(skip_all, fields(network = %net.name))]
pub async fn create(st: &AppState, caller: &Caller, net: Network) -> Result<Network, HttpError> {
    let ipam = st.ipam();
    st.mutate(|| {
        let (ipam, net) = (&ipam, &net);
        async move {
            let change = ipam.plan_create_network(net).await.map_err(http)?;
            let event = st
                .draft(caller, "network.create", "network", &net.name)
                .message(format!(
                    "vlan {} subnet {} gateway {} zone {}",
                    net.vlan, net.subnet, net.gateway, net.zone
                ));
            let m = Mutation {
                compares: change.compares,
                ops: change.ops,
                event,
            };
            Ok((m, change.network))
        }
    })
    .await
}

async fn list_handler(
    State(st): State<AppState>,
    _caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<Network>>, HttpError> {
    let found = page
        .list(st.store(), keys::NETWORKS, |_: &Network| true)
        .await?;
    Ok(Json(found))
}

async fn get_handler(
    State(st): State<AppState>,
    _caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Network>, HttpError> {
    let ipam = st.ipam();
    match ipam.get_network(&name).await.map_err(http)? {
        Some(n) => Ok(Json(n)),
        None => Err(HttpError::not_found("network", &name)),
    }
}

async fn delete_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Network>, HttpError> {
    let draft = st.draft(&caller, "network.delete", "network", &name);
    st.audited(draft, async {
        caller.require(NETWORK_WRITERS, "delete networks")?;
        Ok(Json(delete(&st, &caller, &name).await?))
    })
    .await
}

/// Deletes a network with no assigned address (its quarantined records go
/// with it); the delete and its event commit in one transaction.
#[tracing::instrument(skip(st, caller))]
pub async fn delete(st: &AppState, caller: &Caller, name: &str) -> Result<Network, HttpError> {
    let ipam = st.ipam();
    st.mutate(|| {
        let ipam = &ipam;
        async move {
            // `None`: the network changed between reading and marking it.
            let change = loop {
                if let Some(c) = ipam.plan_delete_network(name).await.map_err(http)? {
                    break c;
                }
            };
            let m = Mutation {
                compares: change.compares,
                ops: change.ops,
                event: st.draft(caller, "network.delete", "network", name),
            };
            Ok((m, change.network))
        }
    })
    .await
    .inspect(|_| ipam.forget(name))
}

async fn ips_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<IpAssignment>>, HttpError> {
    if st.store().get(&keys::network(&name)).await?.is_none() {
        return Err(HttpError::not_found("network", &name));
    }
    // A developer sees the records of its own department's apps only: the
    // others would tell it which apps other departments run, and where.
    let visible_apps: Option<HashSet<String>> = match caller.role {
        Role::Developer => Some(
            kv::list_all::<App>(st.store(), keys::APPS)
                .await?
                .into_iter()
                .filter(|a| caller.in_scope(&a.department))
                .map(|a| a.name)
                .collect(),
        ),
        Role::Admin | Role::Ops => None,
    };
    let prefix = keys::ips_of_network(&name);
    let found = page
        .list(st.store(), &prefix, |r: &IpAssignment| {
            visible_apps
                .as_ref()
                .is_none_or(|apps| apps.contains(&r.identity.app))
        })
        .await?;
    Ok(Json(found))
}

fn sample_network() -> Network {
    Network {
        name: "prod-vlan100".into(),
        vlan: 100,
        subnet: "10.20.0.0/16".parse().expect("sample subnet"),
        gateway: "10.20.0.1".parse().expect("sample gateway"),
        reserved: vec![IpRange {
            start: "10.20.0.2".parse().expect("sample address"),
            end: "10.20.0.99".parse().expect("sample address"),
        }],
        zone: "prod".into(),
        switches: vec!["sw01".into(), "sw02".into()],
        quarantine_secs: 300,
    }
}

impl Documented for Network {
    fn schema_name() -> String {
        "Network".into()
    }
    fn sample() -> Self {
        sample_network()
    }
}

impl Documented for IpAssignment {
    fn schema_name() -> String {
        "IpAssignment".into()
    }
    fn sample() -> Self {
        IpAssignment {
            network: "prod-vlan100".into(),
            ip: "10.20.0.100".parse().expect("sample address"),
            identity: InstanceId {
                app: "shop".into(),
                env: "production".into(),
                group: "web".into(),
                index: 3,
            },
            state: IpState::Assigned,
            since_ms: 1_700_000_000_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("state", vec!["assigned", "quarantined"])]
    }
}
