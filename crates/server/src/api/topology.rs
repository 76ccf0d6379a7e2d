//! `GET /api/v1/datacenters`: the topology tree datacenter → switch → rack →
//! host, with capacity, allocation and containers summed per level.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::Method;
use axum::Json;
use jdos_types::topology::{HostAllocation, TopologyNode};
use jdos_types::{keys, Host};

use super::Route;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::kv;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/api/v1/datacenters", tree_handler)
        .doc(
            "topology",
            "The topology tree with capacity and usage per level",
        )
        .returns::<Vec<TopologyNode>>()]
}

async fn tree_handler(
    State(st): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<TopologyNode>>, HttpError> {
    let hosts: Vec<Host> = kv::list_all(st.store(), keys::HOSTS).await?;
    let allocs: Vec<HostAllocation> = kv::list_all(st.store(), keys::ALLOC).await?;
    Ok(Json(tree(&hosts, &allocs)))
}

/// Builds the tree from hosts and their allocations; children sorted by name.
pub fn tree(hosts: &[Host], allocs: &[HostAllocation]) -> Vec<TopologyNode> {
    let by_host: HashMap<&str, &HostAllocation> =
        allocs.iter().map(|a| (a.host.as_str(), a)).collect();
    type Racks<'a> = BTreeMap<&'a str, Vec<&'a Host>>;
    let mut dcs: BTreeMap<&str, BTreeMap<&str, Racks<'_>>> = BTreeMap::new();
    for h in hosts {
        dcs.entry(&h.datacenter)
            .or_default()
            .entry(&h.switch)
            .or_default()
            .entry(&h.rack)
            .or_default()
            .push(h);
    }
    dcs.into_iter()
        .map(|(dc, switches)| {
            let children = switches
                .into_iter()
                .map(|(sw, racks)| {
                    let children = racks
                        .into_iter()
                        .map(|(rack, hs)| {
                            let mut children: Vec<TopologyNode> = hs
                                .iter()
                                .map(|h| host_node(h, by_host.get(h.name.as_str()).copied()))
                                .collect();
                            children.sort_by(|a, b| a.name.cmp(&b.name));
                            sum("rack", rack, children)
                        })
                        .collect();
                    sum("switch", sw, children)
                })
                .collect();
            sum("datacenter", dc, children)
        })
        .collect()
}

fn host_node(h: &Host, alloc: Option<&HostAllocation>) -> TopologyNode {
    TopologyNode {
        level: "host".into(),
        name: h.name.clone(),
        hosts: 1,
        ready_hosts: u32::from(h.schedulable()),
        capacity: h.capacity,
        allocated: alloc.map(|a| a.allocated).unwrap_or_default(),
        containers: alloc.map_or(0, |a| a.containers),
        children: Vec::new(),
    }
}

fn sum(level: &str, name: &str, children: Vec<TopologyNode>) -> TopologyNode {
    let mut n = TopologyNode {
        level: level.into(),
        name: name.into(),
        ..Default::default()
    };
    for c in &children {
        n.hosts += c.hosts;
        n.ready_hosts += c.ready_hosts;
        n.capacity = n.capacity.saturating_add(&c.capacity);
        n.allocated = n.allocated.saturating_add(&c.allocated);
        n.containers += c.containers;
    }
    n.children = children;
    n
}
