//! Shared by the agent's integration tests: `TestServer`, a test double of
//! the jdos server's agent endpoints (in memory, with a switch that makes it
//! unreachable), and builders of assignments.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jdos_agent::{AgentStatus, ControlPlane, ControlPlaneError};
use jdos_types::agent::{
    AgentRegister, AgentSession, Assignment, AssignmentList, ContainerReport, Heartbeat,
    HeartbeatReply,
};
use jdos_types::container::DesiredState;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::MIB;
use jdos_types::{Container, ContainerPhase, Host, HostState, InstanceId, Network, Resources};
use tokio::sync::{watch, Notify};

#[derive(Debug, Default)]
pub struct ServerState {
    pub epoch: u64,
    pub revision: u64,
    pub items: BTreeMap<InstanceId, Assignment>,
    pub reachable: bool,
    pub registrations: u32,
    pub heartbeats: u32,
    pub reports: BTreeMap<InstanceId, ContainerReport>,
    /// Forget the host (answer 404) until it registers again.
    pub forget: bool,
    /// Answer nothing: every call times out after 2 s, as an HTTP call to
    /// a wedged server would.
    pub hang: bool,
    /// Number of reports in each full heartbeat received.
    pub full_sizes: Vec<usize>,
    /// The heartbeat interval handed out at registration (0: 50 ms).
    pub heartbeat_interval_ms: u64,
    /// The lists answered, by revision: with `known`, what did not change
    /// since that list goes by identity only, as the real server does.
    pub served: BTreeMap<u64, BTreeMap<InstanceId, Assignment>>,
    /// The `known` of each fetch.
    pub knowns: Vec<u64>,
    /// Answers left that also name, as unchanged, an order the agent never
    /// had (a server mistaken about the agent's list).
    pub bogus_kept: u32,
}

/// A test double of the server's agent endpoints.
pub struct TestServer {
    pub host: String,
    pub state: Mutex<ServerState>,
    changed: Notify,
}

impl TestServer {
    pub fn new(host: &str) -> Arc<Self> {
        Arc::new(TestServer {
            host: host.to_string(),
            state: Mutex::new(ServerState {
                epoch: 1,
                revision: 1,
                reachable: true,
                ..Default::default()
            }),
            changed: Notify::new(),
        })
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut ServerState) -> R) -> R {
        let mut s = self.state.lock().unwrap();
        let r = f(&mut s);
        drop(s);
        self.changed.notify_waiters();
        r
    }

    /// Puts (or replaces) assignments and bumps the revision.
    pub fn assign(&self, items: impl IntoIterator<Item = Assignment>) {
        self.with(|s| {
            for a in items {
                s.items.insert(a.id().clone(), a);
            }
            s.revision += 1;
        });
    }

    pub fn set_desired(&self, id: &InstanceId, d: DesiredState) {
        self.with(|s| {
            s.items.get_mut(id).unwrap().container.desired = d;
            s.revision += 1;
        });
    }

    pub fn unassign(&self, id: &InstanceId) {
        self.with(|s| {
            s.items.remove(id);
            s.revision += 1;
        });
    }

    pub fn set_reachable(&self, r: bool) {
        self.with(|s| s.reachable = r);
    }

    pub fn report(&self, id: &InstanceId) -> Option<ContainerReport> {
        self.state.lock().unwrap().reports.get(id).cloned()
    }

    fn check(&self) -> Result<(), ControlPlaneError> {
        if self.state.lock().unwrap().reachable {
            Ok(())
        } else {
            Err(ControlPlaneError::Unreachable(
                "test server is switched off".into(),
            ))
        }
    }

    async fn hang_if_asked(&self) -> Result<(), ControlPlaneError> {
        let hang = self.state.lock().unwrap().hang;
        if hang {
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Err(ControlPlaneError::Timeout { after_ms: 2000 });
        }
        Ok(())
    }
}

#[async_trait]
impl ControlPlane for TestServer {
    async fn register(&self, req: &AgentRegister) -> Result<AgentSession, ControlPlaneError> {
        self.hang_if_asked().await?;
        self.check()?;
        assert_eq!(req.host.name, self.host);
        let (epoch, beat) = self.with(|s| {
            s.registrations += 1;
            s.forget = false;
            (
                s.epoch,
                if s.heartbeat_interval_ms == 0 {
                    50
                } else {
                    s.heartbeat_interval_ms
                },
            )
        });
        Ok(AgentSession {
            host: Host {
                name: req.host.name.clone(),
                datacenter: req.host.datacenter.clone(),
                switch: req.host.switch.clone(),
                rack: req.host.rack.clone(),
                capacity: req.host.capacity,
                resource_zone: "general".into(),
                labels: Default::default(),
                state: HostState::Ready,
                cordoned: false,
                epoch,
                last_heartbeat_ms: 0,
                registered_at_ms: 0,
                driver: "fake".into(),
            },
            token: "host-token".into(),
            heartbeat_interval_ms: beat,
            suspect_after_ms: 150,
            down_after_ms: 400,
            // Never between two heartbeats.
            fence_after_ms: (beat * 6).max(300),
        })
    }

    async fn heartbeat(
        &self,
        host: &str,
        hb: &Heartbeat,
    ) -> Result<HeartbeatReply, ControlPlaneError> {
        self.hang_if_asked().await?;
        self.check()?;
        let mut s = self.state.lock().unwrap();
        if s.forget {
            return Err(ControlPlaneError::UnknownHost {
                host: host.to_string(),
                message: "no such host".into(),
            });
        }
        s.heartbeats += 1;
        if hb.full {
            s.reports.clear();
            s.full_sizes.push(hb.reports.len());
        }
        for r in &hb.reports {
            s.reports.insert(r.id.clone(), r.clone());
        }
        Ok(HeartbeatReply {
            state: HostState::Ready,
            epoch: s.epoch,
            assignments_revision: s.revision,
            want_full: false,
        })
    }

    async fn assignments(
        &self,
        _host: &str,
        after: u64,
        known: u64,
        wait: Duration,
    ) -> Result<AssignmentList, ControlPlaneError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.check()?;
            let notified = self.changed.notified();
            {
                let mut s = self.state.lock().unwrap();
                if s.revision > after || tokio::time::Instant::now() >= deadline {
                    s.knowns.push(known);
                    let held = s.served.get(&known).filter(|_| known > 0);
                    let mut list = AssignmentList {
                        revision: s.revision,
                        epoch: s.epoch,
                        items: Vec::new(),
                        kept: Vec::new(),
                    };
                    for (id, a) in &s.items {
                        if held.is_some_and(|h| h.get(id) == Some(a)) {
                            list.kept.push(id.clone());
                        } else {
                            list.items.push(a.clone());
                        }
                    }
                    if s.bogus_kept > 0 && known > 0 {
                        s.bogus_kept -= 1;
                        list.kept.push("ghost/prod/web/1".parse().unwrap());
                    }
                    let (rev, items) = (s.revision, s.items.clone());
                    s.served.insert(rev, items);
                    return Ok(list);
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn push_metrics(
        &self,
        _host: &str,
        batch: &jdos_types::metrics::MetricBatch,
    ) -> Result<jdos_types::metrics::IngestSummary, ControlPlaneError> {
        self.check()?;
        Ok(jdos_types::metrics::IngestSummary {
            accepted: batch.samples() as u64,
            ..Default::default()
        })
    }
}

pub fn network() -> Network {
    Network {
        name: "agent-test".into(),
        vlan: 300,
        subnet: "10.213.60.0/24".parse().unwrap(),
        gateway: "10.213.60.1".parse().unwrap(),
        reserved: vec![],
        zone: "default".into(),
        switches: vec![],
        quarantine_secs: 300,
    }
}

pub fn id(app: &str, i: u32) -> InstanceId {
    format!("{app}/test/web/{i}").parse().unwrap()
}

pub fn template(image: &str, command: &[&str]) -> ContainerTemplate {
    ContainerTemplate {
        image: image.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
        resources: Resources::new(100, 32 * MIB),
        ports: vec![],
        network_zone: None,
        network: None,
        isolation: Default::default(),
        storage: Default::default(),
        health: None,
        stop_grace_secs: Some(1),
        hooks: Default::default(),
    }
}

/// An assignment of `id` on `host` at `ip` (last octet) of `net`.
pub fn assignment(
    id: InstanceId,
    host: &str,
    epoch: u64,
    net: &Network,
    octet: u8,
    t: &ContainerTemplate,
) -> Assignment {
    let mut ip = net.subnet.network().octets();
    ip[3] = octet;
    Assignment {
        container: Container {
            id,
            datacenter: "dc1".into(),
            host: Some(host.into()),
            host_epoch: epoch,
            network: Some(net.name.clone()),
            ip: Some(ip.into()),
            image: t.image.clone(),
            resources: t.resources,
            desired: DesiredState::Running,
            phase: ContainerPhase::Scheduled,
            restarts: 0,
            message: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
        },
        template: t.clone(),
        network: Some(net.clone()),
        generation: 0,
        snapshot: None,
    }
}

/// Waits until the agent's status satisfies `pred` (or panics after `secs`).
pub async fn wait_status(
    rx: &mut watch::Receiver<AgentStatus>,
    secs: u64,
    what: &str,
    pred: impl Fn(&AgentStatus) -> bool,
) -> AgentStatus {
    let r = tokio::time::timeout(Duration::from_secs(secs), rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match r {
        Ok(Ok(s)) => s,
        _ => panic!(
            "timed out waiting for {what}; last status: {:#?}",
            *rx.borrow()
        ),
    }
}

/// Waits until `pred` holds (polling every 20 ms), or panics after `secs`.
pub async fn eventually(secs: u64, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
