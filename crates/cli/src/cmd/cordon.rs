//! `jdos cordon host NAME` / `jdos uncordon host NAME`.

use jdos_types::Host;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to (un)cordon.
    #[command(subcommand)]
    pub what: What,
}

/// Objects that can be cordoned.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A host: no new containers are placed on it (running ones stay).
    Host {
        /// Host name.
        name: String,
    },
}

/// Cordons (`on = true`) or uncordons a host.
pub async fn run(a: Args, g: &GlobalOpts, on: bool) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let What::Host { name } = a.what;
    let host = if on {
        client.cordon_host(&name).await?
    } else {
        client.uncordon_host(&name).await?
    };
    super::print(g, &host, || render(&host))
}

/// `host/NAME cordoned` or `host/NAME uncordoned`.
pub fn render(h: &Host) -> String {
    let what = if h.cordoned { "cordoned" } else { "uncordoned" };
    format!("host/{} {what}\n", h.name)
}
