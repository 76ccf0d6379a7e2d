//! Tasks of the workflow engine (list, get, cancel) and the operations that
//! start them (scale, batch scale, delete), each answered with its task.

use std::collections::BTreeMap;

use jdos_types::api::ListResponse;
use jdos_types::{GroupKey, Task, TaskState};
use reqwest::Method;
use serde::Serialize;

use crate::{seg, Client, ClientError};

/// `GET /api/v1/tasks?app=&state=&kind=&active=&limit=` (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskQuery {
    /// Only tasks of this app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only tasks in this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// Only tasks of this kind (`deploy`, `scale` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only unfinished tasks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
    /// At most this many (server default 100, at most 5000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Which groups a batch scale picks (every condition must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScaleSelector {
    /// Apps of this department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Apps carrying all these labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Groups of this environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Groups of this datacenter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
}

/// Body of `POST /api/v1/scale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchScaleRequest {
    /// Which groups.
    pub selector: ScaleSelector,
    /// `N`, `+N`, `-N`, `+P%` or `-P%`.
    pub replicas: String,
    /// Seconds each group's scale may wait for its containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

#[derive(Serialize)]
struct ScaleBody {
    replicas: u32,
}

fn group_path(key: &GroupKey) -> String {
    format!(
        "/api/v1/groups/{}/{}/{}",
        seg(&key.app),
        seg(&key.env),
        seg(&key.group)
    )
}

impl Client {
    /// `GET /api/v1/tasks`: tasks matching `q`, newest first.
    pub async fn list_tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, ClientError> {
        let page: ListResponse<Task> = self.get_json("/api/v1/tasks", q).await?;
        Ok(page.items)
    }

    /// `GET /api/v1/tasks/{id}`: a task with its step timeline and progress.
    pub async fn get_task(&self, id: &str) -> Result<Task, ClientError> {
        self.get_json(&format!("/api/v1/tasks/{}", seg(id)), &())
            .await
    }

    /// `POST /api/v1/tasks/{id}/cancel`: a pending task at once, a running
    /// one at its next step boundary.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, ClientError> {
        self.send_empty(Method::POST, &format!("/api/v1/tasks/{}/cancel", seg(id)))
            .await
    }

    /// `POST /api/v1/groups/{app}/{env}/{group}/scale`: a scale task to
    /// `replicas`.
    pub async fn scale_group(&self, key: &GroupKey, replicas: u32) -> Result<Task, ClientError> {
        self.send_json(
            Method::POST,
            &format!("{}/scale", group_path(key)),
            &ScaleBody { replicas },
        )
        .await
    }

    /// `POST /api/v1/scale`: a batch scale task over every group the
    /// selector picks (it starts a scale task per group).
    pub async fn batch_scale(&self, req: &BatchScaleRequest) -> Result<Task, ClientError> {
        self.send_json(Method::POST, "/api/v1/scale", req).await
    }

    /// `DELETE /api/v1/groups/{app}/{env}/{group}`: a delete_group task.
    pub async fn delete_group(&self, key: &GroupKey) -> Result<Task, ClientError> {
        self.send_empty(Method::DELETE, &group_path(key)).await
    }

    /// `POST /api/v1/apps/{name}/delete`: a delete_app task (every group,
    /// its containers, then the app).
    pub async fn delete_app_task(&self, name: &str) -> Result<Task, ClientError> {
        self.send_empty(Method::POST, &format!("/api/v1/apps/{}/delete", seg(name)))
            .await
    }
}
