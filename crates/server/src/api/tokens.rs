//! API tokens (admin only): create, list, revoke.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::Json;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::api::{CreateToken, ListResponse, TokenCreated};
use jdos_types::{keys, Role, Token};

use super::list::PageParams;
use super::{Route, PAGE_PARAMS};
use crate::auth::{self, Caller};
use crate::error::HttpError;
use crate::events::Mutation;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::kv;
use crate::state::AppState;

/// The routes of this resource.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/api/v1/tokens", create_handler)
            .doc(
                "tokens",
                "Create a token (admin); the secret is shown only in this answer",
            )
            .accepts::<CreateToken>()
            .returns::<TokenCreated>()
            .status(201),
        Route::new(Method::GET, "/api/v1/tokens", list_handler)
            .doc(
                "tokens",
                "List tokens (admin); secrets and their hashes are never shown",
            )
            .query(&PAGE_PARAMS)
            .returns::<ListResponse<Token>>(),
        Route::new(Method::DELETE, "/api/v1/tokens/{id}", delete_handler)
            .doc(
                "tokens",
                "Revoke a token (admin); answers the revoked token",
            )
            .returns::<Token>(),
    ]
}

const ADMIN: &[Role] = &[Role::Admin];

async fn create_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), HttpError> {
    let draft = st.draft(&caller, "token.create", "token", &req.name);
    st.audited(draft, async {
        caller.require(ADMIN, "manage tokens")?;
        Ok((StatusCode::CREATED, Json(create(&st, &caller, req).await?)))
    })
    .await
}

/// Mints and stores a token.
#[tracing::instrument(skip_all, fields(token_name = %req.name))]
pub async fn create(
    st: &AppState,
    caller: &Caller,
    req: CreateToken,
) -> Result<TokenCreated, HttpError> {
    let minted = auth::mint(&req.name, req.role, req.department.clone(), st.now_ms())?;
    let id = minted.record.id.clone();
    let key = keys::token(&id);
    let m = Mutation {
        compares: vec![Compare::absent(key.as_str())],
        ops: vec![TxnOp::put(key.as_str(), json::encode(&minted.record)?)],
        event: st
            .draft(caller, "token.create", "token", &id)
            .message(format!(
                "{} token {:?}{}",
                req.role,
                req.name,
                req.department
                    .as_deref()
                    .map(|d| format!(" for department {d}"))
                    .unwrap_or_default()
            )),
    };
    // The id is fresh randomness: a stale answer means an id collision, which
    // the plan cannot fix by re-reading, so it is not re-planned.
    match st.events().commit(st.store(), m, st.now_ms()).await? {
        crate::events::Commit::Done { .. } => Ok(TokenCreated {
            id,
            token: minted.bearer,
            name: req.name,
            role: req.role,
            department: req.department,
        }),
        crate::events::Commit::Stale => Err(HttpError::conflict("token id collision: try again")),
    }
}

fn redacted(mut t: Token) -> Token {
    t.secret_sha256 = String::new();
    t
}

async fn list_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<Token>>, HttpError> {
    caller.require(ADMIN, "list tokens")?;
    let found = page
        .list(st.store(), keys::TOKENS, |_: &Token| true)
        .await?;
    let mut resp = found;
    resp.items = resp.items.into_iter().map(redacted).collect();
    Ok(Json(resp))
}

async fn delete_handler(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Token>, HttpError> {
    let draft = st.draft(&caller, "token.delete", "token", &id);
    st.audited(draft, async {
        caller.require(ADMIN, "revoke tokens")?;
        Ok(Json(delete(&st, &caller, &id).await?))
    })
    .await
}

/// Revokes a token; refuses to revoke the last admin token.
#[tracing::instrument(skip(st, caller))]
pub async fn delete(st: &AppState, caller: &Caller, id: &str) -> Result<Token, HttpError> {
    st.mutate(|| async move {
        let cur = kv::get_json::<Token>(st.store(), &keys::token(id))
            .await?
            .ok_or_else(|| HttpError::not_found("token", id))?;
        let mut compares = vec![Compare::mod_revision(keys::token(id), cur.mod_revision)];
        if cur.value.role == Role::Admin {
            // Tokens are few; the other admin tokens must still exist when
            // this one goes, so that two concurrent revocations cannot
            // remove the last two.
            let others: Vec<Token> = kv::list_all::<Token>(st.store(), keys::TOKENS)
                .await?
                .into_iter()
                .filter(|t| t.role == Role::Admin && t.id != id)
                .collect();
            if others.is_empty() {
                return Err(HttpError::conflict(
                    "this is the last admin token: create another admin token before revoking it",
                ));
            }
            for t in &others {
                compares.push(Compare {
                    key: keys::token(&t.id),
                    op: jdos_store::CmpOp::NotEqual,
                    target: jdos_store::CmpTarget::CreateRevision(0),
                });
            }
        }
        let m = Mutation {
            compares,
            ops: vec![TxnOp::delete(keys::token(id))],
            event: st
                .draft(caller, "token.delete", "token", id)
                .message(format!(
                    "revoked {} token {:?}",
                    cur.value.role, cur.value.name
                )),
        };
        Ok((m, redacted(cur.value)))
    })
    .await
}
