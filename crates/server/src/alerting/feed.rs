//! The recent events that event conditions look at: read from the store's
//! event trail, oldest dropped once older than the longest window in use.

use std::collections::VecDeque;

use jdos_store::{json, RangeOptions, Store, StoreError};
use jdos_types::{keys, Event, UnixMillis};

use crate::events::EVENT_SEQ_KEY;

/// Most events kept in memory.
pub const MAX_KEPT: usize = 200_000;
/// Most events read from the store in one refresh.
const MAX_READ: usize = 50_000;

/// A sliding window over the event trail.
#[derive(Debug, Default)]
pub struct EventFeed {
    recent: VecDeque<Event>,
    /// First sequence number not read yet; 0 before the first refresh.
    next_seq: u64,
}

impl EventFeed {
    /// An empty feed; the first refresh finds where to start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the events recorded since the last refresh and forgets those
    /// older than `keep_ms`.
    pub async fn refresh(
        &mut self,
        store: &dyn Store,
        now: UnixMillis,
        keep_ms: u64,
    ) -> Result<(), StoreError> {
        let since = now.saturating_sub(keep_ms);
        if self.next_seq == 0 {
            self.next_seq = first_seq_since(store, since).await?;
        }
        let mut read = 0;
        loop {
            let start_after = (self.next_seq > 1).then(|| keys::event(self.next_seq - 1));
            let page = store
                .range(
                    keys::EVENTS,
                    RangeOptions {
                        start_after,
                        limit: 1000,
                        keys_only: false,
                    },
                )
                .await?;
            for kv in &page.kvs {
                let e: Event = json::decode(kv)?;
                self.next_seq = e.seq + 1;
                if e.time_ms >= since {
                    self.recent.push_back(e);
                }
            }
            read += page.kvs.len();
            if !page.more || page.kvs.is_empty() || read >= MAX_READ {
                break;
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|e| e.time_ms < since || self.recent.len() > MAX_KEPT)
        {
            self.recent.pop_front();
        }
        Ok(())
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.recent.iter()
    }
}

/// The first event sequence number recorded at or after `since` (binary
/// search over the gap-free sequence), or the next one to come.
async fn first_seq_since(store: &dyn Store, since: UnixMillis) -> Result<u64, StoreError> {
    let last: u64 = match store.get(EVENT_SEQ_KEY).await? {
        Some(kv) => json::decode(&kv)?,
        None => 0,
    };
    let (mut lo, mut hi) = (1u64, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let old = match store.get(&keys::event(mid)).await? {
            Some(kv) => json::decode::<Event>(&kv)?.time_ms < since,
            // Compacted away: older than anything kept.
            None => true,
        };
        if old {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
