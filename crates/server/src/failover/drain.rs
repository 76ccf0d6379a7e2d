//! Host drains: cordon a host and move every container off it with the same
//! IP, a batch at a time, each container in two phases — `stop_in_place`
//! (its agent stops it and reports it stopped), then `relocate` (the new
//! host starts it) — so that an IP is never live on two hosts. The host is
//! `draining` meanwhile and ends `ready` and cordoned.
//!
//! A drain runs as a tracked background job whose progress is the [`Drain`]
//! record under `keys::FAILOVER` (`GET /api/v1/hosts/{name}/drain`); a
//! server that restarts resumes the drains it finds running (every step is
//! idempotent: containers already off the host are skipped).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use jdos_store::{json, Compare, TxnOp};
use jdos_types::failover::{Drain, DrainRequest, DrainState};
use jdos_types::{keys, ContainerPhase, GroupKey, Host, HostState, InstanceId, Role};

use super::judge::{self, Verdict};
use super::store;
use crate::auth::Caller;
use crate::error::HttpError;
use crate::events::{EventDraft, Mutation};
use crate::kv::{self, Versioned};
use crate::platform::PlatformError;
use crate::state::AppState;

/// Containers moved at once unless the request says otherwise.
pub const DEFAULT_BATCH: u32 = 4;
/// Largest batch a request may ask for.
pub const MAX_BATCH: u32 = 64;
/// How long the agent gets to stop a batch (stop grace included).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a moved batch gets to run on its new hosts.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Roles that may drain hosts.
const DRAINERS: &[Role] = &[Role::Admin, Role::Ops];

/// Starts draining `host` (cordon, state draining, job spawned). A drain
/// already running is answered as is. Returns the drain and whether it was
/// started by this call.
#[tracing::instrument(skip(st, caller, req))]
pub async fn start(
    st: &AppState,
    caller: &Caller,
    host: &str,
    req: DrainRequest,
) -> Result<(Drain, bool), HttpError> {
    caller.require(DRAINERS, "drain hosts")?;
    let batch = req.batch.unwrap_or(DEFAULT_BATCH);
    if batch == 0 || batch > MAX_BATCH {
        return Err(HttpError::invalid(
            "batch",
            format!("batch must be between 1 and {MAX_BATCH}, got {batch}"),
        ));
    }
    let (drain, started) = st
        .mutate(|| async move {
            let cur = crate::api::hosts::load(st.store(), host).await?;
            let dkey = keys::failover_drain(host);
            let prev: Option<Versioned<Drain>> = kv::get_json(st.store(), &dkey).await?;
            if let Some(p) = &prev {
                if p.value.state == DrainState::Running {
                    let m = Mutation {
                        compares: vec![Compare::mod_revision(dkey.as_str(), p.mod_revision)],
                        ops: Vec::new(),
                        event: st
                            .draft(caller, "host.drain", "host", host)
                            .message("already draining"),
                    };
                    return Ok((m, (p.value.clone(), false)));
                }
            }
            if cur.value.state == HostState::Down {
                return Err(HttpError::conflict(format!(
                    "host {host:?} is down: the failover controller moves its containers; drain it once it is back"
                )));
            }
            let mut h = cur.value.clone();
            h.cordoned = true;
            if h.state == HostState::Ready {
                h.state = HostState::Draining;
            }
            let now = st.now_ms();
            let total = store::live_containers_on(st.store(), host).await?.len() as u32;
            let d = Drain {
                host: host.to_string(),
                actor: caller.name.clone(),
                state: DrainState::Running,
                total,
                moved: 0,
                failed: 0,
                batch,
                message: format!("cordoned; {total} containers to move"),
                started_at_ms: now,
                finished_at_ms: 0,
            };
            let hkey = keys::host(host);
            let m = Mutation {
                compares: vec![
                    Compare::mod_revision(hkey.as_str(), cur.mod_revision),
                    match &prev {
                        Some(p) => Compare::mod_revision(dkey.as_str(), p.mod_revision),
                        None => Compare::absent(dkey.as_str()),
                    },
                ],
                ops: vec![
                    TxnOp::put(hkey.as_str(), json::encode(&h)?),
                    TxnOp::put(dkey.as_str(), json::encode(&d)?),
                ],
                event: st
                    .draft(caller, "host.drain", "host", host)
                    .message(format!("cordoned, draining {total} containers in batches of {batch}")),
            };
            Ok((m, (d, true)))
        })
        .await?;
    if started {
        spawn(st.clone(), host.to_string());
    }
    Ok((drain, started))
}

/// The host's latest drain.
pub async fn get(st: &AppState, host: &str) -> Result<Drain, HttpError> {
    kv::get_json(st.store(), &keys::failover_drain(host))
        .await?
        .map(|v: Versioned<Drain>| v.value)
        .ok_or_else(|| HttpError::not_found("drain of host", host))
}

/// Resumes the drains left running by a previous server process.
pub async fn resume_all(st: &AppState) -> Result<usize, HttpError> {
    let drains: Vec<Drain> = kv::list_all(st.store(), keys::FAILOVER_DRAINS).await?;
    let mut n = 0;
    for d in drains
        .into_iter()
        .filter(|d| d.state == DrainState::Running)
    {
        tracing::info!(host = %d.host, "resuming a drain");
        spawn(st.clone(), d.host);
        n += 1;
    }
    Ok(n)
}

fn spawn(st: AppState, host: String) {
    tokio::spawn(async move {
        if let Err(e) = run(&st, &host).await {
            tracing::warn!(host = %host, error = %e.body.message, "drain stopped");
            let _ = finish(
                &st,
                &host,
                Some(format!("{}: {}", e.body.code, e.body.message)),
            )
            .await;
        }
    });
}

/// The job: batches of stop → relocate → wait running, progress written
/// after each batch.
#[tracing::instrument(skip(st))]
async fn run(st: &AppState, host: &str) -> Result<(), HttpError> {
    let Some(d) = kv::get_json::<Drain>(st.store(), &keys::failover_drain(host)).await? else {
        return Ok(());
    };
    let batch = d.value.batch.clamp(1, MAX_BATCH) as usize;
    let platform = st.platform().clone();
    let mut given_up: HashSet<InstanceId> = HashSet::new();
    loop {
        let h = crate::api::hosts::load(st.store(), host).await?.value;
        if h.state == HostState::Down {
            return finish(
                st,
                host,
                Some("the host went down: the failover controller moves the rest".into()),
            )
            .await;
        }
        let left = store::live_containers_on(st.store(), host).await?;
        // A container that could not be moved is not retried in this drain.
        let todo: Vec<InstanceId> = left
            .iter()
            .map(|c| c.value.id.clone())
            .filter(|id| !given_up.contains(id))
            .collect();
        if todo.is_empty() {
            return finish(st, host, None).await;
        }
        let ids: Vec<InstanceId> = todo.into_iter().take(batch).collect();
        // Phase 1: stopped here. An agent that stopped heartbeating cannot
        // stop anything; its containers are moved when it is declared down.
        platform
            .stop_in_place(&ids)
            .await
            .map_err(HttpError::from)?;
        if has_live_agent(st, &h) {
            let stopped = [
                ContainerPhase::Stopped,
                ContainerPhase::Failed,
                ContainerPhase::Lost,
                ContainerPhase::Pending,
                ContainerPhase::Scheduled,
            ];
            if let Err(e) = platform.wait_phase(&ids, &stopped, STOP_TIMEOUT).await {
                return Err(HttpError::conflict(format!(
                    "the agent of {host} did not stop {} container(s) in time ({e}); they stay stopped on the host",
                    ids.len()
                )));
            }
        }
        // Phase 2: re-placed elsewhere with the same IPs, then running.
        let mut by_group: BTreeMap<GroupKey, Vec<InstanceId>> = BTreeMap::new();
        for id in &ids {
            by_group.entry(id.group_key()).or_default().push(id.clone());
        }
        let mut moved: Vec<InstanceId> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        for (gk, gids) in by_group {
            let Some(group) =
                kv::get_json::<jdos_types::Group>(st.store(), &keys::group(&gk)).await?
            else {
                problems.push(format!("{gk}: group no longer exists"));
                continue;
            };
            let avoid = [host.to_string()];
            match platform
                .relocate(
                    &group.value,
                    &gids,
                    &avoid,
                    &format!("drain of host {host}"),
                )
                .await
            {
                Ok(_) => moved.extend(gids),
                Err(e @ PlatformError::Unplaced { .. }) => {
                    problems.push(e.to_string());
                    for (c, _) in platform.records(&gids).await.map_err(HttpError::from)? {
                        if c.host.as_deref() != Some(host) {
                            moved.push(c.id);
                        }
                    }
                }
                Err(e) => problems.push(format!("{gk}: {e}")),
            }
        }
        given_up.extend(ids.iter().filter(|id| !moved.contains(id)).cloned());
        let mut running = 0u32;
        if !moved.is_empty() {
            let up = [ContainerPhase::Running, ContainerPhase::Unhealthy];
            match platform.wait_phase(&moved, &up, START_TIMEOUT).await {
                Ok(_) => running = moved.len() as u32,
                Err(e) => {
                    let recs = platform.records(&moved).await.map_err(HttpError::from)?;
                    running = recs.iter().filter(|(c, _)| up.contains(&c.phase)).count() as u32;
                    problems.push(format!("moved but not running yet: {e}"));
                }
            }
        }
        let failed = ids.len() as u32 - running;
        progress_update(st, host, running, failed, &problems).await?;
    }
}

/// True when the host's agent is heartbeating (it will stop containers).
fn has_live_agent(st: &AppState, h: &Host) -> bool {
    if !judge::judged(h) {
        return false;
    }
    let t = st.failover().config().timings;
    let last = st.liveness().get(&h.name).map(|s| s.last_seen_ms);
    judge::verdict(last, 0, st.now_ms(), &t) == Verdict::Alive
}

async fn progress_update(
    st: &AppState,
    host: &str,
    moved: u32,
    failed: u32,
    problems: &[String],
) -> Result<(), HttpError> {
    let key = keys::failover_drain(host);
    for _ in 0..16 {
        let Some(cur) = kv::get_json::<Drain>(st.store(), &key).await? else {
            return Ok(());
        };
        let mut d = cur.value;
        d.moved += moved;
        d.failed += failed;
        d.message = if problems.is_empty() {
            format!("{} of {} moved", d.moved, d.total)
        } else {
            problems.join("; ")
        };
        let txn = jdos_store::Txn::new()
            .when(Compare::mod_revision(key.as_str(), cur.mod_revision))
            .and_then(TxnOp::put(key.as_str(), json::encode(&d)?));
        if st.store().txn(txn).await?.succeeded {
            return Ok(());
        }
    }
    Err(HttpError::conflict("drain progress kept changing"))
}

/// Ends the drain: record terminal, host back to ready (still cordoned),
/// event.
async fn finish(st: &AppState, host: &str, error: Option<String>) -> Result<(), HttpError> {
    st.mutate(|| {
        let error = error.clone();
        async move {
            let dkey = keys::failover_drain(host);
            let Some(cur) = kv::get_json::<Drain>(st.store(), &dkey).await? else {
                return Err(HttpError::not_found("drain of host", host));
            };
            let h = crate::api::hosts::load(st.store(), host).await?;
            let mut d = cur.value.clone();
            d.finished_at_ms = st.now_ms();
            let ok = error.is_none() && d.failed == 0;
            d.state = if ok { DrainState::Done } else { DrainState::Failed };
            if let Some(e) = &error {
                d.message = e.clone();
            }
            let secs = d.finished_at_ms.saturating_sub(d.started_at_ms) as f64 / 1000.0;
            let summary = format!(
                "{} of {} containers moved with their IPs in {secs:.1} s, {} not moved; the host stays cordoned",
                d.moved, d.total, d.failed
            );
            let mut event = EventDraft::new(&d.actor, "host.drained", "host", host);
            event = if ok {
                event.message(summary)
            } else {
                event.failed(format!("{summary}: {}", d.message))
            };
            let mut compares = vec![Compare::mod_revision(dkey.as_str(), cur.mod_revision)];
            let mut ops = vec![TxnOp::put(dkey.as_str(), json::encode(&d)?)];
            if h.value.state == HostState::Draining {
                let mut hv = h.value.clone();
                hv.state = HostState::Ready;
                hv.cordoned = true;
                let hkey = keys::host(host);
                compares.push(Compare::mod_revision(hkey.as_str(), h.mod_revision));
                ops.push(TxnOp::put(hkey.as_str(), json::encode(&hv)?));
            }
            Ok((
                Mutation {
                    compares,
                    ops,
                    event,
                },
                (),
            ))
        }
    })
    .await
}
