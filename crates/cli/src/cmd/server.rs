//! `jdos server`: the API server on a persistent store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070", env = "JDOS_LISTEN")]
    pub listen: SocketAddr,
    /// Directory for the embedded store and the server's own files.
    #[arg(long, default_value = "/var/lib/jdos", env = "JDOS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Store URL (e.g. `memory:` or `etcd://…`); default: embedded redb under --data-dir.
    #[arg(long, env = "JDOS_STORE")]
    pub store: Option<String>,
}

/// Starts the server and serves until Ctrl-C or SIGTERM.
pub async fn run(a: Args, _g: &GlobalOpts) -> anyhow::Result<()> {
    let stop = super::dev::StopSignals::install()?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create data dir {}", a.data_dir.display()))?;
    let config = super::dev::server_config(a.listen, a.data_dir.clone(), a.store.clone());
    let handle = jdos_server::start(config)
        .await
        .with_context(|| format!("cannot start the server on {}", a.listen))?;
    println!("jdos server listening (data dir {})", a.data_dir.display());
    println!("address: http://{}", handle.addr);
    match &handle.admin_token {
        Some(t) => {
            println!("token: {t}");
            println!("This admin token is shown only once: keep it safe. Use it with:");
            println!("  jdos login --addr http://{} --token {t}", handle.addr);
        }
        None => println!(
            "(the admin token was printed on this data dir's first start; see {} there)",
            jdos_server::auth::ADMIN_TOKEN_FILE
        ),
    }
    stop.wait().await?;
    eprintln!("stopping…");
    handle.shutdown().await;
    Ok(())
}
