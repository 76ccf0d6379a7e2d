//! Bearer-token authentication and role checks.
//!
//! A token is `<id>.<secret>`: the id names the stored [`Token`] record, the
//! secret is checked against its SHA-256 (the secret itself is never stored).

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jdos_store::{json, Compare, TxnOp};
use jdos_types::{keys, Role, Token, Validate};
use sha2::{Digest, Sha256};

use crate::error::{HttpError, ServerError};
use crate::events::{Commit, EventDraft, Mutation};
use crate::kv;
use crate::state::AppState;

/// Marker written with the first admin token, so that a restart on the same
/// store never creates another.
pub const BOOTSTRAP_KEY: &str = "/jdos/meta/bootstrapped";

/// Name of the file under the data dir holding the first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token id (empty for the server itself).
    pub token_id: String,
    /// Token name: the actor of the events it causes.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department of a developer token.
    pub department: Option<String>,
}

impl Caller {
    /// The server acting on its own behalf (bootstrap, `jdos dev` seeding).
    pub fn system(name: &str) -> Self {
        Caller {
            token_id: String::new(),
            name: name.to_string(),
            role: Role::Admin,
            department: None,
        }
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), HttpError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(HttpError::forbidden(format!(
                "a {} token may not {what}: ask an operator for a token with role {}",
                self.role,
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// True when the caller may see and change objects of `department`.
    pub fn in_scope(&self, department: &str) -> bool {
        match self.role {
            Role::Admin | Role::Ops => true,
            Role::Developer => self.department.as_deref() == Some(department),
        }
    }

    /// 403 unless [`Caller::in_scope`].
    pub fn require_scope(&self, department: &str, what: &str) -> Result<(), HttpError> {
        if self.in_scope(department) {
            Ok(())
        } else {
            // Not naming `department`: which department owns an app is
            // itself something a developer of another one may not see.
            Err(HttpError::forbidden(format!(
                "{what} is outside this token's department {:?}: ask an operator or a token of that app's department",
                self.department.as_deref().unwrap_or("")
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| {
                HttpError::unauthorized(
                    "missing Authorization header: send 'Authorization: Bearer <token>' (see admin.token in the server's data dir)",
                )
            })?
            .to_str()
            .map_err(|_| HttpError::unauthorized("the Authorization header is not ASCII"))?;
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` is Bearer.
        let bearer = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| {
                HttpError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        authenticate(state, bearer.trim()).await
    }
}

/// Checks a bearer string `<id>.<secret>` against the stored tokens.
pub async fn authenticate(state: &AppState, bearer: &str) -> Result<Caller, HttpError> {
    let bad = || HttpError::unauthorized("invalid or revoked token");
    let (id, secret) = bearer.split_once('.').ok_or_else(bad)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let token: Token = match kv::get_json(state.store(), &keys::token(id)).await? {
        Some(t) => t.value,
        None => return Err(bad()),
    };
    if !constant_time_eq(
        hash_secret(secret).as_bytes(),
        token.secret_sha256.as_bytes(),
    ) {
        return Err(bad());
    }
    Ok(Caller {
        token_id: token.id,
        name: token.name,
        role: token.role,
        department: token.department,
    })
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `n` bytes of OS randomness, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, HttpError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)
        .map_err(|e| HttpError::internal(format!("no OS randomness for a token: {e}")))?;
    Ok(hex(&buf))
}

/// A freshly minted token: the record to store and the bearer string to show once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// The record (hash only).
    pub record: Token,
    /// `<id>.<secret>`.
    pub bearer: String,
}

/// Mints a token (validated, not yet stored).
pub fn mint(
    name: &str,
    role: Role,
    department: Option<String>,
    now_ms: u64,
) -> Result<MintedToken, HttpError> {
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    let record = Token {
        id: id.clone(),
        name: name.to_string(),
        role,
        department,
        secret_sha256: hash_secret(&secret),
        created_at_ms: now_ms,
    };
    record.validate()?;
    Ok(MintedToken {
        record,
        bearer: format!("{id}.{secret}"),
    })
}

/// On the first start against a store, creates the admin token, writes it
/// to `<data_dir>/admin.token` (mode 0600) and returns it; on every later
/// start returns `None`. The file is written before the store commit so that
/// a crash between the two cannot leave an admin token nobody knows.
pub async fn bootstrap_admin(
    state: &AppState,
    data_dir: Option<&Path>,
) -> Result<Option<String>, ServerError> {
    if state.store().get(BOOTSTRAP_KEY).await?.is_some() {
        return Ok(None);
    }
    let now = state.now_ms();
    let minted = mint("admin", Role::Admin, None, now)?;
    let file = data_dir.map(|d| d.join(ADMIN_TOKEN_FILE));
    if let Some(path) = &file {
        write_secret_file(path, &format!("{}\n", minted.bearer)).map_err(|source| {
            ServerError::DataDir {
                path: path.clone(),
                source,
            }
        })?;
    }
    let id = minted.record.id.clone();
    let m = Mutation {
        compares: vec![
            Compare::absent(BOOTSTRAP_KEY),
            Compare::absent(keys::token(&id)),
        ],
        ops: vec![
            TxnOp::put(BOOTSTRAP_KEY, json::encode(&now)?),
            TxnOp::put(keys::token(&id), json::encode(&minted.record)?),
        ],
        event: EventDraft::new("system", "token.create", "token", &id)
            .message("first start: created the admin token"),
    };
    match state.events().commit(state.store(), m, now).await? {
        Commit::Done { .. } => {
            tracing::info!(token = %id, "created the admin token");
            Ok(Some(minted.bearer))
        }
        Commit::Stale => {
            // Another replica bootstrapped first: its token is the admin token.
            if let Some(path) = &file {
                let _ = std::fs::remove_file(path);
            }
            Ok(None)
        }
    }
}

pub(crate) fn write_secret_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("token.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
