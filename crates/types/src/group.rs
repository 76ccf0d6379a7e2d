//! Groups: app × env × group name, placed in one datacenter. The unit of
//! replicas and of elastic scaling.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::autoscaling::AutoscalingPolicy;
use crate::name::{check_label, check_name};
use crate::workload::{HealthCheck, Isolation, StorageSpec};
use crate::{Resources, Validate, ValidationErrors};

/// Most replicas one group may ask for.
pub const MAX_REPLICAS: u32 = 100_000;

/// Identifies a group: `app/env/group`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// App name.
    pub app: String,
    /// Environment (`production`, `test` …).
    pub env: String,
    /// Group name, unique within app and env.
    pub group: String,
}

impl GroupKey {
    /// Builds a key.
    pub fn new(app: &str, env: &str, group: &str) -> Self {
        GroupKey {
            app: app.to_string(),
            env: env.to_string(),
            group: group.to_string(),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.env, self.group)
    }
}

/// How the scheduler may spread a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// Prefer the least-loaded hosts (default).
    #[default]
    Spread,
    /// Prefer the fullest hosts that still fit.
    Binpack,
}

/// Placement policy of a group. `None` caps take the scheduler's defaults
/// (`max_per_host = 1`, at most `ceil(replicas / 2)` per switch when the
/// datacenter has two or more switches that fit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Strategy.
    #[serde(default)]
    pub strategy: PlacementStrategy,
    /// Hard cap of replicas on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_host: Option<u32>,
    /// Hard cap of replicas on one rack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_rack: Option<u32>,
    /// Hard cap of replicas on one switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_switch: Option<u32>,
    /// Host labels that must all match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required_labels: BTreeMap<String, String>,
}

/// A host label every host carries implicitly, valued with its name: a
/// group requiring it is pinned to that host (snapshot clones, whose image
/// exists only in the source host's engine).
pub const HOST_LABEL: &str = "jdos.io/host";

/// What each container of a group runs and needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerTemplate {
    /// Image reference.
    pub image: String,
    /// Command and arguments (empty = the image's default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Resources requested per container.
    pub resources: Resources,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Network zone the container's IP must come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_zone: Option<String>,
    /// A specific network (VLAN) by name, overriding the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// How cpu, memory, pids and files are limited.
    #[serde(default)]
    pub isolation: Isolation,
    /// Mounts per storage tier (L0 tmpfs, L1/L2 host paths, L3 volumes).
    #[serde(default)]
    pub storage: StorageSpec,
    /// Health check run by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Seconds between SIGTERM and SIGKILL on stop (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_secs: Option<u32>,
    /// Lifecycle hooks that replay the template's registration.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
}

/// Lifecycle hooks of a group: what the first container's registration did
/// (database grants, load-balancer membership, DNS, monitoring), replayed for
/// every container the platform starts or stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// Before the container is created (e.g. a database grant for its IP).
    /// A failure fails the step and nothing is left half-created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<Hook>,
    /// After it is running and healthy (LB member, DNS record, registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    /// Before it is stopped or removed (deregister).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
}

/// Built-in hooks the platform runs itself.
pub const BUILTIN_HOOKS: &[&str] = &["log", "noop"];
/// Longest time one hook attempt may take.
pub const MAX_HOOK_TIMEOUT_MS: u64 = 60_000;
/// Most retries of one hook.
pub const MAX_HOOK_RETRIES: u32 = 10;

impl Hooks {
    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.pre_start.is_empty() && self.post_start.is_empty() && self.pre_stop.is_empty()
    }

    /// The phases with their names, in the order they run.
    pub fn phases(&self) -> [(&'static str, &[Hook]); 3] {
        [
            ("pre_start", &self.pre_start),
            ("post_start", &self.post_start),
            ("pre_stop", &self.pre_stop),
        ]
    }

    /// Adds to `e` every problem of these hooks, each under its field below
    /// `at` (e.g. `groups[0].template.hooks.pre_start[1].url`): names present
    /// and unique within their phase, webhook URLs `http://host[:port]/…`
    /// (the server has no TLS client), methods and headers valid, built-ins
    /// known, timeouts and retries in range. The one check for specs, group
    /// records and operations alike.
    pub fn check(&self, e: &mut ValidationErrors, at: &str) {
        for (phase, list) in self.phases() {
            let mut names = std::collections::BTreeSet::new();
            for (i, h) in list.iter().enumerate() {
                let at = format!("{at}.{phase}[{i}]");
                h.check(e, &at);
                if !h.name.is_empty() && !names.insert(h.name.as_str()) {
                    e.add(
                        format!("{at}.name"),
                        "duplicate",
                        format!(
                            "hook name {:?} is used twice in {phase}: names must be unique within a phase",
                            h.name
                        ),
                    );
                }
            }
        }
    }
}

impl Hook {
    fn check(&self, e: &mut ValidationErrors, at: &str) {
        let name = &self.name;
        if name.trim().is_empty() {
            e.add(format!("{at}.name"), "required", "a hook needs a name");
        } else if name.len() > 63 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            e.add(
                format!("{at}.name"),
                "invalid_name",
                "a hook name is at most 63 characters, without spaces",
            );
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_HOOK_TIMEOUT_MS {
            e.add(
                format!("{at}.timeout_ms"),
                "out_of_range",
                format!("timeout_ms must be 1-{MAX_HOOK_TIMEOUT_MS}"),
            );
        }
        if self.retries > MAX_HOOK_RETRIES {
            e.add(
                format!("{at}.retries"),
                "out_of_range",
                format!("retries must be at most {MAX_HOOK_RETRIES}"),
            );
        }
        match &self.action {
            HookAction::Webhook {
                url,
                method,
                headers,
            } => {
                if let Err(why) = check_http_url(url) {
                    e.add(format!("{at}.url"), "invalid_url", why);
                }
                if method.is_empty() || !method.bytes().all(is_tchar) {
                    e.add(
                        format!("{at}.method"),
                        "invalid_method",
                        format!("{method:?} is not an HTTP method"),
                    );
                }
                for (k, v) in headers {
                    if k.is_empty() || !k.bytes().all(is_tchar) {
                        e.add(
                            format!("{at}.headers.{k}"),
                            "invalid_header",
                            format!("{k:?} is not a valid header name"),
                        );
                    } else if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                        e.add(
                            format!("{at}.headers.{k}"),
                            "invalid_header",
                            "header values must be visible ASCII",
                        );
                    }
                }
            }
            HookAction::Builtin { builtin, .. } => {
                if !BUILTIN_HOOKS.contains(&builtin.as_str()) {
                    e.add(
                        format!("{at}.builtin"),
                        "unknown_builtin",
                        format!(
                            "unknown built-in hook {builtin:?}: this server knows {}",
                            BUILTIN_HOOKS.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// A token character of RFC 9110 (methods and header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `http://host[:port][/path…]`, with no spaces or control characters.
fn check_http_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not a URL: it contains spaces"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} is not a URL"));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "webhook URLs must be http:// (got {scheme}://): this server has no TLS client"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("{url:?} is not a URL: unclosed '['")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".to_string());
    }
    if let Some(p) = port {
        if !p.is_empty() && p.parse::<u16>().is_err() {
            return Err(format!("{url:?} is not a URL: bad port {p:?}"));
        }
    }
    Ok(())
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Name, unique within its phase (shown in task timelines and events).
    pub name: String,
    /// What it does.
    #[serde(flatten)]
    pub action: HookAction,
    /// Time allowed for one attempt, in ms (default 5000).
    #[serde(default = "default_hook_timeout")]
    pub timeout_ms: u64,
    /// Attempts after the first one (default 2).
    #[serde(default = "default_hook_retries")]
    pub retries: u32,
}

fn default_hook_timeout() -> u64 {
    5_000
}

fn default_hook_retries() -> u32 {
    2
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum HookAction {
    /// An HTTP call; the body is a JSON description of the container
    /// (identity, IP, host, group, phase). Any 2xx answer is success.
    Webhook {
        /// `http://` URL.
        url: String,
        /// Method (default POST).
        #[serde(default = "default_hook_method")]
        method: String,
        /// Extra headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    /// A built-in action of the platform (`dns`, `lb`, `monitoring` …), with
    /// its parameters.
    Builtin {
        /// Built-in name.
        builtin: String,
        /// Parameters.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
    },
}

fn default_hook_method() -> String {
    "POST".to_string()
}

/// A group of identical containers of one app in one env and datacenter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// App name.
    pub app: String,
    /// Environment.
    pub env: String,
    /// Group name.
    pub name: String,
    /// Datacenter the group runs in.
    pub datacenter: String,
    /// Desired replicas.
    pub replicas: u32,
    /// What each container runs.
    pub template: ContainerTemplate,
    /// Placement policy.
    #[serde(default)]
    pub placement: Placement,
    /// Autoscaling policy, interpreted by the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingPolicy>,
}

impl Group {
    /// Its key.
    pub fn key(&self) -> GroupKey {
        GroupKey::new(&self.app, &self.env, &self.name)
    }
}

impl Validate for Group {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        check_name(&mut e, "app", &self.app);
        check_name(&mut e, "env", &self.env);
        check_name(&mut e, "name", &self.name);
        check_name(&mut e, "datacenter", &self.datacenter);
        if self.replicas > MAX_REPLICAS {
            e.add(
                "replicas",
                "out_of_range",
                format!(
                    "replicas {} exceeds the maximum of {MAX_REPLICAS}",
                    self.replicas
                ),
            );
        }
        let t = &self.template;
        if t.image.trim().is_empty() {
            e.add("template.image", "required", "an image is required");
        } else if t.image.chars().any(char::is_whitespace) {
            e.add(
                "template.image",
                "invalid_image",
                "image must not contain spaces",
            );
        }
        if t.resources.cpu_millis == 0 {
            e.add(
                "template.resources.cpu_millis",
                "out_of_range",
                "must be greater than 0",
            );
        }
        if t.resources.memory_bytes < (4 << 20) {
            e.add(
                "template.resources.memory_bytes",
                "out_of_range",
                "must be at least 4 MiB (Docker's minimum)",
            );
        }
        for (i, p) in t.ports.iter().enumerate() {
            if *p == 0 {
                e.add(
                    format!("template.ports[{i}]"),
                    "out_of_range",
                    "port must be 1-65535",
                );
            }
        }
        for k in t.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                e.add(
                    format!("template.env.{k}"),
                    "invalid_env",
                    "environment variable names must be non-empty and contain no '=' or NUL",
                );
            }
        }
        t.hooks.check(&mut e, "template.hooks");
        if let Some(z) = &t.network_zone {
            check_name(&mut e, "template.network_zone", z);
        }
        if let Some(n) = &t.network {
            check_name(&mut e, "template.network", n);
        }
        let p = &self.placement;
        for (field, cap) in [
            ("placement.max_per_host", p.max_per_host),
            ("placement.max_per_rack", p.max_per_rack),
            ("placement.max_per_switch", p.max_per_switch),
        ] {
            if cap == Some(0) {
                e.add(field, "out_of_range", "a cap must be at least 1");
            }
        }
        for (k, v) in &p.required_labels {
            check_label(&mut e, "placement.required_labels", k, v);
        }
        e.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(name: &str, url: &str) -> Hook {
        Hook {
            name: name.into(),
            action: HookAction::Webhook {
                url: url.into(),
                method: "POST".into(),
                headers: BTreeMap::new(),
            },
            timeout_ms: 1_000,
            retries: 1,
        }
    }

    fn problems(h: &Hooks) -> Vec<(String, String)> {
        let mut e = ValidationErrors::new();
        h.check(&mut e, "t.hooks");
        e.errors
            .iter()
            .map(|x| (x.field.clone(), x.code.clone()))
            .collect()
    }

    #[test]
    fn http_urls_with_a_host_pass_and_others_name_their_field() {
        for ok in [
            "http://lb.local/members",
            "http://10.0.0.1:8080",
            "http://[::1]:80/x?y=1",
            "HTTP://user@host/x",
        ] {
            assert_eq!(check_http_url(ok), Ok(()), "{ok}");
        }
        let hooks = Hooks {
            pre_start: vec![
                webhook("tls", "https://db.local/grant"),
                webhook("nohost", "http:///x"),
                webhook("port", "http://h:99999/"),
                webhook("space", "http://h/a b"),
            ],
            ..Default::default()
        };
        let p = problems(&hooks);
        for i in 0..4 {
            assert!(
                p.contains(&(format!("t.hooks.pre_start[{i}].url"), "invalid_url".into())),
                "{p:?}"
            );
        }
    }

    #[test]
    fn names_limits_methods_headers_and_builtins_are_checked() {
        let mut bad = webhook("dns", "http://h/");
        bad.timeout_ms = MAX_HOOK_TIMEOUT_MS + 1;
        bad.retries = MAX_HOOK_RETRIES + 1;
        if let HookAction::Webhook {
            method, headers, ..
        } = &mut bad.action
        {
            *method = "PO ST".into();
            headers.insert("X Bad".into(), "v".into());
        }
        let hooks = Hooks {
            post_start: vec![webhook("dns", "http://h/"), bad],
            pre_stop: vec![Hook {
                name: "x".into(),
                action: HookAction::Builtin {
                    builtin: "dns".into(),
                    params: BTreeMap::new(),
                },
                timeout_ms: 1,
                retries: 0,
            }],
            ..Default::default()
        };
        let p = problems(&hooks);
        let at = "t.hooks.post_start[1]";
        for (field, code) in [
            (format!("{at}.name"), "duplicate"),
            (format!("{at}.timeout_ms"), "out_of_range"),
            (format!("{at}.retries"), "out_of_range"),
            (format!("{at}.method"), "invalid_method"),
            (format!("{at}.headers.X Bad"), "invalid_header"),
            ("t.hooks.pre_stop[0].builtin".into(), "unknown_builtin"),
        ] {
            assert!(p.contains(&(field.clone(), code.into())), "{field}: {p:?}");
        }
        assert_eq!(p.len(), 6, "{p:?}");
    }
}
