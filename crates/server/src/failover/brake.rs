//! The mass-failure brake: engaging, clearing and releasing it.
//!
//! While a datacenter is braked, hosts that go down are *held*: marked down
//! without an epoch bump, their containers left in place as `lost`. When the
//! brake is released (an operator) or cleared (enough hosts came back), the
//! held hosts still down are fenced (epoch bumped) in the same transaction,
//! and the next controller tick evacuates them.

use jdos_store::{json, Compare, TxnOp};
use jdos_types::failover::Brake;
use jdos_types::{keys, Host, HostState, Role, UnixMillis};

use super::judge::DatacenterHealth;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{Commit, EventDraft, Mutation};
use crate::kv::{self, Versioned};
use crate::state::AppState;

/// Actor of the controller's events.
pub(super) const ACTOR: &str = "failover";

/// Roles that may release a brake.
const RESUMERS: &[Role] = &[Role::Admin, Role::Ops];

/// Writes a new brake for `dc` with a failure event (alertable).
pub(super) async fn engage(
    st: &AppState,
    dc: &str,
    health: &DatacenterHealth,
    fraction: f64,
    now: UnixMillis,
) -> Result<Brake, HttpError> {
    let brake = Brake {
        datacenter: dc.to_string(),
        engaged_at_ms: now,
        hosts_total: health.total,
        hosts_failing: health.failing.clone(),
        held: Vec::new(),
        released: false,
        released_by: None,
        released_at_ms: 0,
    };
    let key = keys::failover_brake(dc);
    let msg = format!(
        "{} of {} hosts failing at once ({}), above the brake's {:.0} %: not evacuating; containers of hosts that go down stay lost until `jdos failover resume --datacenter {dc}` or the hosts come back",
        health.failing.len(),
        health.total,
        health.failing.join(", "),
        fraction * 100.0
    );
    st.mutate(|| {
        let brake = brake.clone();
        let key = key.clone();
        let msg = msg.clone();
        async move {
            let m = Mutation {
                compares: vec![Compare::absent(key.as_str())],
                ops: vec![TxnOp::put(key.as_str(), json::encode(&brake)?)],
                event: EventDraft::new(ACTOR, "failover.brake", "datacenter", dc).failed(msg),
            };
            Ok((m, brake))
        }
    })
    .await
}

/// Marks `host` down without fencing it and adds it to the brake's held
/// hosts. Returns both as written, `None` when either changed meanwhile.
pub(super) async fn hold(
    st: &AppState,
    host: &Versioned<Host>,
    brake: &Versioned<Brake>,
) -> Result<Option<(Versioned<Host>, Versioned<Brake>)>, HttpError> {
    let mut h = host.value.clone();
    h.state = HostState::Down;
    let mut b = brake.value.clone();
    if !b.held.contains(&h.name) {
        b.held.push(h.name.clone());
        b.held.sort();
    }
    let hk = keys::host(&h.name);
    let bk = keys::failover_brake(&b.datacenter);
    let m = Mutation {
        compares: vec![
            Compare::mod_revision(hk.as_str(), host.mod_revision),
            Compare::mod_revision(bk.as_str(), brake.mod_revision),
        ],
        ops: vec![
            TxnOp::put(hk.as_str(), json::encode(&h)?),
            TxnOp::put(bk.as_str(), json::encode(&b)?),
        ],
        event: EventDraft::new(ACTOR, "host.down", "host", &h.name).failed(format!(
            "no heartbeat: down, held in place (datacenter {} is braked): its containers are lost, not moved",
            h.datacenter
        )),
    };
    match st.events().commit(st.store(), m, st.now_ms()).await? {
        Commit::Done { revision, .. } => Ok(Some((
            Versioned {
                value: h,
                mod_revision: revision,
            },
            Versioned {
                value: b,
                mod_revision: revision,
            },
        ))),
        Commit::Stale => Ok(None),
    }
}

/// Commits a mutation planned from values read earlier; a concurrent change
/// leaves it to the next tick.
pub(super) async fn commit_once(st: &AppState, m: Mutation) -> Result<(), HttpError> {
    st.events().commit(st.store(), m, st.now_ms()).await?;
    Ok(())
}

/// Writes that fence the held hosts still down (and, when `only` is given,
/// still silent): epoch bumped.
async fn fence_held(
    st: &AppState,
    brake: &Brake,
    only: Option<&[String]>,
) -> Result<(Vec<Compare>, Vec<TxnOp>, Vec<String>), HttpError> {
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    let mut fenced = Vec::new();
    for name in &brake.held {
        if only.is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let key = keys::host(name);
        let Some(cur) = kv::get_json::<Host>(st.store(), &key).await? else {
            continue;
        };
        if cur.value.state != HostState::Down {
            continue;
        }
        let mut h = cur.value;
        h.epoch += 1;
        compares.push(Compare::mod_revision(key.as_str(), cur.mod_revision));
        ops.push(TxnOp::put(key.as_str(), json::encode(&h)?));
        fenced.push(format!("{name} (epoch {})", h.epoch));
    }
    Ok((compares, ops, fenced))
}

/// Removes a brake whose datacenter is no longer failing en masse, fencing
/// its held hosts that are still down and silent (`silent`; those
/// heartbeating again keep their epoch and containers) so that they are
/// evacuated.
pub(super) async fn clear(
    st: &AppState,
    brake: &Versioned<Brake>,
    health: Option<&DatacenterHealth>,
    silent: &[String],
) -> Result<(), HttpError> {
    let (mut compares, mut ops, fenced) = fence_held(st, &brake.value, Some(silent)).await?;
    let key = keys::failover_brake(&brake.value.datacenter);
    compares.push(Compare::mod_revision(key.as_str(), brake.mod_revision));
    ops.push(TxnOp::delete(key.as_str()));
    let now_failing = health.map_or(0, |h| h.failing.len());
    let mut msg = format!("{now_failing} hosts failing now: brake cleared");
    if !fenced.is_empty() {
        msg.push_str(&format!("; fencing and evacuating {}", fenced.join(", ")));
    }
    let m = Mutation {
        compares,
        ops,
        event: EventDraft::new(
            ACTOR,
            "failover.brake_cleared",
            "datacenter",
            &brake.value.datacenter,
        )
        .message(msg),
    };
    commit_once(st, m).await
}

/// `POST /api/v1/failover/resume`: releases a datacenter's brake (admin or
/// ops): its held hosts still down are fenced and evacuated on the next
/// tick, and hosts that go down from now on are evacuated as usual until
/// the share of failing hosts falls back under the limit.
#[tracing::instrument(skip(st, caller))]
pub async fn resume(st: &AppState, caller: &Caller, datacenter: &str) -> Result<Brake, HttpError> {
    caller.require(RESUMERS, "resume failover")?;
    let mut errs = jdos_types::ValidationErrors::new();
    jdos_types::name::check_name(&mut errs, "datacenter", datacenter);
    errs.into_result()?;
    let key = keys::failover_brake(datacenter);
    st.mutate(|| {
        let key = key.clone();
        async move {
            let cur: Versioned<Brake> = kv::get_json(st.store(), &key).await?.ok_or_else(|| {
                HttpError::not_found("failover brake", datacenter).with_field("datacenter")
            })?;
            let mut b = cur.value.clone();
            let (mut compares, mut ops, fenced) = if b.released {
                (Vec::new(), Vec::new(), Vec::new())
            } else {
                fence_held(st, &b, None).await?
            };
            let was_released = b.released;
            b.released = true;
            b.released_by = Some(caller.name.clone());
            if !was_released {
                b.released_at_ms = st.now_ms();
            }
            compares.push(Compare::mod_revision(key.as_str(), cur.mod_revision));
            ops.push(TxnOp::put(key.as_str(), json::encode(&b)?));
            let msg = if was_released {
                "already released".to_string()
            } else if fenced.is_empty() {
                "brake released: evacuation resumes".to_string()
            } else {
                format!(
                    "brake released: fencing and evacuating {}",
                    fenced.join(", ")
                )
            };
            let m = Mutation {
                compares,
                ops,
                event: st
                    .draft(caller, "failover.resume", "datacenter", datacenter)
                    .message(msg),
            };
            Ok((m, b))
        }
    })
    .await
}
