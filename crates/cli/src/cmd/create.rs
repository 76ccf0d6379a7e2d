//! `jdos create token --name N --role R [--department D]`.

use jdos_types::api::{CreateToken, TokenCreated};
use jdos_types::Role;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to create.
    #[command(subcommand)]
    pub what: What,
}

/// Objects `create` makes.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// An API token (admin only); its secret is shown once.
    Token(TokenArgs),
}

/// `create token` flags.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Name, shown as the actor of the events it causes.
    #[arg(long)]
    pub name: String,
    /// Role.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Department (required for developers: they see only its apps).
    #[arg(long)]
    pub department: Option<String>,
}

/// Roles, as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything, including tokens.
    Admin,
    /// Hosts, networks, every app; not tokens.
    Ops,
    /// Only the apps of its own department.
    Developer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Ops => Role::Ops,
            RoleArg::Developer => Role::Developer,
        }
    }
}

/// Creates the object.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        What::Token(t) => {
            let created = client
                .create_token(&CreateToken {
                    name: t.name,
                    role: t.role.into(),
                    department: t.department,
                })
                .await?;
            super::print(g, &created, || render_token(&created, client.addr()))
        }
    }
}

/// The token once, and how to use it.
pub fn render_token(t: &TokenCreated, addr: &str) -> String {
    let dept = t
        .department
        .as_deref()
        .map(|d| format!(", department {d}"))
        .unwrap_or_default();
    format!(
        "token/{} created: {} ({}{dept})\ntoken: {}\n\nThe secret is shown only now. Use it with:\n  jdos login --addr {addr} --token {}\n",
        t.id, t.name, t.role, t.token, t.token
    )
}
