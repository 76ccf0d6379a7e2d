//! Events: the audit trail of every cluster action.

use jdos_types::api::ListResponse;
use jdos_types::Event;

use crate::{collect_pages, Client, ClientError, EventQuery};

impl Client {
    /// `GET /api/v1/events`: one page of events matching `q`, oldest first.
    pub async fn list_events(&self, q: &EventQuery) -> Result<ListResponse<Event>, ClientError> {
        self.get_json("/api/v1/events", q).await
    }

    /// Every event matching `q`'s filters, following `continue` tokens
    /// (`q.limit` is the page size).
    pub async fn all_events(&self, q: &EventQuery) -> Result<Vec<Event>, ClientError> {
        collect_pages(|cont| {
            let q = EventQuery {
                continue_token: cont,
                ..q.clone()
            };
            async move { self.list_events(&q).await }
        })
        .await
    }

    /// Events newer than `after_seq` (one page), for tailing: pass the last
    /// `seq` seen back in on the next call.
    pub async fn events_after(
        &self,
        after_seq: u64,
        q: &EventQuery,
    ) -> Result<Vec<Event>, ClientError> {
        let q = EventQuery {
            after_seq: Some(after_seq),
            continue_token: None,
            ..q.clone()
        };
        Ok(self.list_events(&q).await?.items)
    }
}
