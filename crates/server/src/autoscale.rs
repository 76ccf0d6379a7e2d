//! The autoscaling controller: every sync period, for every group with an
//! `autoscaling` policy, observe its containers and their metric in the
//! metrics store, ask the group's [`Autoscaler`] for a replica count, and
//! when it differs from the group's, submit a `scale` task (actor
//! `autoscaler`) with an `autoscale.decision` event carrying the reason.
//!
//! One [`Autoscaler`] per group lives in memory; it is rebuilt when the
//! group's policy changes and then warmed up from the metrics store's
//! history of the group's load, so that the predictive mode does not start
//! cold after a restart. Decisions that keep the count are not events (they
//! would be one per group every 15 s) but are kept as the group's status
//! ([`Controller::status`], `GET /api/v1/autoscaling/{app}/{env}/{group}`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_autoscaler::{Autoscaler, Observation, PodMetric, Policy};
use jdos_monitor::{Aggregation, BucketFn, RangeQuery, Selector};
use jdos_store::json;
use jdos_types::autoscaling::{AutoscaleDecision, AutoscaleStatus};
use jdos_types::container::DesiredState;
use jdos_types::metrics::names;
use jdos_types::{keys, App, Container, ContainerPhase, Group, GroupKey, InstanceId, UnixMillis};
use jdos_workflow::TaskFilter;
use tokio::sync::watch;

use crate::events::EventDraft;
use crate::ops::ScaleParams;
use crate::state::{AppState, WeakState};

/// The actor of the controller's tasks and events.
pub const ACTOR: &str = "autoscaler";
/// The action of the event recorded with each scale decision.
pub const DECISION_EVENT: &str = "autoscale.decision";

/// How the controller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Time between evaluations of every group (default 15 s, the HPA's).
    pub sync_period: Duration,
    /// Each container's metric is its mean over this window (default 60 s:
    /// six agent pushes).
    pub metric_window: Duration,
    /// How far back the load history is read when a group's autoscaler is
    /// (re)built (default 8 days: a weekly season and a day of trend).
    pub history: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            sync_period: Duration::from_secs(15),
            metric_window: Duration::from_secs(60),
            history: Duration::from_secs(8 * 24 * 3600),
        }
    }
}

/// A group's autoscaler and what it last decided.
struct GroupState {
    policy: jdos_types::AutoscalingPolicy,
    autoscaler: Autoscaler,
    last: Option<AutoscaleDecision>,
}

/// The controller (one per server; cheap to share).
pub struct Controller {
    config: ControllerConfig,
    groups: Mutex<HashMap<GroupKey, GroupState>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one evaluation of one group did (returned by [`Controller::tick`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The group.
    pub group: GroupKey,
    /// The evaluation.
    pub decision: AutoscaleDecision,
}

impl Controller {
    /// A controller with `config`.
    pub fn new(config: ControllerConfig) -> Self {
        Controller {
            config,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> ControllerConfig {
        self.config
    }

    /// Runs [`Controller::tick`] every sync period until `stop` turns true
    /// or the server state is gone.
    pub fn start(
        self: &Arc<Self>,
        st: WeakState,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            // A zero period would make tokio's interval panic; 100 ms is far
            // below any useful sync anyway.
            let period = me.config.sync_period.max(Duration::from_millis(100));
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
                let Some(st) = st.upgrade() else { return };
                if let Err(e) = me.tick(&st).await {
                    tracing::warn!(error = %e, "autoscaling sync failed");
                }
            }
        })
    }

    /// The status of one group (`None`: no such group or no policy).
    pub async fn status(
        &self,
        st: &AppState,
        key: &GroupKey,
    ) -> Result<Option<AutoscaleStatus>, jdos_store::StoreError> {
        let Some(g) = crate::kv::get_json::<Group>(st.store(), &keys::group(key)).await? else {
            return Ok(None);
        };
        let Some(policy) = g.value.autoscaling.as_ref() else {
            return Ok(None);
        };
        let groups = self.groups.lock().expect("autoscaler map poisoned");
        let last = groups.get(key).and_then(|s| s.last.clone());
        Ok(Some(AutoscaleStatus {
            app: key.app.clone(),
            env: key.env.clone(),
            group: key.group.clone(),
            policy: policy.normalized(),
            replicas: g.value.replicas,
            last,
        }))
    }

    /// The status of every group with a policy (optionally of one app).
    pub async fn statuses(
        &self,
        st: &AppState,
        app: Option<&str>,
    ) -> Result<Vec<AutoscaleStatus>, jdos_store::StoreError> {
        let groups: Vec<Group> = json::list_all(st.store(), keys::GROUPS).await?;
        let map = self.groups.lock().expect("autoscaler map poisoned");
        Ok(groups
            .into_iter()
            .filter(|g| app.is_none_or(|a| g.app == a))
            .filter_map(|g| {
                let policy = g.autoscaling.as_ref()?.normalized();
                let key = g.key();
                Some(AutoscaleStatus {
                    last: map.get(&key).and_then(|s| s.last.clone()),
                    app: key.app,
                    env: key.env,
                    group: key.group,
                    policy,
                    replicas: g.replicas,
                })
            })
            .collect())
    }

    /// One sync: evaluates every group with a policy at the state's clock.
    /// A group whose evaluation fails is reported as such and does not stop
    /// the others.
    pub async fn tick(&self, st: &AppState) -> Result<Vec<Evaluated>, jdos_store::StoreError> {
        self.tick_at(st, st.now_ms()).await
    }

    /// [`Controller::tick`] at an explicit time (tests drive the clock).
    pub async fn tick_at(
        &self,
        st: &AppState,
        now: UnixMillis,
    ) -> Result<Vec<Evaluated>, jdos_store::StoreError> {
        let groups: Vec<Group> = json::list_all(st.store(), keys::GROUPS).await?;
        let with_policy: Vec<Group> = groups
            .into_iter()
            .filter(|g| g.autoscaling.is_some())
            .collect();
        {
            // Forget groups that lost their policy or were deleted.
            let live: std::collections::HashSet<GroupKey> =
                with_policy.iter().map(Group::key).collect();
            self.groups
                .lock()
                .expect("autoscaler map poisoned")
                .retain(|k, _| live.contains(k));
        }
        let mut out = Vec::with_capacity(with_policy.len());
        for g in with_policy {
            let key = g.key();
            let decision = match self.evaluate(st, &g, now).await {
                Ok(d) => d,
                Err(reason) => {
                    tracing::warn!(group = %key, %reason, "autoscaling evaluation failed");
                    AutoscaleDecision {
                        at_ms: now,
                        current: g.replicas,
                        desired: g.replicas,
                        mode_used: String::new(),
                        floor: 0,
                        load: None,
                        containers: 0,
                        ready: 0,
                        missing: 0,
                        action: "error".into(),
                        task: None,
                        reason,
                    }
                }
            };
            if let Some(s) = self
                .groups
                .lock()
                .expect("autoscaler map poisoned")
                .get_mut(&key)
            {
                s.last = Some(decision.clone());
            }
            out.push(Evaluated {
                group: key,
                decision,
            });
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(group = %g.key()))]
    async fn evaluate(
        &self,
        st: &AppState,
        g: &Group,
        now: UnixMillis,
    ) -> Result<AutoscaleDecision, String> {
        let key = g.key();
        let spec = g
            .autoscaling
            .as_ref()
            .expect("only groups with a policy are evaluated")
            .normalized();
        let policy = serde_json::to_value(&spec)
            .map_err(|e| e.to_string())
            .and_then(|v| Policy::from_json(&v).map_err(|e| e.to_string()))
            .map_err(|e| format!("invalid autoscaling policy: {e}"))?;
        let cpu_cores = g.template.resources.cpu_millis as f64 / 1000.0;
        let metric = MetricSource::of(&policy, cpu_cores)?;

        // (Re)build the group's autoscaler when new or its policy changed.
        let rebuild = {
            let map = self.groups.lock().expect("autoscaler map poisoned");
            map.get(&key).is_none_or(|s| s.policy != spec)
        };
        if rebuild {
            let mut a = Autoscaler::new(policy.clone());
            let step_ms = a.forecaster().config().step_seconds.max(1) * 1000;
            let history = metric.history(st, &key, now, self.config.history, step_ms);
            tracing::info!(
                samples = history.len(),
                "autoscaler (re)built and warmed up"
            );
            a.warm_up(history);
            self.groups.lock().expect("autoscaler map poisoned").insert(
                key.clone(),
                GroupState {
                    policy: spec.clone(),
                    autoscaler: a,
                    last: None,
                },
            );
        }

        // Live containers and their metric over the window.
        let containers: Vec<Container> =
            json::list_all(st.store(), &keys::containers_of_group(&key))
                .await
                .map_err(|e| format!("cannot read the group's containers: {e}"))?;
        let live: Vec<&Container> = containers
            .iter()
            .filter(|c| c.desired != DesiredState::Deleted)
            .collect();
        let window_ms = self.config.metric_window.as_millis() as u64;
        let values = metric.per_instance(st, &key, now, window_ms);
        let pods: Vec<PodMetric> = live
            .iter()
            .map(|c| PodMetric {
                ready: c.phase == ContainerPhase::Running,
                value: instance_value(&values, &c.id),
            })
            .collect();
        let missing = pods.iter().filter(|p| p.value.is_none()).count() as u32;
        let ready = pods.iter().filter(|p| p.ready).count() as u32;
        let load = measured_load(&pods, policy.metric.is_utilization());

        let mut d = {
            let mut map = self.groups.lock().expect("autoscaler map poisoned");
            let s = map.get_mut(&key).expect("built above");
            s.autoscaler.decide(
                now,
                &Observation {
                    current_replicas: g.replicas,
                    pods: &pods,
                },
            )
        };
        // Without any measurement, a lower count is the missing-metric rules'
        // guess, not evidence: never scale in blind.
        if load.is_none() && d.desired < g.replicas {
            d.reason = format!(
                "{}; no container has a metric sample in the last {} s: no scale-in, keep {}",
                d.reason,
                window_ms / 1000,
                g.replicas
            );
            d.desired = g.replicas;
        }
        let mode_used = serde_json::to_value(d.mode_used)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut out = AutoscaleDecision {
            at_ms: now,
            current: g.replicas,
            desired: d.desired,
            mode_used,
            floor: d.floor,
            load,
            containers: live.len() as u32,
            ready,
            missing,
            action: "keep".into(),
            task: None,
            reason: d.reason,
        };
        if d.desired == g.replicas {
            return Ok(out);
        }
        let Some(engine) = st.engine() else {
            out.action = "error".into();
            out.reason = format!(
                "{}; the workflow engine is not running on this server",
                out.reason
            );
            return Ok(out);
        };
        // One task per app at a time: a scale on top of a running deploy,
        // migrate or earlier scale would be decided on stale replicas.
        let active = engine
            .list(&TaskFilter {
                app: Some(key.app.clone()),
                active_only: true,
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot list the app's tasks: {e}"))?;
        if let Some(t) = active.first() {
            out.action = "blocked".into();
            out.task = Some(t.id.clone());
            out.reason = format!(
                "{}; not applied: task {} ({}) of app {} is active",
                out.reason, t.id, t.kind, key.app
            );
            return Ok(out);
        }
        let department = crate::kv::get_json::<App>(st.store(), &keys::app(&key.app))
            .await
            .map_err(|e| format!("cannot read app {}: {e}", key.app))?
            .map(|a| a.value.department);
        let mut req = ScaleParams {
            group: key.clone(),
            replicas: d.desired,
            timeout_secs: None,
        }
        .task(ACTOR);
        req.department = department.clone();
        let task = engine
            .submit(req)
            .await
            .map_err(|e| format!("cannot submit the scale task: {e}"))?;
        out.action = "scale".into();
        out.task = Some(task.id.clone());
        let mut ev = EventDraft::new(ACTOR, DECISION_EVENT, "group", &key.to_string());
        ev.app = Some(key.app.clone());
        ev.department = department;
        let ev = ev.message(format!(
            "{} → {} replicas (task {}): {}",
            g.replicas, d.desired, task.id, out.reason
        ));
        if let Err(e) = st.events().record(st.store(), ev, now).await {
            tracing::warn!(error = %e, "cannot record the autoscaling decision");
        }
        tracing::info!(task = %task.id, from = g.replicas, to = d.desired, "autoscaling scale submitted");
        Ok(out)
    }
}

/// Where a group's metric comes from in the metrics store.
enum MetricSource {
    /// Cpu cores used, divided by the container's cpu request.
    Cpu { request_cores: f64 },
    /// A custom per-instance metric, as is.
    Custom { name: String },
}

impl MetricSource {
    fn of(policy: &Policy, request_cores: f64) -> Result<Self, String> {
        match &policy.metric {
            jdos_autoscaler::Metric::Cpu { .. } => {
                if request_cores <= 0.0 {
                    return Err(
                        "cpu autoscaling needs a cpu request on the group's template".into(),
                    );
                }
                Ok(MetricSource::Cpu { request_cores })
            }
            jdos_autoscaler::Metric::Custom { name, .. } => {
                Ok(MetricSource::Custom { name: name.clone() })
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            MetricSource::Cpu { .. } => names::CONTAINER_CPU_USAGE,
            MetricSource::Custom { name } => name,
        }
    }

    /// Metric value → value per instance in the policy's unit.
    fn scale(&self, v: f64) -> f64 {
        match self {
            MetricSource::Cpu { request_cores } => v / request_cores,
            MetricSource::Custom { .. } => v,
        }
    }

    fn selector(&self, key: &GroupKey) -> Selector {
        Selector::metric(self.name())
            .eq("app", &key.app)
            .eq("group", &key.group)
    }

    /// Each instance's mean over `[now - window, now)`, by `instance` label.
    fn per_instance(
        &self,
        st: &AppState,
        key: &GroupKey,
        now: UnixMillis,
        window_ms: u64,
    ) -> BTreeMap<String, f64> {
        let q = RangeQuery {
            selector: self.selector(key),
            start: now as i64 - window_ms as i64,
            end: now as i64,
            step: window_ms.max(1) as i64,
            bucket: BucketFn::Mean,
            aggregation: Aggregation::Avg,
        };
        let db = st.tsdb().read();
        match db.query_by(&q, Some("instance")) {
            Ok(groups) => groups
                .into_iter()
                .filter_map(|g| {
                    let v = g.points.last()?.value;
                    Some((g.group?, self.scale(v)))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "metrics query failed: every container counts as missing");
                BTreeMap::new()
            }
        }
    }

    /// The group's load (sum over instances, policy units) per step, oldest
    /// first, over `[now - history, now)`.
    fn history(
        &self,
        st: &AppState,
        key: &GroupKey,
        now: UnixMillis,
        history: Duration,
        step_ms: u64,
    ) -> Vec<(UnixMillis, f64)> {
        let end = now as i64;
        let start = (end - history.as_millis() as i64).max(0);
        // Whole steps, so that the buckets line up with the forecaster's.
        let start = start - start.rem_euclid(step_ms as i64);
        if end <= start {
            return Vec::new();
        }
        let q = RangeQuery {
            selector: self.selector(key),
            start,
            end,
            step: step_ms as i64,
            bucket: BucketFn::Mean,
            aggregation: Aggregation::Sum,
        };
        let db = st.tsdb().read();
        match db.query(&q) {
            Ok(points) => points
                .into_iter()
                .filter(|p| p.series > 0 && p.t >= 0)
                .map(|p| (p.t as UnixMillis, self.scale(p.value)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the load history: the forecaster starts cold");
                Vec::new()
            }
        }
    }
}

/// A container's value: the agent labels series with the instance id
/// (`app/env/group/index`; dotted `app.env.group.index` is accepted too).
fn instance_value(values: &BTreeMap<String, f64>, id: &InstanceId) -> Option<f64> {
    values.get(&id.to_string()).copied().or_else(|| {
        values
            .get(&format!("{}.{}.{}.{}", id.app, id.env, id.group, id.index))
            .copied()
    })
}

/// The measured load (policy units) of the containers that count, or `None`
/// when none has a sample.
fn measured_load(pods: &[PodMetric], utilization: bool) -> Option<f64> {
    let vals: Vec<f64> = pods
        .iter()
        .filter(|p| p.ready || !utilization)
        .filter_map(|p| p.value)
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_label_forms() {
        let c = InstanceId {
            app: "shop".into(),
            env: "production".into(),
            group: "web".into(),
            index: 3,
        };
        let mut v = BTreeMap::new();
        assert_eq!(instance_value(&v, &c), None);
        v.insert("shop.production.web.3".to_string(), 0.5);
        assert_eq!(instance_value(&v, &c), Some(0.5));
        v.insert("shop/production/web/3".to_string(), 0.7);
        assert_eq!(instance_value(&v, &c), Some(0.7));
        v.insert("shop/staging/web/3".to_string(), 9.0);
        assert_eq!(instance_value(&v, &c), Some(0.7));
    }

    #[test]
    fn load_counts_ready_cpu_only() {
        let pods = [
            PodMetric {
                ready: true,
                value: Some(0.5),
            },
            PodMetric {
                ready: false,
                value: Some(0.9),
            },
            PodMetric {
                ready: true,
                value: None,
            },
        ];
        assert_eq!(measured_load(&pods, true), Some(0.5));
        assert_eq!(measured_load(&pods, false), Some(1.4));
        assert_eq!(measured_load(&pods[2..], true), None);
    }
}
