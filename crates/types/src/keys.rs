//! The store's key layout, shared by every crate. All keys live under
//! [`ROOT`]; each kind has a prefix so that a prefix list or watch sees exactly
//! that kind.

use crate::{GroupKey, InstanceId};

/// Root of every jdos key.
pub const ROOT: &str = "/jdos/";
/// Hosts: `/jdos/hosts/<host>`.
pub const HOSTS: &str = "/jdos/hosts/";
/// Host allocations: `/jdos/alloc/<host>`.
pub const ALLOC: &str = "/jdos/alloc/";
/// Apps: `/jdos/apps/<app>`.
pub const APPS: &str = "/jdos/apps/";
/// Groups: `/jdos/groups/<app>/<env>/<group>`.
pub const GROUPS: &str = "/jdos/groups/";
/// Containers: `/jdos/containers/<app>/<env>/<group>/<index>`.
pub const CONTAINERS: &str = "/jdos/containers/";
/// Networks: `/jdos/networks/<network>`.
pub const NETWORKS: &str = "/jdos/networks/";
/// IP assignments: `/jdos/ips/<network>/<ip>`.
pub const IPS: &str = "/jdos/ips/";
/// IPAM bookkeeping: `/jdos/ipam/…` (identity → address index, markers).
pub const IPAM: &str = "/jdos/ipam/";
/// Identity → address index: `/jdos/ipam/owners/<app>/<env>/<group>/<index>`.
pub const IP_OWNERS: &str = "/jdos/ipam/owners/";
/// Tasks: `/jdos/tasks/<id>`.
pub const TASKS: &str = "/jdos/tasks/";
/// Events: `/jdos/events/<seq, 20 digits>`.
pub const EVENTS: &str = "/jdos/events/";
/// Tokens: `/jdos/tokens/<id>`.
pub const TOKENS: &str = "/jdos/tokens/";

/// Key of a host.
pub fn host(name: &str) -> String {
    format!("{HOSTS}{name}")
}

/// Key of a host's allocation.
pub fn alloc(host: &str) -> String {
    format!("{ALLOC}{host}")
}

/// Key of an app.
pub fn app(name: &str) -> String {
    format!("{APPS}{name}")
}

/// Key of a group.
pub fn group(k: &GroupKey) -> String {
    format!("{GROUPS}{}/{}/{}", k.app, k.env, k.group)
}

/// Prefix of every group of an app.
pub fn groups_of_app(app: &str) -> String {
    format!("{GROUPS}{app}/")
}

/// Key of a container. The index is zero-padded so keys sort by index.
pub fn container(id: &InstanceId) -> String {
    format!(
        "{CONTAINERS}{}/{}/{}/{:08}",
        id.app, id.env, id.group, id.index
    )
}

/// Prefix of every container of a group.
pub fn containers_of_group(k: &GroupKey) -> String {
    format!("{CONTAINERS}{}/{}/{}/", k.app, k.env, k.group)
}

/// Prefix of every container of an app.
pub fn containers_of_app(app: &str) -> String {
    format!("{CONTAINERS}{app}/")
}

/// Group placement records (the scheduler's per-group index → host map, whose
/// revision serializes concurrent placements of one group):
/// `/jdos/placements/<app>/<env>/<group>`.
pub const PLACEMENTS: &str = "/jdos/placements/";

/// Key of a group's placement record.
pub fn placement(k: &GroupKey) -> String {
    format!("{PLACEMENTS}{}/{}/{}", k.app, k.env, k.group)
}

/// Key of a network.
pub fn network(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

/// Key of an IP assignment.
pub fn ip(network: &str, ip: std::net::Ipv4Addr) -> String {
    format!("{IPS}{network}/{ip}")
}

/// Prefix of every assignment in a network.
pub fn ips_of_network(network: &str) -> String {
    format!("{IPS}{network}/")
}

/// Key of the identity → address index entry of a container identity.
pub fn ip_owner(id: &InstanceId) -> String {
    format!(
        "{IP_OWNERS}{}/{}/{}/{:08}",
        id.app, id.env, id.group, id.index
    )
}

/// Key bumped by every network creation, so that overlap and VLAN checks are
/// made against a list no concurrent creation has changed.
pub fn networks_catalog() -> String {
    format!("{IPAM}catalog")
}

/// Marker of a network being deleted: allocations refuse it.
pub fn network_deleting(name: &str) -> String {
    format!("{IPAM}deleting/{name}")
}

/// Key of a task.
pub fn task(id: &str) -> String {
    format!("{TASKS}{id}")
}

/// Key of an event.
pub fn event(seq: u64) -> String {
    format!("{EVENTS}{seq:020}")
}

/// Key of a token.
pub fn token(id: &str) -> String {
    format!("{TOKENS}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_keys_sort_by_index() {
        let g = GroupKey::new("shop", "production", "web");
        let a = container(&InstanceId::new(&g, 9));
        let b = container(&InstanceId::new(&g, 10));
        assert!(a < b);
        assert!(a.starts_with(&containers_of_group(&g)));
        assert!(event(9) < event(10));
    }
}
