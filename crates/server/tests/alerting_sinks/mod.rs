//! Real protocol peers for the alerting tests, on loopback ports: an SMTP
//! server that accepts and keeps mail, and an HTTP server that keeps the
//! JSON it is posted (an SMS gateway or a webhook endpoint).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One mail as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The message (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// A header's value, folded lines joined.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut out: Option<String> = None;
        let mut in_it = false;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if in_it {
                    if let Some(o) = out.as_mut() {
                        o.push(' ');
                        o.push_str(line.trim_start());
                    }
                }
                continue;
            }
            in_it = false;
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    out = Some(v.trim().to_string());
                    in_it = true;
                }
            }
        }
        out
    }

    /// The body, quoted-printable decoded when so encoded.
    pub fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if !qp {
            return body.to_string();
        }
        let joined = body.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An SMTP server on a loopback port that keeps every mail it accepts.
#[derive(Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            addr: listener.local_addr().unwrap(),
            mails: Arc::default(),
            arrived: Arc::default(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = s.session(conn).await {
                        eprintln!("smtp sink session: {e}");
                    }
                });
            }
        });
        sink
    }

    async fn session(&self, conn: tokio::net::TcpStream) -> std::io::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink.test ESMTP ready\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end();
            let upper = cmd.to_ascii_uppercase();
            let addr = |s: &str| {
                s.split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map_or(String::new(), |(a, _)| a.to_string())
            };
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                b"250 sink.test\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = addr(cmd);
                to.clear();
                b"250 2.1.0 ok\r\n"
            } else if upper.starts_with("RCPT TO:") {
                to.push(addr(cmd));
                b"250 2.1.5 ok\r\n"
            } else if upper == "DATA" {
                w.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                self.mails.lock().unwrap().push(Mail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                self.arrived.notify_waiters();
                b"250 2.0.0 queued\r\n"
            } else if upper == "QUIT" {
                w.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            } else if upper == "RSET" || upper == "NOOP" {
                b"250 ok\r\n"
            } else {
                b"502 5.5.2 not implemented\r\n"
            };
            w.write_all(reply).await?;
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived (the send is synchronous, so
    /// this only covers the sink's own bookkeeping).
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            let m = self.mails();
            if m.len() >= n {
                return m;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("waited for {n} mails, got {}: {:?}", m.len(), m);
            }
        }
    }
}

/// One request the HTTP sink received.
#[derive(Debug, Clone)]
pub struct Posted {
    pub authorization: Option<String>,
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

/// An HTTP server on a loopback port that keeps every JSON body POSTed to
/// it; the first `fail_first` requests are answered 500.
#[derive(Clone)]
pub struct HttpSink {
    pub addr: SocketAddr,
    posted: Arc<Mutex<Vec<Posted>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl HttpSink {
    pub async fn start(fail_first: usize) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = HttpSink {
            addr: listener.local_addr().unwrap(),
            posted: Arc::default(),
            fail_first: Arc::new(Mutex::new(fail_first)),
        };
        let s = sink.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let s = s.clone();
                async move {
                    let status = {
                        let mut left = s.fail_first.lock().unwrap();
                        if *left > 0 {
                            *left -= 1;
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        }
                    };
                    s.posted.lock().unwrap().push(Posted {
                        authorization: headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        body: body.0,
                        status: status.as_u16(),
                    });
                    (status, "{}")
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        sink
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }

    /// The bodies answered 200.
    pub fn delivered(&self) -> Vec<Value> {
        self.posted()
            .into_iter()
            .filter(|p| p.status == 200)
            .map(|p| p.body)
            .collect()
    }
}
