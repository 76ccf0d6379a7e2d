//! Alerting: policies, receivers, silences and alerts.

use jdos_types::alert::{Alert, AlertPolicy, AlertState, Receiver, Silence};
use jdos_types::api::ListResponse;
use reqwest::Method;
use serde::Serialize;

use crate::{collect_pages, seg, Client, ClientError, ListQuery};

/// Filters of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertQuery {
    /// Only this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<AlertState>,
    /// Only alerts with this app label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only alerts of this policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Continuation.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

impl Client {
    /// `POST /api/v1/alerting/policies`: creates or replaces a policy.
    pub async fn apply_alert_policy(&self, p: &AlertPolicy) -> Result<AlertPolicy, ClientError> {
        self.send_json(Method::POST, "/api/v1/alerting/policies", p)
            .await
    }

    /// Every policy the token may see.
    pub async fn all_alert_policies(&self) -> Result<Vec<AlertPolicy>, ClientError> {
        collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move {
                self.get_json::<ListResponse<AlertPolicy>, _>("/api/v1/alerting/policies", &q)
                    .await
            }
        })
        .await
    }

    /// `GET /api/v1/alerting/policies/{name}`.
    pub async fn get_alert_policy(&self, name: &str) -> Result<AlertPolicy, ClientError> {
        self.get_json(&format!("/api/v1/alerting/policies/{}", seg(name)), &())
            .await
    }

    /// `DELETE /api/v1/alerting/policies/{name}`: answers the deleted policy.
    pub async fn delete_alert_policy(&self, name: &str) -> Result<AlertPolicy, ClientError> {
        self.send_empty(
            Method::DELETE,
            &format!("/api/v1/alerting/policies/{}", seg(name)),
        )
        .await
    }

    /// `POST /api/v1/alerting/receivers`: creates or replaces a receiver
    /// (answered with its secret redacted).
    pub async fn apply_receiver(&self, r: &Receiver) -> Result<Receiver, ClientError> {
        self.send_json(Method::POST, "/api/v1/alerting/receivers", r)
            .await
    }

    /// Every receiver the token may see (secrets redacted).
    pub async fn all_receivers(&self) -> Result<Vec<Receiver>, ClientError> {
        collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move {
                self.get_json::<ListResponse<Receiver>, _>("/api/v1/alerting/receivers", &q)
                    .await
            }
        })
        .await
    }

    /// `DELETE /api/v1/alerting/receivers/{name}`.
    pub async fn delete_receiver(&self, name: &str) -> Result<Receiver, ClientError> {
        self.send_empty(
            Method::DELETE,
            &format!("/api/v1/alerting/receivers/{}", seg(name)),
        )
        .await
    }

    /// `POST /api/v1/alerting/silences`: answers the silence with its id.
    pub async fn create_silence(&self, s: &Silence) -> Result<Silence, ClientError> {
        self.send_json(Method::POST, "/api/v1/alerting/silences", s)
            .await
    }

    /// Every silence the token may see, optionally of one status
    /// (`active`, `pending`, `expired`).
    pub async fn all_silences(&self, status: Option<&str>) -> Result<Vec<Silence>, ClientError> {
        #[derive(Serialize)]
        struct Q<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a str>,
            #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
            continue_token: Option<String>,
        }
        collect_pages(|cont| {
            let q = Q {
                status,
                continue_token: cont,
            };
            async move {
                self.get_json::<ListResponse<Silence>, _>("/api/v1/alerting/silences", &q)
                    .await
            }
        })
        .await
    }

    /// `DELETE /api/v1/alerting/silences/{id}`: expires it now.
    pub async fn expire_silence(&self, id: &str) -> Result<Silence, ClientError> {
        self.send_empty(
            Method::DELETE,
            &format!("/api/v1/alerting/silences/{}", seg(id)),
        )
        .await
    }

    /// Every alert matching `q` (its `limit` is the page size).
    pub async fn all_alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, ClientError> {
        collect_pages(|cont| {
            let q = AlertQuery {
                continue_token: cont,
                ..q.clone()
            };
            async move {
                self.get_json::<ListResponse<Alert>, _>("/api/v1/alerts", &q)
                    .await
            }
        })
        .await
    }
}
