//! Typed async client for the jdos HTTP API (`/api/v1/…`).
//!
//! It depends on `jdos-types` and `reqwest` only (no server code), so the CLI
//! and third-party tools stay light, as `kube-client` does over `kube-core`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jdos_client::ClientError> {
//! let client = jdos_client::Client::new("127.0.0.1:7070", Some("id.secret".into()))?;
//! let me = client.whoami().await?;
//! let hosts = client.all_hosts(&jdos_client::HostQuery::default()).await?;
//! println!("{} sees {} hosts", me.name, hosts.len());
//! # Ok(())
//! # }
//! ```
//!
//! Every method maps one route; list routes come in two flavours: one page
//! (`list_*`, with `limit` and `continue`) and every page (`all_*`).

mod agents;
mod alerting;
mod apply;
mod apps;
mod autoscaling;
mod error;
mod events;
mod failover;
mod hosts;
mod metrics;
mod networks;
mod query;
mod snapshot;
mod tasks;
mod tokens;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use alerting::AlertQuery;
pub use error::ClientError;
pub use jdos_types::api::ListResponse;
pub use query::{ContainerQuery, EventQuery, GroupQuery, HostQuery, ListQuery};
pub use tasks::{BatchScaleRequest, ScaleSelector, TaskQuery};

use jdos_types::api::WhoAmI;
use jdos_types::topology::TopologyNode;

/// How long to wait for a TCP connection before telling the user the server
/// is not there: loopback and LAN servers answer in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of one request, so a wedged server does not hang a script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Cap on the pages `all_*` helpers follow, against a server that keeps
/// answering with a `continue` token (a bug, not a big cluster: 150,000 items
/// at 500 per page is 300 pages).
const MAX_PAGES: usize = 100_000;

/// A handle on one jdos server. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `addr` (`http://host:port`, or `host:port`
    /// meaning `http://`), authenticating with the bearer `token`
    /// (`<id>.<secret>`) when one is given.
    pub fn new(addr: impl AsRef<str>, token: Option<String>) -> Result<Self, ClientError> {
        let base = normalize_addr(addr.as_ref())?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Http {
                addr: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Client {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The server's base URL, e.g. `http://127.0.0.1:7070`.
    pub fn addr(&self) -> &str {
        &self.base
    }

    /// True when a token was given.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /healthz`: `Ok` when the server answers `200`.
    pub async fn health(&self) -> Result<(), ClientError> {
        let resp = self.send(self.request(Method::GET, "/healthz")).await?;
        self.check(resp).await.map(|_| ())
    }

    /// `GET /metrics`: the Prometheus exposition text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self.send(self.request(Method::GET, "/metrics")).await?;
        let resp = self.check(resp).await?;
        resp.text().await.map_err(|e| self.transport(e))
    }

    /// `GET /api/v1/openapi.json`: the OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/api/v1/openapi.json", &()).await
    }

    /// `GET /api/v1/whoami`: who the token is.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get_json("/api/v1/whoami", &()).await
    }

    /// `GET /api/v1/datacenters`: the topology tree (datacenter → switch →
    /// rack → host) with capacity and usage summed per level.
    pub async fn datacenters(&self) -> Result<Vec<TopologyNode>, ClientError> {
        self.get_json("/api/v1/datacenters", &()).await
    }

    // ---- building blocks, shared by the per-resource modules ----

    /// A request to `path` (starting with `/`), with the bearer token.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// `GET path?query` decoded as `T`.
    pub(crate) async fn get_json<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        self.call(self.request(Method::GET, path).query(query))
            .await
    }

    /// `method path` with a JSON body, answer decoded as `T`.
    pub(crate) async fn send_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(self.request(method, path).json(body)).await
    }

    /// `method path` without a body, answer decoded as `T`.
    pub(crate) async fn send_empty<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call(self.request(method, path)).await
    }

    /// `method path` without a body, answer body ignored (e.g. `DELETE`).
    pub(crate) async fn send_discard(&self, method: Method, path: &str) -> Result<(), ClientError> {
        let resp = self.send(self.request(method, path)).await?;
        self.check(resp).await.map(|_| ())
    }

    /// Sends, checks the status and decodes the body.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        rb: RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(rb).await?;
        let resp = self.check(resp).await?;
        let url = resp.url().path().to_string();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: url,
            message: e.to_string(),
        })
    }

    async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        rb.send().await.map_err(|e| self.transport(e))
    }

    /// Turns a non-2xx answer into [`ClientError::Api`].
    async fn check(&self, resp: Response) -> Result<Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(ClientError::Api {
            status: status.as_u16(),
            error: error::api_error_from_body(status, &body),
        })
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Connect {
                addr: self.base.clone(),
                message: error::root_cause(&e),
            }
        } else if e.is_timeout() {
            ClientError::Timeout {
                addr: self.base.clone(),
            }
        } else if e.is_decode() {
            ClientError::Decode {
                what: e.url().map(|u| u.path().to_string()).unwrap_or_default(),
                message: error::root_cause(&e),
            }
        } else {
            ClientError::Http {
                addr: self.base.clone(),
                message: error::root_cause(&e),
            }
        }
    }
}

/// Accepts `host:port`, `http://host:port` or `https://…`, drops a trailing
/// slash, and refuses anything else with a hint.
fn normalize_addr(addr: &str) -> Result<String, ClientError> {
    let a = addr.trim().trim_end_matches('/');
    if a.is_empty() {
        return Err(ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason: "it is empty".to_string(),
        });
    }
    let with_scheme = if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else if a.contains("://") {
        return Err(ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason: "only http:// and https:// are supported".to_string(),
        });
    } else {
        format!("http://{a}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(u) if u.host_str().is_some() => Ok(with_scheme),
        Ok(_) => Err(ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason: "it has no host".to_string(),
        }),
        Err(e) => Err(ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Percent-encodes one path segment (names are DNS labels, but a user may
/// type anything: `/` or `?` must not change the route).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Follows `continue` tokens until the last page.
pub(crate) async fn collect_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, ClientError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<ListResponse<T>, ClientError>>,
{
    let mut items = Vec::new();
    let mut cont: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let resp = page(cont.take()).await?;
        items.extend(resp.items);
        match resp.continue_token {
            Some(c) if !c.is_empty() => cont = Some(c),
            _ => return Ok(items),
        }
    }
    Err(ClientError::Decode {
        what: "list".to_string(),
        message: format!("the server kept answering with a continue token after {MAX_PAGES} pages"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(
            normalize_addr("127.0.0.1:7070").unwrap(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            normalize_addr("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert!(matches!(
            normalize_addr("ftp://x"),
            Err(ClientError::InvalidAddress { .. })
        ));
        assert!(matches!(
            normalize_addr(" "),
            Err(ClientError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("host-1.a"), "host-1.a");
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[tokio::test]
    async fn refused_connection_says_how_to_start_a_server() {
        // Bind then drop a listener so the port is (almost surely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(format!("127.0.0.1:{port}"), None).unwrap();
        let err = c.whoami().await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("jdos dev"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
}
