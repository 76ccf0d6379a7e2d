//! [`AgentConfig`]: who the host is and how the agent behaves.

use std::time::Duration;

use jdos_runtime::{BackoffPolicy, NetworkRealization};
use jdos_types::api::RegisterHost;
use jdos_types::name::{check_label, check_name};
use jdos_types::{Labels, Resources, ValidationErrors};

/// Heartbeat and fencing timings. The server's session overrides them at
/// registration; these are used until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Send a heartbeat this often.
    pub heartbeat_interval: Duration,
    /// Kill every container after this long without reaching the server.
    pub fence_after: Duration,
}

impl Default for Timings {
    /// 1 s heartbeats, fence after 5 s (the server's defaults: suspect 3 s,
    /// down 6 s).
    fn default() -> Self {
        Timings {
            heartbeat_interval: Duration::from_secs(1),
            fence_after: Duration::from_secs(5),
        }
    }
}

/// Configuration of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Host name (the engine's containers of this host carry it as the
    /// `jdos.host` label).
    pub name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Switch.
    pub switch: String,
    /// Rack.
    pub rack: String,
    /// Resource zone (`general` when unset).
    pub resource_zone: Option<String>,
    /// Host labels.
    pub labels: Labels,
    /// Capacity to register (see [`crate::capacity::capacity`]).
    pub capacity: Resources,
    /// How jdos networks become engine networks (bridge in dev, macvlan in
    /// production).
    pub network: NetworkRealization,
    /// Restart back-off of crashed containers.
    pub backoff: BackoffPolicy,
    /// Driver actions run at once.
    pub parallelism: usize,
    /// The engine is listed at least this often (crash detection when the
    /// driver cannot `wait`, and a level-triggered safety net otherwise).
    pub resync_interval: Duration,
    /// Longest wait of one assignment long-poll.
    pub long_poll: Duration,
    /// Timings until the server says otherwise.
    pub timings: Timings,
    /// Agent version sent at registration.
    pub version: String,
    /// Collect and push host and container metrics this often (`None`: never).
    pub metrics_interval: Option<Duration>,
}

impl AgentConfig {
    /// A configuration with defaults for everything but the host's place
    /// and capacity.
    pub fn new(
        name: &str,
        datacenter: &str,
        switch: &str,
        rack: &str,
        capacity: Resources,
    ) -> Self {
        AgentConfig {
            name: name.to_string(),
            datacenter: datacenter.to_string(),
            switch: switch.to_string(),
            rack: rack.to_string(),
            resource_zone: None,
            labels: Labels::new(),
            capacity,
            network: NetworkRealization::bridge(),
            backoff: BackoffPolicy::default(),
            parallelism: 16,
            resync_interval: Duration::from_secs(2),
            long_poll: Duration::from_secs(30),
            timings: Timings::default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            metrics_interval: Some(Duration::from_secs(10)),
        }
    }

    /// Checks names, labels and capacity; reports every problem at once.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        check_name(&mut e, "datacenter", &self.datacenter);
        check_name(&mut e, "switch", &self.switch);
        check_name(&mut e, "rack", &self.rack);
        if let Some(z) = &self.resource_zone {
            check_name(&mut e, "zone", z);
        }
        for (k, v) in &self.labels {
            check_label(&mut e, "labels", k, v);
        }
        if self.capacity.cpu_millis == 0 {
            e.add("cpu", "required", "the host needs some cpu: pass --cpu");
        }
        if self.capacity.memory_bytes == 0 {
            e.add(
                "memory",
                "required",
                "the host's memory is unknown: pass --memory",
            );
        }
        if self.timings.fence_after <= self.timings.heartbeat_interval {
            e.add(
                "fence_after",
                "out_of_range",
                "fence_after must be longer than the heartbeat interval",
            );
        }
        e.into_result()
    }

    /// The registration body.
    pub fn register_host(&self, driver: &str) -> RegisterHost {
        RegisterHost {
            name: self.name.clone(),
            datacenter: self.datacenter.clone(),
            switch: self.switch.clone(),
            rack: self.rack.clone(),
            capacity: self.capacity,
            resource_zone: self.resource_zone.clone(),
            labels: self.labels.clone(),
            driver: Some(driver.to_string()),
        }
    }
}
