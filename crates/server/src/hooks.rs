//! Lifecycle hooks: the template's registration (database grants, load
//! balancer membership, DNS, monitoring) replayed for every container the
//! platform starts or stops.
//!
//! A hook is a webhook (an HTTP call whose JSON body describes the container,
//! any 2xx answer is success, each attempt bounded by the hook's timeout,
//! failed attempts retried with exponential back-off) or a built-in of the
//! platform (`log`, `noop` now; DNS and LB built-ins come with their issues).
//! Every run is recorded as an event (`hook.pre_start` …) with its outcome.
//! Webhooks may be called more than once for one container (a retried step,
//! a resumed task), so their receivers must be idempotent.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use jdos_types::group::{Hook, HookAction, Hooks};
use jdos_types::{Container, ValidationErrors};
use serde::{Deserialize, Serialize};

use crate::events::EventDraft;
use crate::state::AppState;

/// Built-in hook actions this server knows; the limits of a hook. A spec
/// breaking them is refused when it is written ([`Hooks::check`]).
pub use jdos_types::group::{BUILTIN_HOOKS as BUILTINS, MAX_HOOK_RETRIES, MAX_HOOK_TIMEOUT_MS};

/// When a hook runs in a container's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPhase {
    /// Before the container is created on its host.
    PreStart,
    /// After it runs (and is healthy).
    PostStart,
    /// Before it is stopped or removed.
    PreStop,
}

impl HookPhase {
    /// Lowercase name (`pre_start` …), as in specs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreStart => "pre_start",
            HookPhase::PostStart => "post_start",
            HookPhase::PreStop => "pre_stop",
        }
    }

    /// The hooks of this phase.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        match self {
            HookPhase::PreStart => &hooks.pre_start,
            HookPhase::PostStart => &hooks.post_start,
            HookPhase::PreStop => &hooks.pre_stop,
        }
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks every hook of a template ([`Hooks::check`]); `prefix` is the
/// dotted path of the hooks in the input (e.g. `groups[0].template.hooks`),
/// so each error names its offending field.
pub fn validate_hooks(prefix: &str, hooks: &Hooks) -> Result<(), ValidationErrors> {
    let mut e = ValidationErrors::new();
    hooks.check(&mut e, prefix);
    e.into_result()
}

/// The JSON body a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPayload {
    /// Hook name.
    pub hook: String,
    /// `pre_start`, `post_start` or `pre_stop`.
    pub phase: HookPhase,
    /// Container identity `app/env/group/index`.
    pub container: String,
    /// App.
    pub app: String,
    /// Environment.
    pub env: String,
    /// Group name.
    pub group: String,
    /// Index within the group.
    pub index: u32,
    /// Datacenter.
    pub datacenter: String,
    /// Its IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Network of the IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Host it is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Image.
    pub image: String,
    /// Task that ran the hook, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl HookPayload {
    fn new(hook: &Hook, phase: HookPhase, c: &Container, task: Option<&str>) -> Self {
        HookPayload {
            hook: hook.name.clone(),
            phase,
            container: c.id.to_string(),
            app: c.id.app.clone(),
            env: c.id.env.clone(),
            group: c.id.group.clone(),
            index: c.id.index,
            datacenter: c.datacenter.clone(),
            ip: c.ip,
            network: c.network.clone(),
            host: c.host.clone(),
            image: c.image.clone(),
            task: task.map(str::to_string),
            attempt: 1,
        }
    }
}

/// A hook that failed all its attempts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{phase} hook {hook:?} failed for {container} after {attempts} attempt(s): {reason}")]
pub struct HookError {
    /// Hook name.
    pub hook: String,
    /// Phase.
    pub phase: HookPhase,
    /// Container identity (`app/env/group/index`).
    pub container: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's failure (status, timeout, connection error).
    pub reason: String,
}

/// Who runs a phase's hooks, for events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookOrigin {
    /// Event actor (the task's actor, or `system`).
    pub actor: String,
    /// Task id.
    pub task: Option<String>,
    /// Department of the app, so that its developers see the events.
    pub department: Option<String>,
}

/// Runs hooks. Cheap to clone; one per server.
#[derive(Clone)]
pub struct HookExecutor {
    http: reqwest::Client,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl std::fmt::Debug for HookExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookExecutor")
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

impl Default for HookExecutor {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

/// Most hooks of one phase run at once across containers.
const PARALLEL_HOOKS: usize = 32;

impl HookExecutor {
    /// An executor whose retries wait `backoff_initial`, doubled after each
    /// failed attempt up to `backoff_max`.
    pub fn new(backoff_initial: Duration, backoff_max: Duration) -> Self {
        // Hooks call the platform's own internal services (DB grant, LB,
        // registry): never through a proxy from the environment.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain http client builds");
        HookExecutor {
            http,
            backoff_initial,
            backoff_max,
        }
    }

    /// Runs every hook of `phase` for one container, in order, stopping at
    /// the first that fails all its attempts. Each run is an event.
    #[tracing::instrument(skip_all, fields(container = %c.id, phase = %phase))]
    pub async fn run(
        &self,
        st: &AppState,
        hooks: &Hooks,
        phase: HookPhase,
        c: &Container,
        origin: &HookOrigin,
    ) -> Result<(), HookError> {
        for hook in phase.of(hooks) {
            let result = self.run_one(hook, phase, c, origin.task.as_deref()).await;
            let (ok, msg) = match &result {
                Ok(m) => (true, m.clone()),
                Err(e) => (false, e.reason.clone()),
            };
            let mut draft = EventDraft::new(
                &origin.actor,
                &format!("hook.{}", phase.as_str()),
                "container",
                &c.id.to_string(),
            );
            draft.app = Some(c.id.app.clone());
            draft.department = origin.department.clone();
            let text = match &origin.task {
                Some(t) => format!("hook {} (task {t}): {msg}", hook.name),
                None => format!("hook {}: {msg}", hook.name),
            };
            let draft = if ok {
                draft.message(text)
            } else {
                draft.failed(text)
            };
            if let Err(e) = st.events().record(st.store(), draft, st.now_ms()).await {
                tracing::warn!(error = %e, "cannot record a hook event");
            }
            result?;
        }
        Ok(())
    }

    /// Runs `phase` for many containers, at most [`PARALLEL_HOOKS`] at once;
    /// answers each container's outcome in input order.
    pub async fn run_many(
        &self,
        st: &AppState,
        hooks: &Hooks,
        phase: HookPhase,
        containers: &[Container],
        origin: &HookOrigin,
    ) -> Vec<Result<(), HookError>> {
        if phase.of(hooks).is_empty() {
            return containers.iter().map(|_| Ok(())).collect();
        }
        let hooks = Arc::new(hooks.clone());
        let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL_HOOKS));
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in containers.iter().enumerate() {
            let (me, st, hooks, sem, c, origin) = (
                self.clone(),
                st.clone(),
                hooks.clone(),
                sem.clone(),
                c.clone(),
                origin.clone(),
            );
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, me.run(&st, &hooks, phase, &c, &origin).await)
            });
        }
        let mut out: Vec<Option<Result<(), HookError>>> = vec![None; containers.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, r)) => out[i] = Some(r),
                Err(e) => tracing::error!(error = %e, "a hook run panicked"),
            }
        }
        out.into_iter()
            .zip(containers)
            .map(|(r, c)| {
                r.unwrap_or_else(|| {
                    Err(HookError {
                        hook: String::new(),
                        phase,
                        container: c.id.to_string(),
                        attempts: 0,
                        reason: "the hook run panicked".to_string(),
                    })
                })
            })
            .collect()
    }

    /// One hook with its retries; `Ok` carries what the event says.
    async fn run_one(
        &self,
        hook: &Hook,
        phase: HookPhase,
        c: &Container,
        task: Option<&str>,
    ) -> Result<String, HookError> {
        let fail = |attempts, reason| HookError {
            hook: hook.name.clone(),
            phase,
            container: c.id.to_string(),
            attempts,
            reason,
        };
        match &hook.action {
            HookAction::Builtin { builtin, params } => match builtin.as_str() {
                // The event this run records is the log line.
                "log" => Ok(params
                    .get("message")
                    .cloned()
                    .unwrap_or_else(|| format!("{} {}", phase.as_str(), c.id))),
                "noop" => Ok("noop".to_string()),
                other => Err(fail(
                    0,
                    format!(
                        "unknown built-in {other:?} (this server knows {})",
                        BUILTINS.join(", ")
                    ),
                )),
            },
            HookAction::Webhook {
                url,
                method,
                headers,
            } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|_| fail(0, format!("{method:?} is not an HTTP method")))?;
                let timeout = Duration::from_millis(hook.timeout_ms.max(1));
                let mut payload = HookPayload::new(hook, phase, c, task);
                let attempts = hook.retries.saturating_add(1);
                let mut delay = self.backoff_initial;
                let mut last = String::new();
                for attempt in 1..=attempts {
                    payload.attempt = attempt;
                    let mut req = self
                        .http
                        .request(method.clone(), url)
                        .timeout(timeout)
                        .json(&payload);
                    for (k, v) in headers {
                        req = req.header(k, v);
                    }
                    match req.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            return Ok(format!(
                                "{} {url} answered {} (attempt {attempt}/{attempts})",
                                method,
                                resp.status().as_u16()
                            ));
                        }
                        Ok(resp) => {
                            let status = resp.status();
                            let body = resp.text().await.unwrap_or_default();
                            let body: String = body.trim().chars().take(200).collect();
                            last = if body.is_empty() {
                                format!("{method} {url} answered {}", status.as_u16())
                            } else {
                                format!("{method} {url} answered {}: {body}", status.as_u16())
                            };
                        }
                        Err(e) if e.is_timeout() => {
                            last = format!("{method} {url} timed out after {} ms", hook.timeout_ms);
                        }
                        Err(e) => {
                            last = format!("{method} {url} failed: {}", error_chain(&e));
                        }
                    }
                    tracing::debug!(hook = %hook.name, attempt, reason = %last, "hook attempt failed");
                    if attempt < attempts {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.backoff_max);
                    }
                }
                Err(fail(attempts, last))
            }
        }
    }
}

/// An error with its sources, `a: b: c` (reqwest's own text hides the cause,
/// e.g. "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn webhook(name: &str, url: &str) -> Hook {
        Hook {
            name: name.to_string(),
            action: HookAction::Webhook {
                url: url.to_string(),
                method: "POST".to_string(),
                headers: BTreeMap::new(),
            },
            timeout_ms: 1000,
            retries: 1,
        }
    }

    fn builtin(name: &str, b: &str) -> Hook {
        Hook {
            name: name.to_string(),
            action: HookAction::Builtin {
                builtin: b.to_string(),
                params: BTreeMap::new(),
            },
            timeout_ms: 1000,
            retries: 0,
        }
    }

    #[test]
    fn valid_hooks_pass() {
        let hooks = Hooks {
            pre_start: vec![webhook("grant", "http://127.0.0.1:9000/grant")],
            post_start: vec![builtin("log", "log"), builtin("n", "noop")],
            pre_stop: vec![webhook("dereg", "http://lb.internal/members")],
        };
        validate_hooks("template.hooks", &hooks).unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad_method = webhook("m", "http://x/");
        if let HookAction::Webhook {
            method, headers, ..
        } = &mut bad_method.action
        {
            *method = "GE T".to_string();
            headers.insert("bad header".to_string(), "v".to_string());
        }
        let mut slow = builtin("slow", "noop");
        slow.timeout_ms = 0;
        slow.retries = 99;
        let hooks = Hooks {
            pre_start: vec![
                webhook("tls", "https://db/grant"),
                webhook("tls", "not a url"),
                builtin("", "dns-magic"),
            ],
            post_start: vec![bad_method, slow],
            pre_stop: vec![],
        };
        let errs = validate_hooks("t.hooks", &hooks).unwrap_err();
        let got: Vec<(&str, &str)> = errs
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("t.hooks.pre_start[0].url", "invalid_url"),
                ("t.hooks.pre_start[1].url", "invalid_url"),
                ("t.hooks.pre_start[1].name", "duplicate"),
                ("t.hooks.pre_start[2].name", "required"),
                ("t.hooks.pre_start[2].builtin", "unknown_builtin"),
                ("t.hooks.post_start[0].method", "invalid_method"),
                ("t.hooks.post_start[0].headers.bad header", "invalid_header"),
                ("t.hooks.post_start[1].timeout_ms", "out_of_range"),
                ("t.hooks.post_start[1].retries", "out_of_range"),
            ]
        );
        assert!(errs.errors[0].message.contains("http://"), "{errs}");
    }
}
