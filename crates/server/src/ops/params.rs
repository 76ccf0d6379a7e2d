//! Parameters of the operations, as stored in `Task::params`, with their
//! validation and the [`NewTask`] builders callers (the API, `apply`, the
//! autoscaler) use to submit them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jdos_types::group::{ContainerTemplate, MAX_REPLICAS};
use jdos_types::{GroupKey, Resources, ValidationErrors};
use jdos_workflow::NewTask;
use serde::{Deserialize, Serialize};

/// `deploy`: bring a group to the replicas of its record and publish its
/// template (what `apply` submits after writing the group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployParams {
    /// The group.
    pub group: GroupKey,
    /// Seconds to wait for the new containers to run (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `scale`: set a group's replicas and converge to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleParams {
    /// The group.
    pub group: GroupKey,
    /// Target replicas (absolute).
    pub replicas: u32,
    /// Seconds to wait for the new containers to run (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `snapshot_scale`: commit a running container of a group to an image and
/// scale the group out to `replicas` with clones made from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotScaleParams {
    /// The group.
    pub group: GroupKey,
    /// Target replicas (absolute; more than the group has live).
    pub replicas: u32,
    /// Index of the container to snapshot (default: the lowest-indexed
    /// running one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_index: Option<u32>,
    /// Place clones on any host, not only the source's: every target
    /// engine must then have the image (one shared engine, or the snapshot
    /// pushed to a registry they pull from).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_host: bool,
    /// Seconds to wait for the commit and for the clones to run (default
    /// 300 each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// A change of replicas for batch scaling: `N`, `+N`, `-N`, `+P%`, `-P%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaChange {
    /// Exactly this many.
    Absolute(u32),
    /// This many more (negative: fewer).
    Delta(i64),
    /// This percentage more (negative: fewer), rounded up when growing and
    /// down when shrinking, so `+50%` of 1 is 2 and `-50%` of 3 is 2.
    Percent(i64),
}

impl ReplicaChange {
    /// The target for a group that has `current` replicas (0..=MAX_REPLICAS).
    pub fn apply(self, current: u32) -> u32 {
        let cur = i64::from(current);
        let target = match self {
            ReplicaChange::Absolute(n) => i64::from(n),
            ReplicaChange::Delta(d) => cur + d,
            ReplicaChange::Percent(p) => {
                let change = cur * p;
                // Round away from zero when growing, toward zero when shrinking.
                if p >= 0 {
                    cur + (change + 99) / 100
                } else {
                    cur + change / 100
                }
            }
        };
        target.clamp(0, i64::from(MAX_REPLICAS)) as u32
    }
}

/// Error parsing a [`ReplicaChange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a replica count or change: use N, +N, -N, +P% or -P%")]
pub struct ParseReplicaChangeError(String);

impl FromStr for ReplicaChange {
    type Err = ParseReplicaChangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseReplicaChangeError(s.to_string());
        let t = s.trim();
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (Some(1i64), &t[1..]),
            Some(b'-') => (Some(-1i64), &t[1..]),
            _ => (None, t),
        };
        let (digits, pct) = match rest.strip_suffix('%') {
            Some(d) => (d, true),
            None => (rest, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: u32 = digits.parse().map_err(|_| err())?;
        if n > MAX_REPLICAS && !pct || pct && n > 10_000 {
            return Err(err());
        }
        Ok(match (sign, pct) {
            (None, false) => ReplicaChange::Absolute(n),
            (None, true) => return Err(err()),
            (Some(s), false) => ReplicaChange::Delta(s * i64::from(n)),
            (Some(s), true) => ReplicaChange::Percent(s * i64::from(n)),
        })
    }
}

impl fmt::Display for ReplicaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaChange::Absolute(n) => write!(f, "{n}"),
            ReplicaChange::Delta(d) => write!(f, "{d:+}"),
            ReplicaChange::Percent(p) => write!(f, "{p:+}%"),
        }
    }
}

impl Serialize for ReplicaChange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReplicaChange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ReplicaChange::Absolute(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which groups a batch scale touches: every group of the apps matching all
/// given conditions (at least one is required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Apps of this department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Apps carrying all these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Groups of this environment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Groups of this datacenter only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

impl Selector {
    /// True when nothing is constrained (a batch over everything is refused).
    pub fn is_empty(&self) -> bool {
        self.department.is_none()
            && self.labels.is_empty()
            && self.env.is_none()
            && self.datacenter.is_none()
    }

    /// Parses `department=retail,tier=web,env=production`: `department`,
    /// `env` and `datacenter` are fields, anything else an app label.
    pub fn parse(s: &str) -> Result<Selector, ValidationErrors> {
        let mut sel = Selector::default();
        let mut e = ValidationErrors::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                e.add(
                    "selector",
                    "invalid_selector",
                    format!("{part:?} is not key=value"),
                );
                continue;
            };
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            match k.as_str() {
                "department" => sel.department = Some(v),
                "env" => sel.env = Some(v),
                "datacenter" => sel.datacenter = Some(v),
                _ => {
                    sel.labels.insert(k, v);
                }
            }
        }
        e.into_result()?;
        Ok(sel)
    }

    /// `department=retail,tier=web` (the inverse of [`Selector::parse`]).
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.department {
            parts.push(format!("department={d}"));
        }
        if let Some(d) = &self.env {
            parts.push(format!("env={d}"));
        }
        if let Some(d) = &self.datacenter {
            parts.push(format!("datacenter={d}"));
        }
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(",")
    }
}

/// `batch_scale`: one change applied to every group a selector picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchScaleParams {
    /// Which groups.
    pub selector: Selector,
    /// `N`, `+N`, `-N`, `+P%`, `-P%`.
    pub replicas: ReplicaChange,
    /// Seconds each group's scale may wait for its containers (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `resize`: new resources for every container of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeParams {
    /// The group.
    pub group: GroupKey,
    /// New cpu in millicores (unchanged when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
    /// New memory in bytes (unchanged when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Seconds to wait for moved containers to run (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl ResizeParams {
    /// `r` with this resize applied.
    pub fn apply(&self, r: &Resources) -> Resources {
        let mut n = *r;
        if let Some(c) = self.cpu_millis {
            n.cpu_millis = c;
        }
        if let Some(m) = self.memory_bytes {
            n.memory_bytes = m;
        }
        n
    }
}

/// `migrate`: move containers of a group to other hosts, keeping their IPs
/// (stop in place, then re-place and start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateParams {
    /// The group.
    pub group: GroupKey,
    /// These container indexes …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<u32>,
    /// … or every container of the group on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// Seconds each phase may wait (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `rolling`: recreate a group's containers batch by batch, from the
/// group's (possibly just changed) template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingParams {
    /// The group.
    pub group: GroupKey,
    /// Containers down at once (default 1).
    #[serde(default = "one")]
    pub max_unavailable: u32,
    /// Restart even containers whose template did not change.
    #[serde(default)]
    pub restart: bool,
    /// A new template written to the group by the task's first step
    /// (absent: the group's current one; `apply` writes it itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<ContainerTemplate>>,
    /// Seconds each batch may take to run again (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

/// `delete_group`: pre-stop hooks, remove every container, then the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteGroupParams {
    /// The group.
    pub group: GroupKey,
    /// Seconds to wait for the agents to remove the containers (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `delete_app`: delete every group of the app, then the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAppParams {
    /// The app.
    pub app: String,
    /// Seconds to wait for the agents to remove the containers (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Default wait of a step, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Longest wait a task may ask for, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3_600;

pub(super) fn timeout_ms(secs: Option<u64>) -> u64 {
    secs.unwrap_or(DEFAULT_TIMEOUT_SECS)
        .clamp(1, MAX_TIMEOUT_SECS)
        * 1000
}

fn check_timeout(e: &mut ValidationErrors, t: Option<u64>) {
    if let Some(t) = t {
        if t == 0 || t > MAX_TIMEOUT_SECS {
            e.add(
                "timeout_secs",
                "out_of_range",
                format!("timeout_secs must be 1-{MAX_TIMEOUT_SECS}"),
            );
        }
    }
}

fn group_object(g: &GroupKey) -> String {
    format!("group {g}")
}

fn task(kind: &str, app: &str, object: String, actor: &str, params: impl Serialize) -> NewTask {
    NewTask {
        kind: kind.to_string(),
        app: app.to_string(),
        department: None,
        object,
        actor: actor.to_string(),
        params: serde_json::to_value(params).expect("operation params serialize"),
    }
}

impl DeployParams {
    /// The task (set `department` on it for scoping).
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::DEPLOY,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl ScaleParams {
    /// Checks the target.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.replicas > MAX_REPLICAS {
            e.add(
                "replicas",
                "out_of_range",
                format!("replicas must be 0-{MAX_REPLICAS}"),
            );
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::SCALE,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl SnapshotScaleParams {
    /// Checks the target (whether it adds containers is known only when
    /// the task runs, under the app's mutex).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            e.add(
                "replicas",
                "out_of_range",
                format!("replicas must be 1-{MAX_REPLICAS}: a snapshot scale-out adds containers"),
            );
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::SNAPSHOT_SCALE,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl BatchScaleParams {
    /// Checks the selector.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.selector.is_empty() {
            e.add(
                "selector",
                "required",
                "a batch scale needs a selector (department=…, env=…, or app labels)",
            );
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task: batch tasks run under the pseudo-app [`super::BATCH_APP`]
    /// (not a valid app name, so it never meets a real app's mutex); each
    /// group is scaled by a child `scale` task under its own app.
    pub fn task(&self, actor: &str) -> NewTask {
        let mut t = task(
            super::BATCH_SCALE,
            super::BATCH_APP,
            format!("groups {} → {}", self.selector.render(), self.replicas),
            actor,
            self,
        );
        t.department = self.selector.department.clone();
        t
    }
}

impl ResizeParams {
    /// Checks the new resources.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.cpu_millis.is_none() && self.memory_bytes.is_none() {
            e.add(
                "cpu_millis",
                "required",
                "give cpu_millis, memory_bytes or both",
            );
        }
        if self.cpu_millis == Some(0) {
            e.add("cpu_millis", "out_of_range", "must be greater than 0");
        }
        if self.memory_bytes.is_some_and(|m| m < (4 << 20)) {
            e.add(
                "memory_bytes",
                "out_of_range",
                "must be at least 4 MiB (Docker's minimum)",
            );
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::RESIZE,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl MigrateParams {
    /// Checks that exactly one of `indexes` and `from_host` is given.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        match (self.indexes.is_empty(), &self.from_host) {
            (true, None) => e.add(
                "indexes",
                "required",
                "name the containers (indexes) or the host to move them off (from_host)",
            ),
            (false, Some(_)) => e.add(
                "from_host",
                "conflict",
                "give indexes or from_host, not both",
            ),
            (_, Some(h)) if h.trim().is_empty() => {
                e.add("from_host", "required", "must not be empty")
            }
            _ => {}
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::MIGRATE,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl RollingParams {
    /// Checks `max_unavailable` and the new template.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.max_unavailable == 0 {
            e.add("max_unavailable", "out_of_range", "must be at least 1");
        }
        if let Some(t) = &self.template {
            // The group's own validation covers the template's fields.
            let g = jdos_types::Group {
                app: self.group.app.clone(),
                env: self.group.env.clone(),
                name: self.group.group.clone(),
                datacenter: "dc".into(),
                replicas: 0,
                template: (**t).clone(),
                placement: Default::default(),
                autoscaling: None,
            };
            if let Err(v) = jdos_types::Validate::validate(&g) {
                for fe in v
                    .errors
                    .into_iter()
                    .filter(|f| f.field.starts_with("template"))
                {
                    e.errors.push(fe);
                }
            }
            if let Err(v) = crate::hooks::validate_hooks("template.hooks", &t.hooks) {
                e.errors.extend(v.errors);
            }
        }
        check_timeout(&mut e, self.timeout_secs);
        e.into_result()
    }

    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::ROLLING,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl DeleteGroupParams {
    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::DELETE_GROUP,
            &self.group.app,
            group_object(&self.group),
            actor,
            self,
        )
    }
}

impl DeleteAppParams {
    /// The task.
    pub fn task(&self, actor: &str) -> NewTask {
        task(
            super::DELETE_APP,
            &self.app,
            format!("app {}", self.app),
            actor,
            self,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_changes_parse_and_apply() {
        let cases = [
            ("20", 10, 20),
            ("+5", 10, 15),
            ("-5", 3, 0),
            ("+50%", 10, 15),
            ("+50%", 1, 2),
            ("-50%", 3, 2),
            ("-100%", 7, 0),
            ("+0", 4, 4),
        ];
        for (s, cur, want) in cases {
            let c: ReplicaChange = s.parse().unwrap();
            assert_eq!(c.apply(cur), want, "{s} of {cur}");
            assert_eq!(c.to_string().parse::<ReplicaChange>().unwrap(), c);
        }
        for bad in ["", "+", "50%", "x", "+-3", "1.5", "+5%%", "999999999"] {
            assert!(bad.parse::<ReplicaChange>().is_err(), "{bad:?}");
        }
        let c: ReplicaChange = serde_json::from_str("7").unwrap();
        assert_eq!(c, ReplicaChange::Absolute(7));
        let c: ReplicaChange = serde_json::from_str("\"+50%\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"+50%\"");
    }

    #[test]
    fn selectors_parse() {
        let s = Selector::parse("department=retail, tier=web,env=production").unwrap();
        assert_eq!(s.department.as_deref(), Some("retail"));
        assert_eq!(s.env.as_deref(), Some("production"));
        assert_eq!(s.labels["tier"], "web");
        assert_eq!(Selector::parse(&s.render()).unwrap(), s);
        assert!(Selector::parse("department").is_err());
        assert!(Selector::parse("").unwrap().is_empty());
    }

    #[test]
    fn params_are_checked_with_their_field() {
        let g = GroupKey::new("shop", "production", "web");
        let m = MigrateParams {
            group: g.clone(),
            indexes: Vec::new(),
            from_host: None,
            timeout_secs: None,
        };
        assert_eq!(m.validate().unwrap_err().errors[0].field, "indexes");
        let r = ResizeParams {
            group: g.clone(),
            cpu_millis: Some(0),
            memory_bytes: None,
            timeout_secs: Some(0),
        };
        let f: Vec<String> = r
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(f, ["cpu_millis", "timeout_secs"]);
        let b = BatchScaleParams {
            selector: Selector::default(),
            replicas: ReplicaChange::Delta(1),
            timeout_secs: None,
        };
        assert_eq!(b.validate().unwrap_err().errors[0].field, "selector");
        let roll = RollingParams {
            group: g,
            max_unavailable: 0,
            restart: true,
            template: None,
            timeout_secs: None,
        };
        assert_eq!(
            roll.validate().unwrap_err().errors[0].field,
            "max_unavailable"
        );
    }
}
