//! API tokens and their roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::check_name;
use crate::{UnixMillis, Validate, ValidationErrors};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including tokens.
    Admin,
    /// Hosts, networks, every app; not tokens.
    Ops,
    /// Only the apps of its own department.
    Developer,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ops => "ops",
            Role::Developer => "developer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "ops" => Ok(Role::Ops),
            "developer" => Ok(Role::Developer),
            _ => Err(format!("unknown role {s:?}: use admin, ops or developer")),
        }
    }
}

/// A stored API token. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public id (the part of the bearer string before the dot).
    pub id: String,
    /// Human name, shown as the actor of events.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department a developer token is scoped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Created at.
    #[serde(default)]
    pub created_at_ms: UnixMillis,
}

impl Validate for Token {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        match (self.role, &self.department) {
            (Role::Developer, None) => e.add(
                "department",
                "required",
                "a developer token needs a department",
            ),
            (_, Some(d)) => check_name(&mut e, "department", d),
            _ => {}
        }
        e.into_result()
    }
}
