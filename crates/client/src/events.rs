//! Events: the audit trail of every cluster action.

use jdos_types::api::ListResponse;
use jdos_types::Event;

use crate::{collect_pages, Client, ClientError, EventQuery, MAX_PAGES};

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
    /// `seq` seen back in on the next call. Empty when nothing newer matches.
    pub async fn events_after(
        &self,
        after_seq: u64,
        q: &EventQuery,
    ) -> Result<Vec<Event>, ClientError> {
        let mut q = EventQuery {
            after_seq: Some(after_seq),
            continue_token: None,
            ..q.clone()
        };
        // The server bounds the events one request reads, so with a sparse
        // filter a page can hold no match yet carry a continuation. Follow
        // it: answering "nothing new" there would leave the caller asking
        // from the same `after_seq` forever, never reaching later matches.
        for _ in 0..MAX_PAGES {
            let page = self.list_events(&q).await?;
            if !page.items.is_empty() {
                return Ok(page.items);
            }
            match page.continue_token {
                Some(c) if !c.is_empty() => q.continue_token = Some(c),
                _ => return Ok(Vec::new()),
            }
        }
        Err(ClientError::Decode {
            what: "/api/v1/events".to_string(),
            message: format!(
                "the server kept answering empty pages with a continue token after {MAX_PAGES} pages"
            ),
        })
    }
}

impl Client {
    /// `GET /api/v1/events/head`: the newest event's sequence number, to
    /// follow the trail from now on.
    pub async fn events_head(&self) -> Result<u64, ClientError> {
        let h: jdos_types::api::EventHead = self.get_json("/api/v1/events/head", &()).await?;
        Ok(h.seq)
    }

    /// Long-polls for events newer than `after_seq` matching `q`: answers
    /// as soon as one lands, or empty after about `wait_ms` (the server
    /// caps it at 30 s). For `jdos events --watch`.
    pub async fn wait_events(
        &self,
        after_seq: u64,
        q: &EventQuery,
        wait_ms: u64,
    ) -> Result<Vec<Event>, ClientError> {
        let q = EventQuery {
            wait_ms: Some(wait_ms),
            ..q.clone()
        };
        self.events_after(after_seq, &q).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Client, EventQuery};

    /// A server whose first page (no `continue`) matched nothing in the
    /// events it read and says to continue; the second page has the match.
    async fn sparse_trail_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or("").to_string();
                let body = if line.contains("continue=") {
                    r#"{"items":[{"seq":5007,"time_ms":1,"actor":"a","action":"host.cordon","object_kind":"host","object":"h1","result":"success","message":""}]}"#
                } else {
                    r#"{"items":[],"continue":"5006"}"#
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
                seen.push(line);
            }
            seen
        });
        (addr, task)
    }

    #[tokio::test]
    async fn tailing_follows_continuations_past_pages_without_a_match() {
        let (addr, server) = sparse_trail_server().await;
        let c = Client::new(addr.to_string(), None).unwrap();
        let got = c.events_after(6, &EventQuery::default()).await.unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [5007]);
        let seen = server.await.unwrap();
        assert!(seen[0].contains("after_seq=6"), "{seen:?}");
        assert!(seen[1].contains("continue=5006"), "{seen:?}");
    }
}
