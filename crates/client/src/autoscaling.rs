//! The autoscaling controller's view of groups.

use jdos_types::autoscaling::AutoscaleStatus;

use crate::{seg, Client, ClientError};

#[derive(serde::Serialize)]
struct AppFilter<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'a str>,
}

impl Client {
    /// `GET /api/v1/autoscaling/{app}/{env}/{group}`: a group's policy and
    /// the controller's last evaluation.
    pub async fn autoscaling_status(
        &self,
        app: &str,
        env: &str,
        group: &str,
    ) -> Result<AutoscaleStatus, ClientError> {
        let path = format!(
            "/api/v1/autoscaling/{}/{}/{}",
            seg(app),
            seg(env),
            seg(group)
        );
        self.get_json(&path, &AppFilter { app: None }).await
    }

    /// `GET /api/v1/autoscaling`: every autoscaled group (of `app`) the
    /// caller may see.
    pub async fn autoscaling_statuses(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<AutoscaleStatus>, ClientError> {
        self.get_json("/api/v1/autoscaling", &AppFilter { app })
            .await
    }
}
