//! Snapshot scale-out (its task is followed with [`Client::get_task`]).

use jdos_types::api::SnapshotScaleRequest;
use jdos_types::{GroupKey, Task};
use reqwest::Method;

use crate::{seg, Client, ClientError};

impl Client {
    /// `POST /api/v1/groups/{app}/{env}/{group}/snapshot-scale`: commits a
    /// running container of the group to an image and scales the group out
    /// to `req.replicas` with clones of it. Answers the task (`202`);
    /// follow it with [`Client::get_task`].
    pub async fn snapshot_scale(
        &self,
        group: &GroupKey,
        req: &SnapshotScaleRequest,
    ) -> Result<Task, ClientError> {
        self.send_json(
            Method::POST,
            &format!(
                "/api/v1/groups/{}/{}/{}/snapshot-scale",
                seg(&group.app),
                seg(&group.env),
                seg(&group.group)
            ),
            req,
        )
        .await
    }
}
