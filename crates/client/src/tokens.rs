//! API tokens (admin only).

use jdos_types::api::{CreateToken, ListResponse, TokenCreated};
use jdos_types::Token;
use reqwest::Method;

use crate::{collect_pages, seg, Client, ClientError, ListQuery};

impl Client {
    /// `POST /api/v1/tokens`: creates a token; the answer is the only time
    /// its secret is shown.
    pub async fn create_token(&self, req: &CreateToken) -> Result<TokenCreated, ClientError> {
        self.send_json(Method::POST, "/api/v1/tokens", req).await
    }

    /// `GET /api/v1/tokens`: one page of tokens (secrets are never listed).
    pub async fn list_tokens(&self, q: &ListQuery) -> Result<ListResponse<Token>, ClientError> {
        self.get_json("/api/v1/tokens", q).await
    }

    /// Every token, following `continue` tokens.
    pub async fn all_tokens(&self) -> Result<Vec<Token>, ClientError> {
        collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move { self.list_tokens(&q).await }
        })
        .await
    }

    /// `DELETE /api/v1/tokens/{id}`: revokes a token.
    pub async fn delete_token(&self, id: &str) -> Result<(), ClientError> {
        self.send_discard(Method::DELETE, &format!("/api/v1/tokens/{}", seg(id)))
            .await
    }
}
