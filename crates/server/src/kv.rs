//! Typed store helpers: read and list JSON records through `jdos_store::json`.
//! Reused by every resource handler (and by later controllers).

use jdos_store::{json, RangeOptions, Revision, Store, StoreError};
use serde::de::DeserializeOwned;

/// A decoded record with the revision it was last written at, for a
/// compare-and-swap on write-back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its key's mod revision.
    pub mod_revision: Revision,
}

/// Reads and decodes one key.
pub async fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(kv) => Ok(Some(Versioned {
            value: json::decode(&kv)?,
            mod_revision: kv.mod_revision,
        })),
    }
}

/// True when at least one key exists under `prefix` (one-key read).
pub async fn any_under(store: &dyn Store, prefix: &str) -> Result<bool, StoreError> {
    let page = store
        .range(
            prefix,
            RangeOptions {
                limit: 1,
                keys_only: true,
                ..Default::default()
            },
        )
        .await?;
    Ok(!page.kvs.is_empty())
}

/// Reads and decodes every key under `prefix`, page by page. Only for list
/// endpoints and summaries whose cost is meant to grow with the data.
pub use jdos_store::json::list_all;

/// One page of a filtered list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredPage<T> {
    /// Matching items, at most the limit asked for.
    pub items: Vec<T>,
    /// The key to continue after, when the scan stopped before the end.
    pub continue_after: Option<String>,
}

/// Scans `prefix` from after `start_after`, keeping the decoded records that
/// `keep` accepts, until `limit` are found or `max_scan` keys were read. The
/// scan bound keeps one request's work bounded even when few records match:
/// a page may then hold fewer than `limit` items and still carry a
/// continuation.
pub async fn scan_filtered<T, F>(
    store: &dyn Store,
    prefix: &str,
    start_after: Option<String>,
    limit: usize,
    max_scan: usize,
    mut keep: F,
) -> Result<FilteredPage<T>, StoreError>
where
    T: DeserializeOwned,
    F: FnMut(&T) -> bool,
{
    let mut items = Vec::new();
    let mut scanned = 0usize;
    let mut cursor = start_after;
    loop {
        let want = (limit - items.len()).max(16).min(max_scan - scanned);
        let page = store
            .range(
                prefix,
                RangeOptions {
                    start_after: cursor.clone(),
                    limit: want,
                    keys_only: false,
                },
            )
            .await?;
        let n = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            scanned += 1;
            cursor = Some(kv.key.clone());
            let v: T = json::decode(kv)?;
            if keep(&v) {
                items.push(v);
                if items.len() == limit {
                    let more = page.more || i + 1 < n;
                    return Ok(FilteredPage {
                        items,
                        continue_after: if more { cursor } else { None },
                    });
                }
            }
        }
        if !page.more || n == 0 {
            return Ok(FilteredPage {
                items,
                continue_after: None,
            });
        }
        if scanned >= max_scan {
            return Ok(FilteredPage {
                items,
                continue_after: cursor,
            });
        }
    }
}
