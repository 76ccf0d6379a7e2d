//! `jdos login --addr ADDR --token TOKEN`: checks the token, then saves both
//! to the config file so the next commands need no flags.

use anyhow::Context;

use super::GlobalOpts;
use crate::config;

/// Arguments (the address and token are the global `--addr` / `--token`).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Verifies the token with `whoami` and writes the config file.
pub async fn run(_a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let addr = g.addr.clone().context(
        "login needs the server address: jdos login --addr http://HOST:PORT --token TOKEN",
    )?;
    let token = g
        .token
        .clone()
        .context("login needs a token: jdos login --addr ADDR --token ID.SECRET (an admin creates one with `jdos create token`)")?;
    let client = jdos_client::Client::new(&addr, Some(token.clone()))?;
    let me = client.whoami().await?;
    let path = config::path()?;
    config::save(
        &path,
        &config::Config {
            addr: Some(client.addr().to_string()),
            token: Some(token),
        },
    )?;
    println!(
        "logged in to {} as {} ({}); saved to {}",
        client.addr(),
        me.name,
        me.role,
        path.display()
    );
    Ok(())
}
