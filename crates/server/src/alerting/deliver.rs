//! Delivering notifications: email over SMTP (lettre, plain SMTP to a relay),
//! SMS as a JSON POST to a gateway, and generic webhooks.

use std::time::Duration;

use jdos_types::alert::{EmailReceiver, Notification, Receiver, ReceiverKind};
use serde::Serialize;

/// A delivery that failed (after its retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{receiver}: {message}")]
pub struct DeliveryError {
    /// Receiver name.
    pub receiver: String,
    /// What went wrong.
    pub message: String,
}

/// Sends notifications to receivers.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one notification.
    async fn send(&self, receiver: &Receiver, n: &Notification) -> Result<(), DeliveryError>;
}

/// The real deliverer.
#[derive(Debug, Clone, Default)]
pub struct Dispatcher {
    http: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher with its own HTTP connection pool.
    pub fn new() -> Self {
        Dispatcher {
            http: reqwest::Client::new(),
        }
    }
}

/// The body an SMS gateway receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SmsMessage {
    /// Phone numbers.
    pub to: Vec<String>,
    /// Text.
    pub message: String,
}

#[async_trait::async_trait]
impl Notifier for Dispatcher {
    async fn send(&self, receiver: &Receiver, n: &Notification) -> Result<(), DeliveryError> {
        let fail = |message: String| DeliveryError {
            receiver: receiver.name.clone(),
            message,
        };
        match &receiver.kind {
            ReceiverKind::Email(m) => send_email(m, n).await.map_err(fail),
            ReceiverKind::Sms(s) => {
                let body = SmsMessage {
                    to: s.to.clone(),
                    message: n.short_text(),
                };
                post_json(
                    &self.http,
                    &s.url,
                    s.token.as_deref(),
                    &body,
                    s.timeout.to_std(),
                    s.retries,
                )
                .await
                .map_err(fail)
            }
            ReceiverKind::Webhook(w) => post_json(
                &self.http,
                &w.url,
                w.token.as_deref(),
                n,
                w.timeout.to_std(),
                w.retries,
            )
            .await
            .map_err(fail),
        }
    }
}

/// Sends `n` as a plain-text mail through the receiver's SMTP relay.
pub async fn send_email(m: &EmailReceiver, n: &Notification) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::message::Mailbox;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let parse = |a: &str| -> Result<Mailbox, String> {
        a.parse::<Mailbox>()
            .map_err(|e| format!("bad address {a:?}: {e}"))
    };
    let mut b = Message::builder()
        .from(parse(&m.from)?)
        .subject(n.subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &m.to {
        b = b.to(parse(to)?);
    }
    let mail = b
        .body(n.body())
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    // Plain SMTP to a relay: the receiver's host is an MTA on the host or
    // the local network; this build carries no TLS stack.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&m.smtp_host)
        .port(m.smtp_port)
        .timeout(Some(m.timeout.to_std()))
        .build();
    transport
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| format!("smtp {}:{}: {e}", m.smtp_host, m.smtp_port))
}

/// POSTs JSON with a timeout per attempt, retrying connection errors, 5xx
/// and 429 with a doubling back-off (250 ms, 500 ms, 1 s…).
async fn post_json<T: Serialize + ?Sized>(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &T,
    timeout: Duration,
    retries: u32,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        let mut req = http.post(url).json(body).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                last = format!(
                    "{url} answered {status}: {}",
                    text.chars().take(200).collect::<String>()
                );
                let retriable = status.is_server_error() || status.as_u16() == 429;
                if !retriable {
                    return Err(last);
                }
            }
            Err(e) => last = format!("{url}: {e}"),
        }
        tracing::debug!(url, attempt, error = %last, "delivery attempt failed");
    }
    Err(format!("{last} (after {} attempts)", retries + 1))
}
