//! Containers (instances): one running copy of a group, with its own IP.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{GroupKey, Resources, UnixMillis};

/// The identity of a container: `app/env/group/index`. The identity — not the
/// host — owns the IP, so a replacement on another host gets the same address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// App name.
    pub app: String,
    /// Environment.
    pub env: String,
    /// Group name.
    pub group: String,
    /// Index within the group (never reused while the identity exists).
    pub index: u32,
}

impl InstanceId {
    /// Builds an id from a group key and an index.
    pub fn new(group: &GroupKey, index: u32) -> Self {
        InstanceId {
            app: group.app.clone(),
            env: group.env.clone(),
            group: group.group.clone(),
            index,
        }
    }

    /// The group this instance belongs to.
    pub fn group_key(&self) -> GroupKey {
        GroupKey::new(&self.app, &self.env, &self.group)
    }

    /// A name usable by Docker: `jdos-<app>-<env>-<group>-<index>`.
    pub fn docker_name(&self) -> String {
        format!(
            "jdos-{}-{}-{}-{}",
            self.app, self.env, self.group, self.index
        )
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.app, self.env, self.group, self.index)
    }
}

/// Error parsing an [`InstanceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an instance id: expected app/env/group/index")]
pub struct ParseInstanceIdError(String);

impl FromStr for InstanceId {
    type Err = ParseInstanceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [app, env, group, index] if !app.is_empty() && !env.is_empty() && !group.is_empty() => {
                let index = index
                    .parse()
                    .map_err(|_| ParseInstanceIdError(s.to_string()))?;
                Ok(InstanceId {
                    app: app.to_string(),
                    env: env.to_string(),
                    group: group.to_string(),
                    index,
                })
            }
            _ => Err(ParseInstanceIdError(s.to_string())),
        }
    }
}

/// What the platform wants a container to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    /// Running.
    #[default]
    Running,
    /// Stopped but kept (its IP stays reserved).
    Stopped,
    /// To be removed; its IP goes to quarantine.
    Deleted,
}

/// Where a container actually is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerPhase {
    /// Known but not yet placed.
    #[default]
    Pending,
    /// Placed on a host, not yet created there.
    Scheduled,
    /// Being created / started by the agent.
    Starting,
    /// Running (and healthy if it has a health check).
    Running,
    /// Running but failing its health check.
    Unhealthy,
    /// Stopped on purpose.
    Stopped,
    /// Exited or failed to start.
    Failed,
    /// Its host was lost; waiting to be re-placed.
    Lost,
}

impl ContainerPhase {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerPhase::Pending => "pending",
            ContainerPhase::Scheduled => "scheduled",
            ContainerPhase::Starting => "starting",
            ContainerPhase::Running => "running",
            ContainerPhase::Unhealthy => "unhealthy",
            ContainerPhase::Stopped => "stopped",
            ContainerPhase::Failed => "failed",
            ContainerPhase::Lost => "lost",
        }
    }
}

/// A container record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Identity.
    pub id: InstanceId,
    /// Datacenter of its group.
    pub datacenter: String,
    /// Host it is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The host's fencing epoch at placement time.
    #[serde(default)]
    pub host_epoch: u64,
    /// Network its IP belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Its IP (owned by the identity, kept across moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Image it runs.
    pub image: String,
    /// Resources reserved for it on its host.
    pub resources: Resources,
    /// What the platform wants.
    #[serde(default)]
    pub desired: DesiredState,
    /// What the agent last reported.
    #[serde(default)]
    pub phase: ContainerPhase,
    /// Restarts counted by the agent.
    #[serde(default)]
    pub restarts: u32,
    /// Last message from the agent or the workflow (why it failed, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Created at.
    #[serde(default)]
    pub created_at_ms: UnixMillis,
    /// Last changed at.
    #[serde(default)]
    pub updated_at_ms: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_round_trips() {
        let id: InstanceId = "shop/production/web/12".parse().unwrap();
        assert_eq!(id.to_string(), "shop/production/web/12");
        assert_eq!(id.docker_name(), "jdos-shop-production-web-12");
        assert!("shop/web/12".parse::<InstanceId>().is_err());
        assert!("shop/p/web/x".parse::<InstanceId>().is_err());
    }
}
