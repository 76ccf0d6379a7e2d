//! Declarative apps (`POST /api/v1/apply`), groups and containers.

use jdos_types::api::{GroupDetail, ListResponse};
use jdos_types::apply::ApplyResult;
use jdos_types::spec::AppSpec;
use jdos_types::{Container, Group, GroupKey};
use reqwest::Method;

use crate::{collect_pages, seg, Client, ClientError, ContainerQuery, GroupQuery};

impl Client {
    /// `POST /api/v1/apply`: applies an app spec (or, with `dry_run`, only
    /// answers the diff). The server validates the whole spec and reports
    /// every bad field at once.
    pub async fn apply(&self, spec: &AppSpec, dry_run: bool) -> Result<ApplyResult, ClientError> {
        let path = if dry_run {
            "/api/v1/apply?dry_run=true"
        } else {
            "/api/v1/apply"
        };
        self.send_json(Method::POST, path, spec).await
    }

    /// `GET /api/v1/groups`: one page of groups.
    pub async fn list_groups(&self, q: &GroupQuery) -> Result<ListResponse<Group>, ClientError> {
        self.get_json("/api/v1/groups", q).await
    }

    /// Every group matching `q`'s filters, following `continue` tokens.
    pub async fn all_groups(&self, q: &GroupQuery) -> Result<Vec<Group>, ClientError> {
        collect_pages(|cont| {
            let q = GroupQuery {
                continue_token: cont,
                ..q.clone()
            };
            async move { self.list_groups(&q).await }
        })
        .await
    }

    /// `GET /api/v1/groups/{app}/{env}/{group}`: a group with its containers.
    pub async fn get_group(&self, key: &GroupKey) -> Result<GroupDetail, ClientError> {
        self.get_json(
            &format!(
                "/api/v1/groups/{}/{}/{}",
                seg(&key.app),
                seg(&key.env),
                seg(&key.group)
            ),
            &(),
        )
        .await
    }

    /// `GET /api/v1/containers`: one page of containers.
    pub async fn list_containers(
        &self,
        q: &ContainerQuery,
    ) -> Result<ListResponse<Container>, ClientError> {
        self.get_json("/api/v1/containers", q).await
    }

    /// Every container matching `q`'s filters, following `continue` tokens.
    pub async fn all_containers(&self, q: &ContainerQuery) -> Result<Vec<Container>, ClientError> {
        collect_pages(|cont| {
            let q = ContainerQuery {
                continue_token: cont,
                ..q.clone()
            };
            async move { self.list_containers(&q).await }
        })
        .await
    }
}
