//! Starting and stopping the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use jdos_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::auth::bootstrap_admin;
use crate::error::ServerError;
use crate::state::AppState;

/// Default listen address of `jdos server`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Name of the embedded store file under the data dir.
pub const STORE_FILE: &str = "jdos.redb";

/// How to run the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port; see [`ServerHandle::addr`]).
    pub listen: SocketAddr,
    /// Directory for the embedded store and `admin.token`; created if missing.
    pub data_dir: PathBuf,
    /// Store URL (`memory://`, `redb:///path`); default: `<data_dir>/jdos.redb`.
    pub store_url: Option<String>,
    /// Stop gracefully on Ctrl-C / SIGTERM (what `jdos server` wants; tests
    /// and embedders that stop through the handle leave it off).
    pub handle_signals: bool,
}

impl ServerConfig {
    /// A config with the default store and no signal handling.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            store_url: None,
            handle_signals: false,
        }
    }

    /// The store URL in effect.
    pub fn effective_store_url(&self) -> String {
        self.store_url
            .clone()
            .unwrap_or_else(|| format!("redb://{}", self.data_dir.join(STORE_FILE).display()))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new(
            DEFAULT_LISTEN.parse().expect("valid default address"),
            "./jdos-data",
        )
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin token, only on the first start against a store (also
    /// written to `<data_dir>/admin.token`); `None` on every later start.
    pub admin_token: Option<String>,
    state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// The store the server uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store_arc()
    }

    /// The server's state (for seeding and in-process callers).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A trigger that stops the server gracefully from elsewhere.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.stop.clone())
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.wait().await {
            tracing::warn!(error = %e, "server stopped with an error");
        }
    }

    /// Waits until the server stops (a signal when `handle_signals`, a
    /// [`ShutdownTrigger`], or a failure).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Stops a server gracefully; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks the server to stop.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// Opens the store, creates the admin token on the first start, binds and
/// serves the API until shut down.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let url = config.effective_store_url();
    let store = jdos_store::open(&url).await?;
    tracing::info!(store = %url, "store opened");
    start_with_store(config, AppState::new(store)).await
}

/// Like [`start`], over an already built state (an in-memory store, an
/// injected clock).
pub async fn start_with_store(
    config: ServerConfig,
    state: AppState,
) -> Result<ServerHandle, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let admin_token = bootstrap_admin(&state, Some(&config.data_dir)).await?;
    // The allocator's index must hold every assigned address before the
    // first request can allocate one.
    let started = std::time::Instant::now();
    let records = state.ipam().rebuild().await?;
    tracing::info!(
        records,
        ms = started.elapsed().as_millis() as u64,
        "ipam index rebuilt"
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    let (stop, mut stopped) = watch::channel(false);
    let app = api::router(state.clone());
    tokio::spawn(sweep_quarantine(state.clone(), stop.subscribe()));
    let handle_signals = config.handle_signals;
    let task = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = os_signal(), if handle_signals => {
                    tracing::info!("signal received: shutting down");
                }
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .map_err(ServerError::Serve)
    });
    tracing::info!(%addr, "jdos api listening");
    Ok(ServerHandle {
        addr,
        admin_token,
        state,
        stop,
        task,
    })
}

/// How often released addresses whose quarantine ended are cleaned up.
const QUARANTINE_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// The periodic IPAM clean-up: drops quarantine records that have expired,
/// so listings stay short. Expired addresses are allocatable either way.
async fn sweep_quarantine(state: AppState, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(QUARANTINE_SWEEP) => {}
        }
        let networks = match state.ipam().list_networks().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "quarantine sweep: cannot list networks");
                continue;
            }
        };
        for net in networks {
            if let Err(e) = state
                .ipam()
                .expire_quarantine(&net.name, state.now_ms())
                .await
            {
                tracing::warn!(network = %net.name, error = %e, "quarantine sweep failed");
            }
        }
    }
}

async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
