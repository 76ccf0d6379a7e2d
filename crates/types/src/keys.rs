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
/// Agent credentials, one per host (hash of its agent token):
/// `/jdos/agents/<host>`.
pub const AGENTS: &str = "/jdos/agents/";

/// Key of a host's agent credential.
pub fn agent(host: &str) -> String {
    format!("{AGENTS}{host}")
}

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

/// Agent work orders, one per container a host must run:
/// `/jdos/assign/<host>/<app>/<env>/<group>/<index>`. Written with the
/// container record by whoever places or moves it; an agent long-polls its
/// host's prefix and reconciles its engine to exactly this set (anything
/// else jdos-labelled on the host is destroyed: the fencing rule).
pub const ASSIGN: &str = "/jdos/assign/";

/// Key of a host's work order for a container.
pub fn assignment(host: &str, id: &InstanceId) -> String {
    format!(
        "{ASSIGN}{host}/{}/{}/{}/{:08}",
        id.app, id.env, id.group, id.index
    )
}

/// Prefix of every work order of a host.
pub fn assignments_of_host(host: &str) -> String {
    format!("{ASSIGN}{host}/")
}

/// Workflow workers, each under a lease: `/jdos/workers/<worker>`.
pub const WORKERS: &str = "/jdos/workers/";
/// Locks (app mutexes of the workflow engine, leader election):
/// `/jdos/locks/<name>`, each under its holder's lease.
pub const LOCKS: &str = "/jdos/locks/";
/// Index of tasks not yet finished: `/jdos/taskq/<id>`.
pub const TASK_QUEUE: &str = "/jdos/taskq/";
/// Alerting state (policies, silences, alerts): `/jdos/alerting/…`.
pub const ALERTING: &str = "/jdos/alerting/";
/// Alert policies: `/jdos/alerting/policies/<name>`.
pub const ALERT_POLICIES: &str = "/jdos/alerting/policies/";
/// Alert receivers: `/jdos/alerting/receivers/<name>`.
pub const ALERT_RECEIVERS: &str = "/jdos/alerting/receivers/";
/// Silences: `/jdos/alerting/silences/<id>`.
pub const SILENCES: &str = "/jdos/alerting/silences/";
/// Alerts kept by the evaluator: `/jdos/alerting/alerts/<fingerprint>`.
pub const ALERTS: &str = "/jdos/alerting/alerts/";

/// Key of an alert policy.
pub fn alert_policy(name: &str) -> String {
    format!("{ALERT_POLICIES}{name}")
}

/// Key of an alert receiver.
pub fn alert_receiver(name: &str) -> String {
    format!("{ALERT_RECEIVERS}{name}")
}

/// Key of a silence.
pub fn silence(id: &str) -> String {
    format!("{SILENCES}{id}")
}

/// Key of an alert.
pub fn alert(fingerprint: &str) -> String {
    format!("{ALERTS}{fingerprint}")
}

/// Prefix of snapshot outcomes, by image reference.
pub const SNAPSHOTS: &str = "/jdos/snapshots/";

/// The outcome of the snapshot to image `reference`
/// ([`crate::agent::SnapshotReport`]).
pub fn snapshot(reference: &str) -> String {
    format!("{SNAPSHOTS}{reference}")
}

/// Failover state (mass-failure brakes per datacenter): `/jdos/failover/…`.
pub const FAILOVER: &str = "/jdos/failover/";

/// Brakes: `/jdos/failover/brakes/<datacenter>`.
pub const FAILOVER_BRAKES: &str = "/jdos/failover/brakes/";
/// Crash-loop records: `/jdos/failover/crash/<app>/<env>/<group>/<index>`.
pub const FAILOVER_CRASH_LOOPS: &str = "/jdos/failover/crash/";
/// Host drains: `/jdos/failover/drains/<host>`.
pub const FAILOVER_DRAINS: &str = "/jdos/failover/drains/";

/// Key of a datacenter's mass-failure brake.
pub fn failover_brake(datacenter: &str) -> String {
    format!("{FAILOVER_BRAKES}{datacenter}")
}

/// Key of a container identity's crash-loop record.
pub fn failover_crash_loop(id: &InstanceId) -> String {
    format!(
        "{FAILOVER_CRASH_LOOPS}{}/{}/{}/{:08}",
        id.app, id.env, id.group, id.index
    )
}

/// Key of a host's drain.
pub fn failover_drain(host: &str) -> String {
    format!("{FAILOVER_DRAINS}{host}")
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
