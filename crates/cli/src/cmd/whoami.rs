//! `jdos whoami`: which token the CLI uses and what it may do.

use jdos_types::api::WhoAmI;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Asks the server who the token is.
pub async fn run(_a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let me = client.whoami().await?;
    super::print(g, &me, || render(&me, client.addr()))
}

/// `name: …`, `role: …`, `department: …`, `server: …`.
pub fn render(me: &WhoAmI, addr: &str) -> String {
    format!(
        "name:        {}\nrole:        {}\ndepartment:  {}\nserver:      {}\n",
        me.name,
        me.role,
        me.department.as_deref().unwrap_or("-"),
        addr
    )
}
