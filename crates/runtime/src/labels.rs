//! The labels jdos puts on every container it creates. They are how an agent
//! recognizes — and after a restart adopts — its own containers: the engine
//! is the source of truth for what runs, the labels say what it is.

use std::collections::BTreeMap;

use jdos_types::InstanceId;

/// `true` on every container and network jdos manages.
pub const MANAGED: &str = "jdos.managed";
/// The instance id, `app/env/group/index`.
pub const INSTANCE: &str = "jdos.instance";
/// App name.
pub const APP: &str = "jdos.app";
/// Environment.
pub const ENV: &str = "jdos.env";
/// Group name.
pub const GROUP: &str = "jdos.group";
/// Index within the group.
pub const INDEX: &str = "jdos.index";
/// The host (agent) that created the container.
pub const HOST: &str = "jdos.host";
/// The host's fencing epoch when the container was created: a stale agent's
/// containers carry an older epoch than the server's record.
pub const EPOCH: &str = "jdos.epoch";
/// The jdos network the container's IP belongs to (on a Docker network: the
/// jdos network it realizes).
pub const NETWORK: &str = "jdos.network";
/// The Docker network realizing it.
pub const DOCKER_NETWORK: &str = "jdos.docker-network";
/// The static IPv4 address.
pub const IP: &str = "jdos.ip";
/// A hash of the whole [`ContainerSpec`](crate::ContainerSpec), so a
/// reconciler can tell an up-to-date container from one to recreate.
pub const SPEC_HASH: &str = "jdos.spec-hash";
/// The same hash without the cpu and memory limits: a container whose shape
/// hash matches its spec's needs only a live resource update, not a
/// recreate (labels cannot change after creation, so this is how a
/// reconciler tells the two apart).
pub const SHAPE_HASH: &str = "jdos.shape-hash";
/// On a Docker network: its VLAN id.
pub const VLAN: &str = "jdos.vlan";

/// Prefix reserved for jdos's own labels.
pub const RESERVED_PREFIX: &str = "jdos.";

/// Which containers to list: every given label must be present, with the
/// given value when one is given. [`LabelFilter::default`] matches every
/// container jdos manages on the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilter {
    /// Label → required value (`None`: the label just has to exist).
    pub labels: BTreeMap<String, Option<String>>,
}

impl LabelFilter {
    /// Every jdos container.
    pub fn all() -> Self {
        Self::default()
    }

    /// The containers created by the agent of `host` — what that agent
    /// adopts after a restart.
    pub fn host(host: &str) -> Self {
        Self::default().with(HOST, host)
    }

    /// The containers of one instance identity.
    pub fn instance(id: &InstanceId) -> Self {
        Self::default().with(INSTANCE, &id.to_string())
    }

    /// Adds `key=value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), Some(value.to_string()));
        self
    }

    /// Adds "label `key` exists".
    pub fn with_key(mut self, key: &str) -> Self {
        self.labels.insert(key.to_string(), None);
        self
    }

    /// True when `labels` satisfy the filter (and carry `jdos.managed=true`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(MANAGED).map(String::as_str) == Some("true")
            && self
                .labels
                .iter()
                .all(|(k, want)| match (labels.get(k), want) {
                    (Some(_), None) => true,
                    (Some(v), Some(w)) => v == w,
                    (None, _) => false,
                })
    }

    /// The filter in Docker's `label=` syntax, `jdos.managed=true` first.
    pub fn docker_filters(&self) -> Vec<String> {
        let mut out = vec![format!("{MANAGED}=true")];
        for (k, v) in &self.labels {
            out.push(match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            });
        }
        out
    }
}

/// Reads the instance id from a container's labels.
pub fn instance_of(labels: &BTreeMap<String, String>) -> Option<InstanceId> {
    labels.get(INSTANCE)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_only_managed_containers_with_all_labels() {
        let f = LabelFilter::host("h1").with_key(INSTANCE);
        let mut l: BTreeMap<String, String> = [(HOST, "h1"), (INSTANCE, "a/b/c/0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(!f.matches(&l), "unmanaged containers never match");
        l.insert(MANAGED.into(), "true".into());
        assert!(f.matches(&l));
        l.insert(HOST.into(), "h2".into());
        assert!(!f.matches(&l));
        assert_eq!(
            f.docker_filters(),
            ["jdos.managed=true", "jdos.host=h1", "jdos.instance"]
        );
    }
}
