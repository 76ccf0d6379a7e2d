//! The autoscaling controller's view of groups: policy, replicas and the
//! last evaluation (decision, mode used, time), whether it changed the count
//! or not.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_types::autoscaling::{AutoscaleDecision, AutoscaleStatus, ScalingMode};
use jdos_types::{keys, App, AutoscalingPolicy, GroupKey};
use serde::{Deserialize, Serialize};

use super::{Param, Route};
use crate::auth::Caller;
use crate::autoscale::Controller;
use crate::error::HttpError;
use crate::extract::{ApiPath, ApiQuery};
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/autoscaling", list_handler)
            .doc(
                "autoscaling",
                "Every group with an autoscaling policy and the controller's last evaluation (a developer sees its department's only)",
            )
            .query(&LIST_PARAMS)
            .returns::<Vec<AutoscaleStatus>>(),
        Route::new(Method::GET, "/api/v1/autoscaling/{app}/{env}/{group}", get_handler)
            .doc(
                "autoscaling",
                "A group's autoscaling policy and the controller's last evaluation (decision, mode used, time)",
            )
            .returns::<AutoscaleStatus>(),
    ]
}

const LIST_PARAMS: [Param; 1] = [Param {
    name: "app",
    ty: "string",
    description: "only groups of this app",
}];

/// `GET /api/v1/autoscaling` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingQuery {
    /// Only groups of this app.
    #[serde(default)]
    pub app: Option<String>,
}

fn controller(st: &AppState) -> Result<&std::sync::Arc<Controller>, HttpError> {
    st.autoscaler().ok_or_else(|| {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the autoscaling controller is not running on this server",
        )
    })
}

fn store_error(e: jdos_store::StoreError) -> HttpError {
    HttpError::internal(format!("store: {e}"))
}

async fn department_of(st: &AppState, app: &str) -> Result<Option<String>, HttpError> {
    Ok(kv::get_json::<App>(st.store(), &keys::app(app))
        .await
        .map_err(store_error)?
        .map(|a| a.value.department))
}

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AutoscalingQuery>,
) -> Result<Json<Vec<AutoscaleStatus>>, HttpError> {
    let c = controller(&st)?;
    let all = c
        .statuses(&st, q.app.as_deref())
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(all.len());
    let mut seen: std::collections::HashMap<String, bool> = Default::default();
    for s in all {
        let visible = match seen.get(&s.app) {
            Some(v) => *v,
            None => {
                let v = department_of(&st, &s.app)
                    .await?
                    .is_some_and(|d| caller.in_scope(&d));
                seen.insert(s.app.clone(), v);
                v
            }
        };
        if visible {
            out.push(s);
        }
    }
    Ok(Json(out))
}

async fn get_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((app, env, group)): ApiPath<(String, String, String)>,
) -> Result<Json<AutoscaleStatus>, HttpError> {
    let key = GroupKey::new(&app, &env, &group);
    let dept = department_of(&st, &app)
        .await?
        .ok_or_else(|| HttpError::not_found("app", &app))?;
    caller.require_scope(&dept, &format!("app {app:?}"))?;
    let c = controller(&st)?;
    c.status(&st, &key)
        .await
        .map_err(store_error)?
        .map(Json)
        .ok_or_else(|| HttpError::not_found("autoscaled group", &key.to_string()))
}

impl Documented for AutoscaleStatus {
    fn schema_name() -> String {
        "AutoscaleStatus".into()
    }
    fn sample() -> Self {
        AutoscaleStatus {
            app: "shop".into(),
            env: "production".into(),
            group: "web".into(),
            policy: AutoscalingPolicy {
                min_replicas: 2,
                max_replicas: 50,
                metric: "cpu".into(),
                target: None,
                target_utilization: Some(0.6),
                target_value: None,
                mode: ScalingMode::Predictive,
                startup_seconds: Some(60),
                sync_seconds: Some(15),
                tolerance: Some(0.1),
                scale_down_stabilization_seconds: Some(300),
                utc_offset_minutes: Some(480),
                schedules: Vec::new(),
            },
            replicas: 4,
            last: Some(AutoscaleDecision {
                at_ms: 1_700_000_000_000,
                current: 4,
                desired: 6,
                mode_used: "predictive".into(),
                floor: 2,
                load: Some(3.1),
                containers: 4,
                ready: 4,
                missing: 0,
                action: "scale".into(),
                task: Some("t-0001".into()),
                reason: "forecast peak 3.40 … needs 6 at target cpu 60%; desired 6".into(),
            }),
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![
            (
                "mode_used",
                vec!["reactive", "predictive", "reactive_fallback"],
            ),
            ("action", vec!["keep", "scale", "blocked", "error"]),
        ]
    }
}
