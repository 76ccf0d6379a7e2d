//! Hosts: register, list, describe, patch, cordon, uncordon, delete.

use jdos_types::api::{HostDetail, ListResponse, RegisterHost, UpdateHost};
use jdos_types::Host;
use reqwest::Method;

use crate::{collect_pages, seg, Client, ClientError, HostQuery};

impl Client {
    /// `POST /api/v1/hosts`: registers (or re-registers) a host. Admin or ops.
    pub async fn register_host(&self, host: &RegisterHost) -> Result<Host, ClientError> {
        self.send_json(Method::POST, "/api/v1/hosts", host).await
    }

    /// `GET /api/v1/hosts`: one page of hosts.
    pub async fn list_hosts(&self, q: &HostQuery) -> Result<ListResponse<Host>, ClientError> {
        self.get_json("/api/v1/hosts", q).await
    }

    /// Every host matching `q`'s filters, following `continue` tokens
    /// (`q.limit` is the page size; `q.continue_token` is ignored).
    pub async fn all_hosts(&self, q: &HostQuery) -> Result<Vec<Host>, ClientError> {
        collect_pages(|cont| {
            let q = HostQuery {
                continue_token: cont,
                ..q.clone()
            };
            async move { self.list_hosts(&q).await }
        })
        .await
    }

    /// `GET /api/v1/hosts/{name}`: a host, its allocation and its containers.
    pub async fn get_host(&self, name: &str) -> Result<HostDetail, ClientError> {
        self.get_json(&format!("/api/v1/hosts/{}", seg(name)), &())
            .await
    }

    /// `PATCH /api/v1/hosts/{name}`: changes capacity, resource zone or labels.
    pub async fn update_host(&self, name: &str, patch: &UpdateHost) -> Result<Host, ClientError> {
        self.send_json(
            Method::PATCH,
            &format!("/api/v1/hosts/{}", seg(name)),
            patch,
        )
        .await
    }

    /// `POST /api/v1/hosts/{name}/cordon`: no new containers go there.
    pub async fn cordon_host(&self, name: &str) -> Result<Host, ClientError> {
        self.send_empty(Method::POST, &format!("/api/v1/hosts/{}/cordon", seg(name)))
            .await
    }

    /// `POST /api/v1/hosts/{name}/uncordon`: schedulable again.
    pub async fn uncordon_host(&self, name: &str) -> Result<Host, ClientError> {
        self.send_empty(
            Method::POST,
            &format!("/api/v1/hosts/{}/uncordon", seg(name)),
        )
        .await
    }

    /// `DELETE /api/v1/hosts/{name}`: forgets a host.
    pub async fn delete_host(&self, name: &str) -> Result<(), ClientError> {
        self.send_discard(Method::DELETE, &format!("/api/v1/hosts/{}", seg(name)))
            .await
    }
}
