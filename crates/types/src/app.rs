//! Applications: a service owned by a person and a department.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{check_label, check_name};
use crate::{UnixMillis, Validate, ValidationErrors};

/// Business level of an app; it decides which resource zones it may use.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BusinessLevel {
    /// Core systems (site, trade, orders): the best-isolated zone.
    Core,
    /// Important systems.
    Important,
    /// Ordinary systems.
    #[default]
    Normal,
    /// Test and staging workloads.
    Test,
}

impl BusinessLevel {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessLevel::Core => "core",
            BusinessLevel::Important => "important",
            BusinessLevel::Normal => "normal",
            BusinessLevel::Test => "test",
        }
    }
}

/// An application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Unique app name.
    pub name: String,
    /// Owner (a person's user name).
    pub owner: String,
    /// Owning department: developer tokens are scoped by it.
    pub department: String,
    /// Business level.
    #[serde(default)]
    pub business_level: BusinessLevel,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Free-form labels, used by selectors (`jdos scale --selector`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was created.
    #[serde(default)]
    pub created_at_ms: UnixMillis,
}

impl Validate for App {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "name", &self.name);
        check_name(&mut e, "owner", &self.owner);
        check_name(&mut e, "department", &self.department);
        if self.description.len() > 1024 {
            e.add("description", "too_long", "must be at most 1024 characters");
        }
        for (k, v) in &self.labels {
            check_label(&mut e, "labels", k, v);
        }
        e.into_result()
    }
}
