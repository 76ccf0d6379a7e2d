//! Pagination shared by every list endpoint: `?limit=&continue=`.

use jdos_store::Store;
use jdos_types::api::ListResponse;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::HttpError;
use crate::kv::{self, FilteredPage};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 500;
/// Largest page size.
pub const MAX_LIMIT: usize = 5000;
/// Keys read at most per request by a filtered list, as a multiple of the
/// limit: a sparse filter answers a short page with a continuation rather
/// than reading the whole prefix in one request.
pub const SCAN_FACTOR: usize = 20;

/// `?limit=&continue=`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageParams {
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Continuation of the previous page.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

impl PageParams {
    /// The page size, checked.
    pub fn limit(&self) -> Result<usize, HttpError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(HttpError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
            )),
        }
    }

    /// The store key to continue after: the continuation is the key's name
    /// below `prefix`.
    pub fn start_after(&self, prefix: &str) -> Result<Option<String>, HttpError> {
        match &self.continue_token {
            None => Ok(None),
            Some(t) if t.is_empty() || t.contains("..") => Err(HttpError::invalid(
                "continue",
                "bad continue token: pass the `continue` of the previous page",
            )),
            Some(t) => Ok(Some(format!("{prefix}{t}"))),
        }
    }

    /// Largest number of keys one request may read.
    pub fn max_scan(&self) -> Result<usize, HttpError> {
        Ok(self.limit()?.saturating_mul(SCAN_FACTOR))
    }

    /// Reads this page of the records under `prefix` that `keep` accepts,
    /// as the API's list body (what every list endpoint answers).
    pub async fn list<T, F>(
        &self,
        store: &dyn Store,
        prefix: &str,
        keep: F,
    ) -> Result<ListResponse<T>, HttpError>
    where
        T: DeserializeOwned,
        F: FnMut(&T) -> bool,
    {
        let found = kv::scan_filtered(
            store,
            prefix,
            self.start_after(prefix)?,
            self.limit()?,
            self.max_scan()?,
            keep,
        )
        .await?;
        Ok(to_response(found, prefix))
    }
}

/// Turns a scanned page into the API's list body.
pub fn to_response<T>(page: FilteredPage<T>, prefix: &str) -> ListResponse<T> {
    ListResponse {
        items: page.items,
        continue_token: page
            .continue_after
            .map(|k| k.strip_prefix(prefix).unwrap_or(&k).to_string()),
    }
}
