//! Declarative app specs: the YAML document `jdos apply -f` reads.
//!
//! ```yaml
//! apiVersion: jdos/v1
//! kind: App
//! name: web
//! owner: alice
//! department: retail
//! business_level: normal
//! template:
//!   image: jdos-busybox:latest
//!   command: [httpd, -f, -p, "80"]
//!   resources: {cpu: 250m, memory: 64Mi}
//!   ports: [80]
//!   health: {probe: {kind: http, port: 80, path: /}}
//! groups:
//!   - {env: production, name: web-lf, datacenter: langfang, replicas: 2}
//! ```
//!
//! [`AppSpec::validate`] reports every offending field with its path
//! (`groups[1].replicas`); [`AppSpec::to_records`] turns a valid spec into
//! the [`App`] and [`Group`] records the platform stores. Quantities are
//! written like Kubernetes': cpu `250m` / `0.5` / `2`, bytes `64Mi` / `1Gi` /
//! `500M` / a plain number.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::autoscaling::AutoscalingPolicy;
use crate::group::{ContainerTemplate, Hooks, Placement, MAX_REPLICAS};
use crate::name::{check_label, check_name};
use crate::workload::{
    default_volume_driver, BlockVolume, HealthCheck, HostTier, HostVolume, Isolation, Probe,
    StorageSpec, TmpfsMount,
};
use crate::{App, BusinessLevel, DiskByTier, Group, Resources, Validate, ValidationErrors};

/// The `apiVersion` this build reads.
pub const API_VERSION: &str = "jdos/v1";
/// The `kind` of an app spec.
pub const KIND_APP: &str = "App";
/// Smallest memory a container may ask for (the engine's minimum).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// Most groups in one spec. One apply commits the app, its groups and the
/// tasks that converge them (a group takes up to 5 operations: its record,
/// a scale and a rolling task of 2 each) in one store transaction, which
/// etcd caps at 128 operations: 20 groups stay within it even when as many
/// removed groups are deleted in the same apply.
pub const MAX_GROUPS: usize = 20;

/// A number or a string with a unit: `250m`, `0.5`, `64Mi`, `1Gi`, `1024`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// A bare number (cores for cpu, bytes for sizes).
    Number(serde_json::Number),
    /// A number with a unit.
    Text(String),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(s) => s.trim().to_string(),
        }
    }

    /// Cpu in millicores: `250m` → 250, `0.5` → 500, `2` → 2000.
    pub fn cpu_millis(&self) -> Result<u64, String> {
        let s = self.text();
        let bad = || format!("{s:?} is not a cpu amount: use e.g. 250m, 0.5 or 2 (cores)");
        let millis = match s.strip_suffix('m') {
            Some(m) => m.parse::<u64>().map_err(|_| bad())?,
            None => {
                let cores: f64 = s.parse().map_err(|_| bad())?;
                if !(0.0..=1e6).contains(&cores) {
                    return Err(bad());
                }
                (cores * 1000.0).round() as u64
            }
        };
        Ok(millis)
    }

    /// Bytes: `64Mi`, `1Gi`, `500M`, `1.5Gi`, `1048576`.
    pub fn bytes(&self) -> Result<u64, String> {
        let s = self.text();
        let bad = || format!("{s:?} is not a size: use e.g. 64Mi, 1Gi, 500M or a number of bytes");
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let mult: u64 = match unit {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(bad()),
        };
        if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| bad())?;
            let b = v * mult as f64;
            if !b.is_finite() || !(0.0..1.8e19).contains(&b) {
                return Err(bad());
            }
            Ok(b.round() as u64)
        } else {
            let v: u64 = num.parse().map_err(|_| bad())?;
            v.checked_mul(mult).ok_or_else(bad)
        }
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity::Text(s.to_string())
    }
}

/// Disk reserved per storage tier; a tier left out is the sum of the
/// template's volumes of that tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// L0 tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l0: Option<Quantity>,
    /// L1 SSD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<Quantity>,
    /// L2 SAS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<Quantity>,
    /// L3 network block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3: Option<Quantity>,
}

/// Resources per container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Cpu (`250m`, `0.5`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory (`64Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Disk per tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskSpec>,
}

/// Storage tier of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeTier {
    /// L0 tmpfs in memory.
    L0,
    /// L1 local SSD directory.
    L1,
    /// L2 local SAS directory.
    L2,
    /// L3 network block volume (a Docker volume driver).
    L3,
}

/// One volume of the template, on one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Tier.
    pub tier: VolumeTier,
    /// Name (a DNS label), required on L1–L3: the directory or volume name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absolute path inside the container.
    pub path: String,
    /// Size (`64Mi`, `10Gi`).
    pub size: Quantity,
    /// Mount read-only (L1/L2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Volume driver (L3, default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options (L3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// What every container of the app runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Image reference.
    pub image: String,
    /// Command and arguments (empty: the image's default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Resources per container.
    #[serde(default)]
    pub resources: ResourceSpec,
    /// Ports it listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Health check run by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Cpu policy, swap, pids, open files, block-io weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Volumes, per tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// Network zone the IPs come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_zone: Option<String>,
    /// A specific network (VLAN) by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Placement policy: strategy and spread caps.
    #[serde(default)]
    pub placement: Placement,
    /// Lifecycle hooks.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// Seconds between SIGTERM and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_secs: Option<u32>,
}

/// What a group changes of the template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOverrides {
    /// Environment variables added to (or replacing) the template's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Resources replacing the template's, field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSpec>,
    /// Image replacing the template's (a canary group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// One group: app × env × name in one datacenter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Environment (`production`, `test` …).
    pub env: String,
    /// Group name, unique within app and env.
    pub name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Replicas (default: the spec's `replicas`). For an autoscaled group
    /// this is the initial count: once running, the autoscaler owns it
    /// within `min`…`max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Per-group changes to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<GroupOverrides>,
    /// Placement policy replacing the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Autoscaling policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingPolicy>,
}

/// A declarative app: the app record, its container template and its groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Must be `jdos/v1`.
    #[serde(rename = "apiVersion", alias = "api_version")]
    pub api_version: String,
    /// Must be `App`.
    pub kind: String,
    /// App name (a DNS label).
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Department.
    pub department: String,
    /// Business level: core, important, normal, test.
    #[serde(default)]
    pub business_level: BusinessLevel,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels (used by selectors, e.g. `jdos scale --selector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Default replicas of a group that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// The container template.
    pub template: TemplateSpec,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

impl AppSpec {
    /// The app record (creation time left 0: the server sets it).
    pub fn app(&self) -> App {
        App {
            name: self.name.clone(),
            owner: self.owner.clone(),
            department: self.department.clone(),
            business_level: self.business_level,
            description: self.description.clone(),
            labels: self.labels.clone(),
            created_at_ms: 0,
        }
    }

    /// Validates the spec and builds its records: the app and one group per
    /// entry of `groups`. Every problem is reported, with its path.
    pub fn to_records(&self) -> Result<(App, Vec<Group>), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if self.api_version != API_VERSION {
            e.add(
                "apiVersion",
                "unsupported",
                format!(
                    "apiVersion {:?} is not supported: use {API_VERSION}",
                    self.api_version
                ),
            );
        }
        if self.kind != KIND_APP {
            e.add(
                "kind",
                "unsupported",
                format!("kind {:?} is not supported: use {KIND_APP}", self.kind),
            );
        }
        let app = self.app();
        if let Err(v) = app.validate() {
            e.errors.extend(v.errors);
        }
        if self.replicas.is_some_and(|r| r > MAX_REPLICAS) {
            e.add(
                "replicas",
                "out_of_range",
                format!("replicas must be at most {MAX_REPLICAS}"),
            );
        }
        let base = build_template(&mut e, "template", &self.template, None);
        check_placement(&mut e, "template.placement", &self.template.placement);
        if self.groups.is_empty() {
            e.add(
                "groups",
                "required",
                "an app spec needs at least one group (env, name, datacenter, replicas)",
            );
        }
        if self.groups.len() > MAX_GROUPS {
            e.add(
                "groups",
                "too_many",
                format!("at most {MAX_GROUPS} groups per app spec"),
            );
        }
        let mut seen = BTreeSet::new();
        let mut groups = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = format!("groups[{i}]");
            check_name(&mut e, &format!("{at}.env"), &g.env);
            check_name(&mut e, &format!("{at}.name"), &g.name);
            check_name(&mut e, &format!("{at}.datacenter"), &g.datacenter);
            if !seen.insert((g.env.clone(), g.name.clone())) {
                e.add(
                    format!("{at}.name"),
                    "duplicate",
                    format!(
                        "group {}/{} is listed twice: a group name is unique within its env",
                        g.env, g.name
                    ),
                );
            }
            let replicas = match g.replicas.or(self.replicas) {
                Some(r) if r > MAX_REPLICAS => {
                    e.add(
                        format!("{at}.replicas"),
                        "out_of_range",
                        format!("replicas {r} exceeds the maximum of {MAX_REPLICAS}"),
                    );
                    r
                }
                Some(r) => r,
                None => {
                    e.add(
                        format!("{at}.replicas"),
                        "required",
                        "give the group replicas (or the spec a default replicas)",
                    );
                    0
                }
            };
            if let Some(a) = &g.autoscaling {
                if let Err(v) = a.validate() {
                    e.nest(&format!("{at}.autoscaling"), v);
                } else if replicas <= MAX_REPLICAS
                    && g.replicas.or(self.replicas).is_some()
                    && (replicas < a.min_replicas || replicas > a.max_replicas)
                {
                    e.add(
                        format!("{at}.replicas"),
                        "out_of_range",
                        format!(
                            "replicas {replicas} is outside the autoscaling range {}-{}",
                            a.min_replicas, a.max_replicas
                        ),
                    );
                }
            }
            if let Some(p) = &g.placement {
                check_placement(&mut e, &format!("{at}.placement"), p);
            }
            let template = match &g.overrides {
                None => base.clone(),
                Some(o) => {
                    build_template(&mut e, &format!("{at}.overrides"), &self.template, Some(o))
                }
            };
            {
                groups.push(Group {
                    app: self.name.clone(),
                    env: g.env.clone(),
                    name: g.name.clone(),
                    datacenter: g.datacenter.clone(),
                    replicas,
                    template,
                    placement: g
                        .placement
                        .clone()
                        .unwrap_or_else(|| self.template.placement.clone()),
                    autoscaling: g.autoscaling.as_ref().map(AutoscalingPolicy::normalized),
                });
            }
        }
        if e.is_empty() {
            // Belt and braces: the records must pass their own validation.
            for (i, g) in groups.iter().enumerate() {
                if let Err(v) = g.validate() {
                    e.nest(&format!("groups[{i}]"), v);
                }
            }
        }
        e.into_result()?;
        Ok((app, groups))
    }
}

impl Validate for AppSpec {
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.to_records().map(|_| ())
    }
}

fn check_placement(e: &mut ValidationErrors, at: &str, p: &Placement) {
    for (field, cap) in [
        ("max_per_host", p.max_per_host),
        ("max_per_rack", p.max_per_rack),
        ("max_per_switch", p.max_per_switch),
    ] {
        if cap == Some(0) {
            e.add(
                format!("{at}.{field}"),
                "out_of_range",
                "a cap must be at least 1",
            );
        }
    }
    for (k, v) in &p.required_labels {
        check_label(e, &format!("{at}.required_labels"), k, v);
    }
}

/// Resolves the resources of the template with a group's overrides, field
/// by field. Errors are reported under `at` (`template.resources` or
/// `groups[1].overrides.resources`) for the fields that came from there.
fn resources(
    e: &mut ValidationErrors,
    base: &ResourceSpec,
    over: Option<&ResourceSpec>,
    at_base: &str,
    at_over: &str,
    volumes: &DiskByTier,
) -> Resources {
    let pick = |b: &Option<Quantity>, o: Option<&Option<Quantity>>, name: &str| match o
        .and_then(|o| o.as_ref())
    {
        Some(q) => (Some(q.clone()), format!("{at_over}.{name}")),
        None => (b.clone(), format!("{at_base}.{name}")),
    };
    let mut r = Resources::default();
    let (cpu, cpu_at) = pick(&base.cpu, over.map(|o| &o.cpu), "cpu");
    match cpu.map(|q| q.cpu_millis()) {
        None => e.add(cpu_at, "required", "give the cpu per container, e.g. 250m"),
        Some(Err(m)) => e.add(cpu_at, "invalid_quantity", m),
        Some(Ok(0)) => e.add(cpu_at, "out_of_range", "cpu must be greater than 0"),
        Some(Ok(m)) => r.cpu_millis = m,
    }
    let (mem, mem_at) = pick(&base.memory, over.map(|o| &o.memory), "memory");
    match mem.map(|q| q.bytes()) {
        None => e.add(
            mem_at,
            "required",
            "give the memory per container, e.g. 128Mi",
        ),
        Some(Err(m)) => e.add(mem_at, "invalid_quantity", m),
        Some(Ok(b)) if b < MIN_MEMORY_BYTES => e.add(
            mem_at,
            "out_of_range",
            "memory must be at least 6Mi (the engine's minimum)",
        ),
        Some(Ok(b)) => r.memory_bytes = b,
    }
    let empty = DiskSpec::default();
    let base_disk = base.disk.as_ref().unwrap_or(&empty);
    let over_disk = over.and_then(|o| o.disk.as_ref());
    for (tier, b, o, need) in [
        ("l0", &base_disk.l0, over_disk.map(|d| &d.l0), volumes.l0),
        ("l1", &base_disk.l1, over_disk.map(|d| &d.l1), volumes.l1),
        ("l2", &base_disk.l2, over_disk.map(|d| &d.l2), volumes.l2),
        ("l3", &base_disk.l3, over_disk.map(|d| &d.l3), volumes.l3),
    ] {
        let (q, at) = match o.and_then(|o| o.as_ref()) {
            Some(q) => (Some(q), format!("{at_over}.disk.{tier}")),
            None => (b.as_ref(), format!("{at_base}.disk.{tier}")),
        };
        let bytes = match q.map(Quantity::bytes) {
            None => need,
            Some(Err(m)) => {
                e.add(at, "invalid_quantity", m);
                need
            }
            Some(Ok(v)) if v < need => {
                e.add(
                    at,
                    "over_budget",
                    format!(
                        "the {tier} volumes need {need} bytes but only {v} are reserved: raise it or leave it out (it defaults to the volumes' sum)"
                    ),
                );
                need
            }
            Some(Ok(v)) => v,
        };
        match tier {
            "l0" => r.disk.l0 = bytes,
            "l1" => r.disk.l1 = bytes,
            "l2" => r.disk.l2 = bytes,
            _ => r.disk.l3 = bytes,
        }
    }
    r
}

fn is_clean_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && p != "/"
        && !p.ends_with('/')
        && !p.contains("//")
        && !p.contains(':')
        && !p.contains(',')
        && !p.split('/').any(|s| s == ".." || s == ".")
}

/// Turns the volumes into the storage spec, and the bytes they need per tier.
fn volumes(e: &mut ValidationErrors, at: &str, vs: &[VolumeSpec]) -> (StorageSpec, DiskByTier) {
    let mut s = StorageSpec::default();
    let mut need = DiskByTier::default();
    let mut paths = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, v) in vs.iter().enumerate() {
        let at = format!("{at}[{i}]");
        if !is_clean_abs_path(&v.path) {
            e.add(
                format!("{at}.path"),
                "invalid_path",
                format!(
                    "{:?} must be an absolute path other than '/' without '..', ':' or ','",
                    v.path
                ),
            );
        } else if !paths.insert(v.path.clone()) {
            e.add(
                format!("{at}.path"),
                "duplicate",
                format!("{} is mounted twice", v.path),
            );
        }
        let size = match v.size.bytes() {
            Ok(0) => {
                e.add(
                    format!("{at}.size"),
                    "out_of_range",
                    "a volume needs a size",
                );
                0
            }
            Ok(b) => b,
            Err(m) => {
                e.add(format!("{at}.size"), "invalid_quantity", m);
                0
            }
        };
        let name = match (v.tier, &v.name) {
            (VolumeTier::L0, _) => String::new(),
            (_, None) => {
                e.add(
                    format!("{at}.name"),
                    "required",
                    "an l1, l2 or l3 volume needs a name (its directory or volume name)",
                );
                String::new()
            }
            (tier, Some(n)) => {
                check_name(e, &format!("{at}.name"), n);
                let class = if tier == VolumeTier::L3 {
                    VolumeTier::L3
                } else {
                    tier
                };
                if !names.insert((class, n.clone())) {
                    e.add(
                        format!("{at}.name"),
                        "duplicate",
                        format!("volume {n} is listed twice"),
                    );
                }
                n.clone()
            }
        };
        if v.tier != VolumeTier::L3 && (v.driver.is_some() || !v.options.is_empty()) {
            e.add(
                format!("{at}.driver"),
                "not_allowed",
                "driver and options apply to l3 volumes only",
            );
        }
        if v.tier == VolumeTier::L0 && v.read_only {
            e.add(
                format!("{at}.read_only"),
                "not_allowed",
                "a tmpfs cannot be read-only",
            );
        }
        match v.tier {
            VolumeTier::L0 => {
                need.l0 = need.l0.saturating_add(size);
                s.tmpfs.push(TmpfsMount {
                    path: v.path.clone(),
                    size_bytes: size,
                });
            }
            VolumeTier::L1 | VolumeTier::L2 => {
                let tier = if v.tier == VolumeTier::L1 {
                    need.l1 = need.l1.saturating_add(size);
                    HostTier::L1
                } else {
                    need.l2 = need.l2.saturating_add(size);
                    HostTier::L2
                };
                s.host_volumes.push(HostVolume {
                    tier,
                    name,
                    path: v.path.clone(),
                    size_bytes: size,
                    read_only: v.read_only,
                });
            }
            VolumeTier::L3 => {
                need.l3 = need.l3.saturating_add(size);
                let driver = v.driver.clone().unwrap_or_else(default_volume_driver);
                if driver.is_empty()
                    || !driver.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':')
                    })
                {
                    e.add(
                        format!("{at}.driver"),
                        "invalid_name",
                        "a volume driver name is 1+ of [A-Za-z0-9-_./:]",
                    );
                }
                s.block_volumes.push(BlockVolume {
                    name,
                    path: v.path.clone(),
                    size_bytes: size,
                    driver,
                    options: v.options.clone(),
                });
            }
        }
    }
    (s, need)
}

fn check_health(e: &mut ValidationErrors, at: &str, h: &HealthCheck, ports: &[u16]) {
    match &h.probe {
        Probe::Tcp { port } | Probe::Http { port, .. } => {
            if *port == 0 {
                e.add(
                    format!("{at}.probe.port"),
                    "out_of_range",
                    "port must be 1-65535",
                );
            } else if !ports.is_empty() && !ports.contains(port) {
                e.add(
                    format!("{at}.probe.port"),
                    "unknown_port",
                    format!("port {port} is not one of the template's ports {ports:?}"),
                );
            }
        }
        Probe::Exec { command } => {
            if command.is_empty() || command.iter().any(|a| a.contains('\0')) {
                e.add(
                    format!("{at}.probe.command"),
                    "invalid_command",
                    "an exec probe needs a command without NUL",
                );
            }
        }
    }
    if let Probe::Http { path, .. } = &h.probe {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            e.add(
                format!("{at}.probe.path"),
                "invalid_path",
                "an http path starts with '/' and has no spaces",
            );
        }
    }
    if h.interval_ms < 100 {
        e.add(
            format!("{at}.interval_ms"),
            "out_of_range",
            "probe at most every 100 ms",
        );
    }
    if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms.max(100) {
        e.add(
            format!("{at}.timeout_ms"),
            "out_of_range",
            "the timeout must be positive and at most the interval",
        );
    }
    if h.retries == 0 {
        e.add(
            format!("{at}.retries"),
            "out_of_range",
            "retries must be at least 1",
        );
    }
}

/// Builds the container template of a group: the spec's template with the
/// group's overrides. Problems in the template are reported under
/// `template…` (only when building the base, `over == None`), problems in
/// the overrides under `at`.
fn build_template(
    e: &mut ValidationErrors,
    at: &str,
    t: &TemplateSpec,
    over: Option<&GroupOverrides>,
) -> ContainerTemplate {
    // Template problems are reported once, when building the base template;
    // a group's build reports its overrides only.
    let mut scratch = ValidationErrors::new();
    let te = &mut scratch;
    let image = match over.and_then(|o| o.image.as_ref()) {
        Some(img) => {
            check_image(e, &format!("{at}.image"), img);
            img.clone()
        }
        None => {
            check_image(te, "template.image", &t.image);
            t.image.clone()
        }
    };
    if t.command.iter().any(|a| a.contains('\0')) {
        te.add(
            "template.command",
            "invalid_command",
            "arguments must not contain NUL",
        );
    }
    for (i, p) in t.ports.iter().enumerate() {
        if *p == 0 {
            te.add(
                format!("template.ports[{i}]"),
                "out_of_range",
                "port must be 1-65535",
            );
        }
    }
    let mut env = t.env.clone();
    for k in t.env.keys() {
        check_env_key(te, &format!("template.env.{k}"), k);
    }
    if let Some(o) = over {
        for (k, v) in &o.env {
            check_env_key(e, &format!("{at}.env.{k}"), k);
            env.insert(k.clone(), v.clone());
        }
    }
    let (storage, need) = volumes(te, "template.volumes", &t.volumes);
    let mut res_errs = ValidationErrors::new();
    let res = resources(
        &mut res_errs,
        &t.resources,
        over.and_then(|o| o.resources.as_ref()),
        "template.resources",
        &format!("{at}.resources"),
        &need,
    );
    if let Some(h) = &t.health {
        check_health(te, "template.health", h, &t.ports);
    }
    t.hooks.check(te, "template.hooks");
    if let Some(z) = &t.network_zone {
        check_name(te, "template.network_zone", z);
    }
    if let Some(n) = &t.network {
        check_name(te, "template.network", n);
    }
    if t.stop_grace_secs.is_some_and(|s| s > 3600) {
        te.add(
            "template.stop_grace_secs",
            "out_of_range",
            "stop_grace_secs must be at most 3600",
        );
    }
    let isolation = t.isolation.clone().unwrap_or_default();
    check_isolation(te, "template.isolation", &isolation, &res);
    // Resource errors belong to whoever wrote the resources: the group's
    // overrides or the template.
    let overridden = over.is_some_and(|o| o.resources.is_some());
    if over.is_none() {
        e.errors.extend(scratch.errors);
    }
    if over.is_none() {
        e.errors.extend(res_errs.errors);
    } else if overridden {
        let own = format!("{at}.");
        e.errors.extend(
            res_errs
                .errors
                .into_iter()
                .filter(|f| f.field.starts_with(&own)),
        );
    }
    ContainerTemplate {
        image,
        command: t.command.clone(),
        env,
        resources: res,
        ports: t.ports.clone(),
        network_zone: t.network_zone.clone(),
        network: t.network.clone(),
        isolation,
        storage,
        health: t.health.clone(),
        stop_grace_secs: t.stop_grace_secs,
        hooks: t.hooks.clone(),
    }
}

fn check_image(e: &mut ValidationErrors, at: &str, image: &str) {
    if image.trim().is_empty() {
        e.add(
            at,
            "required",
            "an image is required, e.g. jdos-busybox:latest",
        );
    } else if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        e.add(at, "invalid_image", "an image reference has no spaces");
    }
}

fn check_env_key(e: &mut ValidationErrors, at: &str, k: &str) {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        e.add(
            at,
            "invalid_env",
            "environment variable names must be non-empty and contain no '=' or NUL",
        );
    }
}

fn check_isolation(e: &mut ValidationErrors, at: &str, iso: &Isolation, r: &Resources) {
    use crate::workload::CpuPolicy;
    match &iso.cpu {
        CpuPolicy::Shares => {}
        CpuPolicy::Quota { period_us } => {
            if !(1_000..=1_000_000).contains(period_us) {
                e.add(
                    format!("{at}.cpu.period_us"),
                    "out_of_range",
                    "the CFS period must be 1000-1000000 µs",
                );
            } else if r.cpu_millis > 0 && r.cpu_millis * period_us / 1000 < 1000 {
                e.add(
                    format!("{at}.cpu"),
                    "out_of_range",
                    "the cpu over this period is a quota below the kernel's 1000 µs minimum: raise the cpu or the period",
                );
            }
        }
        CpuPolicy::Cpuset { cpus } => {
            let unique: BTreeSet<_> = cpus.iter().collect();
            if cpus.is_empty() {
                e.add(
                    format!("{at}.cpu.cpus"),
                    "required",
                    "a cpuset needs at least one cpu",
                );
            } else if unique.len() != cpus.len() {
                e.add(
                    format!("{at}.cpu.cpus"),
                    "duplicate",
                    "a cpu is listed twice",
                );
            } else if (cpus.len() as u64) * 1000 < r.cpu_millis {
                e.add(
                    format!("{at}.cpu.cpus"),
                    "too_few_cpus",
                    "the pinned cpus cannot give the cpu requested: pin more cpus or request less",
                );
            }
        }
    }
    if iso
        .memory_swap_bytes
        .is_some_and(|m| r.memory_bytes > 0 && m < r.memory_bytes)
    {
        e.add(
            format!("{at}.memory_swap_bytes"),
            "out_of_range",
            "memory+swap must be at least the memory limit (equal means no swap)",
        );
    }
    if iso.swappiness.is_some_and(|s| s > 100) {
        e.add(
            format!("{at}.swappiness"),
            "out_of_range",
            "swappiness must be 0-100",
        );
    }
    if iso.pids_limit == Some(0) {
        e.add(
            format!("{at}.pids_limit"),
            "out_of_range",
            "a pids limit must be at least 1",
        );
    }
    if let Some(n) = iso.nofile {
        if n.soft == 0 || n.soft > n.hard || n.hard > i64::MAX as u64 {
            e.add(
                format!("{at}.nofile"),
                "out_of_range",
                "nofile needs 1 <= soft <= hard",
            );
        }
    }
    if iso.blkio_weight.is_some_and(|w| !(10..=1000).contains(&w)) {
        e.add(
            format!("{at}.blkio_weight"),
            "out_of_range",
            "blkio weight must be 10-1000",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AppSpec {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jdos/v1",
            "kind": "App",
            "name": "web",
            "owner": "alice",
            "department": "retail",
            "template": {
                "image": "jdos-busybox:latest",
                "command": ["httpd", "-f", "-p", "80"],
                "resources": {"cpu": "250m", "memory": "64Mi"},
                "ports": [80],
                "health": {"probe": {"kind": "http", "port": 80, "path": "/"}},
                "volumes": [
                    {"tier": "l0", "path": "/tmp/cache", "size": "16Mi"},
                    {"tier": "l1", "name": "data", "path": "/data", "size": "1Gi"}
                ]
            },
            "groups": [
                {"env": "production", "name": "web-lf", "datacenter": "langfang", "replicas": 2},
                {"env": "production", "name": "web-sq", "datacenter": "suqian", "replicas": 3,
                 "overrides": {"env": {"REGION": "sq"}, "resources": {"memory": "128Mi"}},
                 "autoscaling": {"min": 2, "max": 10, "target": 0.6}}
            ]
        }))
        .unwrap()
    }

    fn fields(s: &AppSpec) -> Vec<String> {
        s.to_records()
            .err()
            .map(|e| e.errors.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn quantities() {
        assert_eq!(Quantity::from("250m").cpu_millis(), Ok(250));
        assert_eq!(Quantity::from("0.5").cpu_millis(), Ok(500));
        assert_eq!(Quantity::Number(2.into()).cpu_millis(), Ok(2000));
        assert!(Quantity::from("lots").cpu_millis().is_err());
        assert_eq!(Quantity::from("64Mi").bytes(), Ok(64 << 20));
        assert_eq!(Quantity::from("1.5Gi").bytes(), Ok(3 << 29));
        assert_eq!(Quantity::from("500M").bytes(), Ok(500_000_000));
        assert_eq!(Quantity::Number(4096.into()).bytes(), Ok(4096));
        assert!(Quantity::from("64 parsecs").bytes().is_err());
        assert!(Quantity::from("99999999999Ti").bytes().is_err());
    }

    #[test]
    fn a_spec_becomes_an_app_and_its_groups() {
        let (app, groups) = spec().to_records().unwrap();
        assert_eq!(
            (app.name.as_str(), app.department.as_str()),
            ("web", "retail")
        );
        assert_eq!(groups.len(), 2);
        let lf = &groups[0];
        assert_eq!(lf.replicas, 2);
        assert_eq!(lf.template.resources.cpu_millis, 250);
        assert_eq!(lf.template.resources.memory_bytes, 64 << 20);
        // Disk defaults to the volumes' sum per tier.
        assert_eq!(lf.template.resources.disk.l0, 16 << 20);
        assert_eq!(lf.template.resources.disk.l1, 1 << 30);
        assert_eq!(lf.template.storage.tmpfs.len(), 1);
        assert_eq!(lf.template.storage.host_volumes[0].tier, HostTier::L1);
        let sq = &groups[1];
        assert_eq!(sq.template.env["REGION"], "sq");
        assert_eq!(sq.template.resources.memory_bytes, 128 << 20);
        assert_eq!(
            sq.template.resources.cpu_millis, 250,
            "cpu kept from the template"
        );
        let a = sq.autoscaling.as_ref().unwrap();
        assert_eq!(a.target_utilization, Some(0.6));
        assert_eq!(a.target, None);
    }

    #[test]
    fn every_offending_field_is_reported_with_its_path() {
        let mut s = spec();
        s.api_version = "v2".into();
        s.name = "Web".into();
        s.template.resources.cpu = Some("lots".into());
        s.template.volumes[1].name = None;
        s.template.health = Some(HealthCheck::new(Probe::Http {
            port: 8080,
            path: "x".into(),
        }));
        s.groups[0].datacenter = String::new();
        s.groups[1].replicas = Some(200_000);
        s.groups[1].overrides.as_mut().unwrap().resources = Some(ResourceSpec {
            memory: Some("1Mi".into()),
            ..Default::default()
        });
        s.groups.push(GroupSpec {
            env: "production".into(),
            name: "web-lf".into(),
            datacenter: "langfang".into(),
            replicas: None,
            ..Default::default()
        });
        assert_eq!(
            fields(&s),
            [
                "apiVersion",
                "name",
                "template.volumes[1].name",
                "template.health.probe.port",
                "template.health.probe.path",
                "template.resources.cpu",
                "groups[0].datacenter",
                "groups[1].replicas",
                "groups[1].overrides.resources.memory",
                "groups[2].name",
                "groups[2].replicas",
            ]
        );
    }

    #[test]
    fn explicit_disk_below_the_volumes_is_refused() {
        let mut s = spec();
        s.template.resources.disk = Some(DiskSpec {
            l1: Some("10Mi".into()),
            ..Default::default()
        });
        assert_eq!(fields(&s), ["template.resources.disk.l1"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(spec()).unwrap();
        v["groups"][0]["replica"] = 3.into();
        let err = serde_json::from_value::<AppSpec>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("replica"), "{err}");
    }

    #[test]
    fn json_round_trip_is_lossless() {
        let s = spec();
        let back: AppSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
