//! Store reads and writes of the failover controller.

use std::collections::BTreeMap;

use jdos_store::{json, Compare, Store, Txn, TxnOp};
use jdos_types::container::DesiredState;
use jdos_types::failover::Brake;
use jdos_types::{keys, Container, ContainerPhase, Host, UnixMillis};
use serde::Deserialize;

use crate::error::HttpError;
use crate::kv::Versioned;

/// Every host with its revision.
pub(super) async fn hosts(store: &dyn Store) -> Result<Vec<Versioned<Host>>, HttpError> {
    versioned_under(store, keys::HOSTS).await
}

/// Every brake by datacenter.
pub(super) async fn brakes(
    store: &dyn Store,
) -> Result<BTreeMap<String, Versioned<Brake>>, HttpError> {
    Ok(versioned_under::<Brake>(store, keys::FAILOVER_BRAKES)
        .await?
        .into_iter()
        .map(|b| (b.value.datacenter.clone(), b))
        .collect())
}

/// Decodes every record under `prefix` with its mod revision.
pub(super) async fn versioned_under<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<Versioned<T>>, HttpError> {
    let mut out = Vec::new();
    jdos_store::for_each_page(store, prefix, 1024, |kvs| {
        for kv in kvs {
            out.push(Versioned {
                value: json::decode(kv)?,
                mod_revision: kv.mod_revision,
            });
        }
        Ok::<_, HttpError>(())
    })
    .await?;
    Ok(out)
}

/// The live (not retired) containers placed on `host`, with revisions: one
/// pass over the container records decoding only `host` and `desired` until
/// one matches. Containers are keyed by group, not host, so this reads
/// them all; callers skip it for hosts whose allocation is empty.
pub(super) async fn live_containers_on(
    store: &dyn Store,
    host: &str,
) -> Result<Vec<Versioned<Container>>, HttpError> {
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(borrow, default)]
        host: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        desired: DesiredState,
    }
    let mut out = Vec::new();
    jdos_store::for_each_page(store, keys::CONTAINERS, 4096, |kvs| {
        for kv in kvs {
            let p: Peek<'_> = serde_json::from_slice(&kv.value).map_err(|e| {
                HttpError::internal(format!("corrupt container record {}: {e}", kv.key))
            })?;
            if p.host.as_deref() == Some(host) && p.desired != DesiredState::Deleted {
                out.push(Versioned {
                    value: json::decode(kv)?,
                    mod_revision: kv.mod_revision,
                });
            }
        }
        Ok::<_, HttpError>(())
    })
    .await?;
    Ok(out)
}

/// Number of containers a host's allocation record counts (0 when it has none).
pub(super) async fn allocated(store: &dyn Store, host: &str) -> Result<u32, HttpError> {
    Ok(
        crate::kv::get_json::<jdos_types::topology::HostAllocation>(store, &keys::alloc(host))
            .await?
            .map_or(0, |a| a.value.containers),
    )
}

/// Most records rewritten in one transaction (etcd's default limit is 128
/// operations).
const CHUNK: usize = 50;

/// Sets `phase: lost` with `message` on the containers not yet lost. A
/// record changed meanwhile is left for the next pass. Returns how many
/// were marked.
pub(super) async fn mark_lost(
    store: &dyn Store,
    containers: &[Versioned<Container>],
    message: &str,
    now: UnixMillis,
) -> Result<usize, HttpError> {
    let todo: Vec<&Versioned<Container>> = containers
        .iter()
        .filter(|c| c.value.phase != ContainerPhase::Lost)
        .collect();
    let mut marked = 0;
    for chunk in todo.chunks(CHUNK) {
        let mut txn = Txn::new();
        for c in chunk {
            let key = keys::container(&c.value.id);
            let mut v = c.value.clone();
            v.phase = ContainerPhase::Lost;
            v.message = message.to_string();
            v.updated_at_ms = now;
            txn = txn
                .when(Compare::mod_revision(key.as_str(), c.mod_revision))
                .and_then(TxnOp::put(key, json::encode(&v)?));
        }
        if store.txn(txn).await?.succeeded {
            marked += chunk.len();
        }
    }
    Ok(marked)
}
