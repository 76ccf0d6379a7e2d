//! Representative samples of every documented body, from which the OpenAPI
//! schemas are inferred (see [`crate::openapi`]).

use jdos_types::api::{CreateToken, HostDetail, RegisterHost, TokenCreated, UpdateHost, WhoAmI};
use jdos_types::resources::GIB;
use jdos_types::topology::{HostAllocation, TopologyNode};
use jdos_types::{
    ApiError, App, BusinessLevel, Container, ContainerPhase, Event, EventResult, FieldError,
    GroupKey, Host, HostState, InstanceId, Labels, Resources, Role, Token,
};

use crate::openapi::Documented;

const ROLES: &[&str] = &["admin", "ops", "developer"];
const HOST_STATES: &[&str] = &["ready", "suspect", "down", "draining", "degraded"];

fn role_enum() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![("role", ROLES.to_vec())]
}

fn resources() -> Resources {
    let mut r = Resources::new(32_000, 128 * GIB);
    r.disk.l1 = 800 * GIB;
    r.disk.l2 = 4000 * GIB;
    r
}

fn labels() -> Labels {
    [("jdos.io/hardware".to_string(), "r740".to_string())].into()
}

fn host() -> Host {
    Host {
        name: "lf-h001".into(),
        datacenter: "langfang".into(),
        switch: "sw01".into(),
        rack: "r01".into(),
        capacity: resources(),
        resource_zone: "general".into(),
        labels: labels(),
        state: HostState::Ready,
        cordoned: false,
        epoch: 1,
        last_heartbeat_ms: 1_700_000_000_000,
        registered_at_ms: 1_700_000_000_000,
        driver: "docker".into(),
    }
}

impl Documented for Host {
    fn schema_name() -> String {
        "Host".into()
    }
    fn sample() -> Self {
        host()
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("state", HOST_STATES.to_vec())]
    }
}

impl Documented for RegisterHost {
    fn schema_name() -> String {
        "RegisterHost".into()
    }
    fn sample() -> Self {
        RegisterHost {
            name: "lf-h001".into(),
            datacenter: "langfang".into(),
            switch: "sw01".into(),
            rack: "r01".into(),
            capacity: resources(),
            resource_zone: Some("general".into()),
            labels: labels(),
            driver: Some("docker".into()),
        }
    }
}

impl Documented for UpdateHost {
    fn schema_name() -> String {
        "UpdateHost".into()
    }
    fn sample() -> Self {
        UpdateHost {
            capacity: Some(resources()),
            resource_zone: Some("core".into()),
            labels: Some(labels()),
        }
    }
}

impl Documented for HostDetail {
    fn schema_name() -> String {
        "HostDetail".into()
    }
    fn sample() -> Self {
        let g = GroupKey::new("shop", "production", "web");
        HostDetail {
            host: host(),
            allocation: HostAllocation {
                host: "lf-h001".into(),
                allocated: Resources::new(2000, 4 * GIB),
                containers: 1,
            },
            containers: vec![Container {
                id: InstanceId::new(&g, 0),
                datacenter: "langfang".into(),
                host: Some("lf-h001".into()),
                host_epoch: 1,
                network: Some("vlan100".into()),
                ip: Some(std::net::Ipv4Addr::new(10, 0, 0, 10)),
                image: "shop-web:1.0".into(),
                resources: Resources::new(2000, 4 * GIB),
                desired: Default::default(),
                phase: ContainerPhase::Running,
                restarts: 0,
                message: "healthy".into(),
                created_at_ms: 1_700_000_000_000,
                updated_at_ms: 1_700_000_000_000,
            }],
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            ("state", HOST_STATES.to_vec()),
            ("desired", vec!["running", "stopped", "deleted"]),
            (
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
            ),
        ]
    }
}

impl Documented for TopologyNode {
    fn schema_name() -> String {
        "TopologyNode".into()
    }
    fn sample() -> Self {
        let leaf = TopologyNode {
            level: "host".into(),
            name: "lf-h001".into(),
            hosts: 1,
            ready_hosts: 1,
            capacity: resources(),
            allocated: Resources::new(2000, 4 * GIB),
            containers: 1,
            children: Vec::new(),
        };
        TopologyNode {
            level: "datacenter".into(),
            name: "langfang".into(),
            children: vec![leaf.clone()],
            ..leaf
        }
    }
}

impl Documented for App {
    fn schema_name() -> String {
        "App".into()
    }
    fn sample() -> Self {
        App {
            name: "shop".into(),
            owner: "zhangsan".into(),
            department: "retail".into(),
            business_level: BusinessLevel::Core,
            description: "the shop front".into(),
            labels: [("tier".to_string(), "web".to_string())].into(),
            created_at_ms: 1_700_000_000_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![(
            "business_level",
            vec!["core", "important", "normal", "test"],
        )]
    }
}

impl Documented for Event {
    fn schema_name() -> String {
        "Event".into()
    }
    fn sample() -> Self {
        Event {
            seq: 42,
            time_ms: 1_700_000_000_000,
            actor: "alice".into(),
            action: "host.cordon".into(),
            object_kind: "host".into(),
            object: "lf-h001".into(),
            app: Some("shop".into()),
            department: Some("retail".into()),
            result: EventResult::Success,
            message: "cordoned: no new containers".into(),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("result", vec!["success", "failure"])]
    }
}

impl Documented for CreateToken {
    fn schema_name() -> String {
        "CreateToken".into()
    }
    fn sample() -> Self {
        CreateToken {
            name: "alice".into(),
            role: Role::Developer,
            department: Some("retail".into()),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        role_enum()
    }
}

impl Documented for TokenCreated {
    fn schema_name() -> String {
        "TokenCreated".into()
    }
    fn sample() -> Self {
        TokenCreated {
            id: "0123456789abcdef".into(),
            token: "0123456789abcdef.<64 hex digits>".into(),
            name: "alice".into(),
            role: Role::Developer,
            department: Some("retail".into()),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        role_enum()
    }
}

impl Documented for Token {
    fn schema_name() -> String {
        "Token".into()
    }
    fn sample() -> Self {
        Token {
            id: "0123456789abcdef".into(),
            name: "alice".into(),
            role: Role::Developer,
            department: Some("retail".into()),
            secret_sha256: String::new(),
            created_at_ms: 1_700_000_000_000,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        role_enum()
    }
}

impl Documented for WhoAmI {
    fn schema_name() -> String {
        "WhoAmI".into()
    }
    fn sample() -> Self {
        WhoAmI {
            name: "alice".into(),
            role: Role::Developer,
            department: Some("retail".into()),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        role_enum()
    }
}

impl Documented for ApiError {
    fn schema_name() -> String {
        "ApiError".into()
    }
    fn sample() -> Self {
        ApiError {
            code: "validation_failed".into(),
            message: "name: must not be empty".into(),
            field: Some("name".into()),
            details: vec![FieldError {
                field: "name".into(),
                code: "required".into(),
                message: "must not be empty".into(),
            }],
        }
    }
}
