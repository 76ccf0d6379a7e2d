//! Crash loops: an agent whose restart back-off gave up on a container
//! reports it `crash_loop`; the controller moves it to a host it has not
//! crash-looped on yet (same IP), and after `crash_loop_max_hosts` hosts
//! gives it up (phase failed, failure event) instead of moving it forever.

use std::collections::BTreeSet;

use jdos_store::{json, Compare, TxnOp};
use jdos_types::container::DesiredState;
use jdos_types::failover::CrashLoop;
use jdos_types::{keys, Container, ContainerPhase, InstanceId, UnixMillis};

use super::brake::ACTOR;
use super::controller::{relocate_group, Controller, TickReport};
use super::FailoverMetrics;
use crate::error::HttpError;
use crate::events::{Commit, EventDraft, Mutation};
use crate::kv::{self, Versioned};

/// Handles every crash loop reported since the last tick.
pub(super) async fn handle_all(
    ctrl: &Controller,
    report: &mut TickReport,
) -> Result<(), HttpError> {
    for (host, epoch, id) in ctrl.state().failover().take_crash_loops() {
        if let Err(e) = handle(ctrl, &host, epoch, &id, report).await {
            tracing::warn!(container = %id, host = %host, error = %e.body.message, "crash loop not handled");
        }
    }
    Ok(())
}

async fn handle(
    ctrl: &Controller,
    host: &str,
    epoch: u64,
    id: &InstanceId,
    report: &mut TickReport,
) -> Result<(), HttpError> {
    let st = ctrl.state();
    let now = st.now_ms();
    let ckey = keys::container(id);
    let Some(c) = kv::get_json::<Container>(st.store(), &ckey).await? else {
        return Ok(());
    };
    // A report about a container that has moved on, or is being stopped or
    // deleted, asks for nothing.
    if c.value.host.as_deref() != Some(host)
        || c.value.host_epoch != epoch
        || c.value.desired != DesiredState::Running
    {
        return Ok(());
    }
    let lkey = keys::failover_crash_loop(id);
    let cur: Option<Versioned<CrashLoop>> = kv::get_json(st.store(), &lkey).await?;
    let mut rec = cur.as_ref().map_or_else(
        || CrashLoop {
            id: id.clone(),
            hosts: Vec::new(),
            given_up: false,
            updated_at_ms: now,
        },
        |v| v.value.clone(),
    );
    if rec.given_up {
        return Ok(());
    }
    if !rec.hosts.iter().any(|h| h == host) {
        rec.hosts.push(host.to_string());
    }
    rec.updated_at_ms = now;
    let rec_cmp = match &cur {
        Some(v) => Compare::mod_revision(lkey.as_str(), v.mod_revision),
        None => Compare::absent(lkey.as_str()),
    };
    let max = ctrl.config().crash_loop_max_hosts.max(1) as usize;
    if rec.hosts.len() >= max {
        let why = format!(
            "crash-looped on {} hosts ({}): given up",
            rec.hosts.len(),
            rec.hosts.join(", ")
        );
        give_up(ctrl, &c, rec, rec_cmp, &why, now).await?;
        report.crash_loop_given_up.push(id.clone());
        return Ok(());
    }
    // Record the host before moving, so that a crash between the two
    // cannot make it try the same host again.
    let m = Mutation {
        compares: vec![rec_cmp],
        ops: vec![TxnOp::put(lkey.as_str(), json::encode(&rec)?)],
        event: EventDraft::new(ACTOR, "container.crash_loop", "container", &id.to_string()).failed(
            format!(
                "crash-looping on {host} (host {} of at most {max}): moving it elsewhere",
                rec.hosts.len()
            ),
        ),
    };
    if st.events().commit(st.store(), m, now).await? == Commit::Stale {
        return Ok(());
    }
    let avoid: BTreeSet<String> = rec.hosts.iter().cloned().collect();
    let moved = relocate_group(
        st,
        ctrl.mover().as_ref(),
        &id.group_key(),
        std::slice::from_ref(id),
        &avoid,
        "container.migrate",
        &format!("crash loop on {host}"),
    )
    .await;
    match moved {
        Ok(ids) if ids.contains(id) => {
            FailoverMetrics::add(&st.failover().metrics.crash_loop_moves, 1);
            report.crash_loop_moved.push(id.clone());
        }
        Ok(_) | Err(_) => {
            // Nowhere else to go: give up now rather than leave it looping.
            let cur: Option<Versioned<CrashLoop>> = kv::get_json(st.store(), &lkey).await?;
            if let (Some(cur), Some(c)) = (cur, kv::get_json::<Container>(st.store(), &ckey).await?)
            {
                let why = format!(
                    "crash-looping on {} and no other host fits it: given up",
                    rec.hosts.join(", ")
                );
                let cmp = Compare::mod_revision(lkey.as_str(), cur.mod_revision);
                give_up(ctrl, &c, cur.value, cmp, &why, now).await?;
                report.crash_loop_given_up.push(id.clone());
            }
        }
    }
    Ok(())
}

async fn give_up(
    ctrl: &Controller,
    c: &Versioned<Container>,
    mut rec: CrashLoop,
    rec_cmp: Compare,
    why: &str,
    now: UnixMillis,
) -> Result<(), HttpError> {
    let st = ctrl.state();
    rec.given_up = true;
    rec.updated_at_ms = now;
    let mut v = c.value.clone();
    v.phase = ContainerPhase::Failed;
    v.message = why.to_string();
    v.updated_at_ms = now;
    let ckey = keys::container(&v.id);
    let lkey = keys::failover_crash_loop(&v.id);
    let mut event = EventDraft::new(
        ACTOR,
        "container.crash_loop",
        "container",
        &v.id.to_string(),
    )
    .failed(why.to_string());
    if let Some(app) = kv::get_json::<jdos_types::App>(st.store(), &keys::app(&v.id.app)).await? {
        event = event.app(&v.id.app, &app.value.department);
    }
    let m = Mutation {
        compares: vec![
            rec_cmp,
            Compare::mod_revision(ckey.as_str(), c.mod_revision),
        ],
        ops: vec![
            TxnOp::put(lkey.as_str(), json::encode(&rec)?),
            TxnOp::put(ckey.as_str(), json::encode(&v)?),
        ],
        event,
    };
    if matches!(
        st.events().commit(st.store(), m, now).await?,
        Commit::Done { .. }
    ) {
        FailoverMetrics::add(&st.failover().metrics.crash_loop_given_up, 1);
    }
    Ok(())
}

/// Crash-loop records whose container is gone, removed (swept now and then).
pub(super) async fn sweep(ctrl: &Controller) -> Result<usize, HttpError> {
    let st = ctrl.state();
    let recs: Vec<Versioned<CrashLoop>> =
        super::store::versioned_under(st.store(), keys::FAILOVER_CRASH_LOOPS).await?;
    let mut removed = 0;
    for r in recs {
        if st
            .store()
            .get(&keys::container(&r.value.id))
            .await?
            .is_none()
        {
            let key = keys::failover_crash_loop(&r.value.id);
            let txn = jdos_store::Txn::new()
                .when(Compare::mod_revision(key.as_str(), r.mod_revision))
                .and_then(TxnOp::delete(key.as_str()));
            if st.store().txn(txn).await?.succeeded {
                removed += 1;
            }
        }
    }
    Ok(removed)
}
