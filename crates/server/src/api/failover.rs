//! Failover: the controller's settings and brakes, releasing a brake, and
//! host drains.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_types::failover::{
    Brake, CrashLoop, Drain, DrainRequest, DrainState, FailoverStatus, ResumeFailover,
};
use jdos_types::{keys, InstanceId, Role};

use super::Route;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::extract::{ApiJson, ApiPath};
use crate::kv;
use crate::openapi::Documented;
use crate::state::AppState;

/// Roles that may see and steer failover.
const OPERATORS: &[Role] = &[Role::Admin, Role::Ops];

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/failover", status_handler)
            .doc(
                "failover",
                "The failover controller's timings, mass-failure brakes and crash-looping containers (admin, ops)",
            )
            .returns::<FailoverStatus>(),
        Route::new(Method::POST, "/api/v1/failover/resume", resume_handler)
            .doc(
                "failover",
                "Release a datacenter's mass-failure brake: its down hosts are fenced and evacuated (admin, ops)",
            )
            .accepts::<ResumeFailover>()
            .returns::<Brake>(),
        Route::new(Method::POST, "/api/v1/hosts/{name}/drain", drain_handler)
            .doc(
                "hosts",
                "Cordon a host and move its containers elsewhere with their IPs, a batch at a time (admin, ops); answers the drain, 202 when started",
            )
            .accepts::<DrainRequest>()
            .returns::<Drain>()
            .status(202),
        Route::new(Method::GET, "/api/v1/hosts/{name}/drain", get_drain_handler)
            .doc("hosts", "A host's latest drain and its progress")
            .returns::<Drain>(),
    ]
}

async fn drain_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<DrainRequest>,
) -> Result<(StatusCode, Json<Drain>), HttpError> {
    let draft = st.draft(&caller, "host.drain", "host", &name);
    st.audited(draft, async {
        let (d, started) = crate::failover::drain::start(&st, &caller, &name, req).await?;
        let status = if started {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(d)))
    })
    .await
}

async fn get_drain_handler(
    State(st): State<AppState>,
    _caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Drain>, HttpError> {
    Ok(Json(crate::failover::drain::get(&st, &name).await?))
}

async fn status_handler(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<FailoverStatus>, HttpError> {
    caller.require(OPERATORS, "see failover status")?;
    Ok(Json(status(&st).await?))
}

/// The controller's settings, brakes, crash-loop records and leader.
pub async fn status(st: &AppState) -> Result<FailoverStatus, HttpError> {
    let c = st.failover().config();
    Ok(FailoverStatus {
        suspect_after_ms: c.timings.suspect_after_ms,
        down_after_ms: c.timings.down_after_ms,
        brake_fraction: c.brake.fraction,
        brake_min_hosts: c.brake.min_hosts,
        crash_loop_max_hosts: c.crash_loop_max_hosts,
        brakes: crate::failover::brakes(st).await?,
        crash_loops: kv::list_all(st.store(), keys::FAILOVER_CRASH_LOOPS).await?,
        leader: crate::leader::current(st.store(), crate::leader::FAILOVER)
            .await?
            .map(|r| r.holder),
    })
}

async fn resume_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ResumeFailover>,
) -> Result<Json<Brake>, HttpError> {
    let draft = st.draft(&caller, "failover.resume", "datacenter", &req.datacenter);
    st.audited(draft, async {
        Ok(Json(
            crate::failover::resume(&st, &caller, &req.datacenter).await?,
        ))
    })
    .await
}

fn sample_brake() -> Brake {
    Brake {
        datacenter: "dc-north".into(),
        engaged_at_ms: 1_700_000_000_000,
        hosts_total: 10,
        hosts_failing: vec!["h1".into(), "h2".into(), "h3".into(), "h4".into()],
        held: vec!["h1".into(), "h2".into()],
        released: true,
        released_by: Some("ops-oncall".into()),
        released_at_ms: 1_700_000_060_000,
    }
}

impl Documented for Brake {
    fn schema_name() -> String {
        "FailoverBrake".into()
    }
    fn sample() -> Self {
        sample_brake()
    }
}

impl Documented for ResumeFailover {
    fn schema_name() -> String {
        "ResumeFailover".into()
    }
    fn sample() -> Self {
        ResumeFailover {
            datacenter: "dc-north".into(),
        }
    }
}

impl Documented for FailoverStatus {
    fn schema_name() -> String {
        "FailoverStatus".into()
    }
    fn sample() -> Self {
        FailoverStatus {
            suspect_after_ms: 3_000,
            down_after_ms: 6_000,
            brake_fraction: 0.3,
            brake_min_hosts: 3,
            crash_loop_max_hosts: 3,
            brakes: vec![sample_brake()],
            crash_loops: vec![CrashLoop {
                id: InstanceId {
                    app: "shop".into(),
                    env: "production".into(),
                    group: "web".into(),
                    index: 3,
                },
                hosts: vec!["h7".into(), "h9".into()],
                given_up: false,
                updated_at_ms: 1_700_000_000_000,
            }],
            leader: Some("server-1".into()),
        }
    }
}

impl Documented for DrainRequest {
    fn schema_name() -> String {
        "DrainRequest".into()
    }
    fn sample() -> Self {
        DrainRequest { batch: Some(4) }
    }
}

impl Documented for Drain {
    fn schema_name() -> String {
        "Drain".into()
    }
    fn sample() -> Self {
        Drain {
            host: "lf-s1-r1-h1".into(),
            actor: "ops-oncall".into(),
            state: DrainState::Running,
            total: 20,
            moved: 8,
            failed: 0,
            batch: 4,
            message: "8 of 20 moved".into(),
            started_at_ms: 1_700_000_000_000,
            finished_at_ms: 0,
        }
    }
    fn enums() -> Vec<(&'static str, Vec<&'static str>)> {
        vec![("state", vec!["running", "done", "failed"])]
    }
}
