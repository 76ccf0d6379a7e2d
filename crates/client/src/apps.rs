//! Apps (a developer token sees only its own department's).

use jdos_types::api::ListResponse;
use jdos_types::App;
use reqwest::Method;

use crate::{collect_pages, seg, Client, ClientError, ListQuery};

impl Client {
    /// `POST /api/v1/apps`: creates an app.
    pub async fn create_app(&self, app: &App) -> Result<App, ClientError> {
        self.send_json(Method::POST, "/api/v1/apps", app).await
    }

    /// `GET /api/v1/apps`: one page of apps.
    pub async fn list_apps(&self, q: &ListQuery) -> Result<ListResponse<App>, ClientError> {
        self.get_json("/api/v1/apps", q).await
    }

    /// Every app the token may see, following `continue` tokens.
    pub async fn all_apps(&self) -> Result<Vec<App>, ClientError> {
        collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move { self.list_apps(&q).await }
        })
        .await
    }

    /// `GET /api/v1/apps/{name}`.
    pub async fn get_app(&self, name: &str) -> Result<App, ClientError> {
        self.get_json(&format!("/api/v1/apps/{}", seg(name)), &())
            .await
    }

    /// `PUT /api/v1/apps/{name}`: replaces an app.
    pub async fn update_app(&self, app: &App) -> Result<App, ClientError> {
        self.send_json(
            Method::PUT,
            &format!("/api/v1/apps/{}", seg(&app.name)),
            app,
        )
        .await
    }

    /// `DELETE /api/v1/apps/{name}`.
    pub async fn delete_app(&self, name: &str) -> Result<(), ClientError> {
        self.send_discard(Method::DELETE, &format!("/api/v1/apps/{}", seg(name)))
            .await
    }
}
