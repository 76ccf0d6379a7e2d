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
use crate::liveness::Timings;
use crate::state::AppState;

/// Default listen address of `jdos server`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Directory of the metrics store under the data dir.
pub const TSDB_DIR: &str = "tsdb";
/// Name of the embedded store file under the data dir.
pub const STORE_FILE: &str = "jdos.redb";

/// How to run the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port; see [`ServerHandle::addr`]).
    pub listen: SocketAddr,
    /// Directory for the embedded store and `admin.token`; created if missing.
    pub data_dir: PathBuf,
    /// Store URL (`memory://`, `redb:///path`); default: `<data_dir>/jdos.redb`.
    pub store_url: Option<String>,
    /// Also send every ingested sample to this Prometheus remote-write receiver.
    pub remote_write: Option<crate::remote_write::RemoteWriteConfig>,
    /// Stop gracefully on Ctrl-C / SIGTERM (what `jdos server` wants; tests
    /// and embedders that stop through the handle leave it off).
    pub handle_signals: bool,
    /// The token agents register with; when `None`, the one in
    /// `<data_dir>/join.token` (generated and written there on first start).
    pub join_token: Option<String>,
    /// Heartbeat, suspect, down and self-fence timings.
    pub timings: Timings,
    /// Workflow worker id, stable across restarts so that a restarted
    /// server resumes its own tasks at once; unique among the servers
    /// sharing a store. Default: the machine's host name.
    pub worker_id: Option<String>,
    /// The failover controller's brake and crash-loop settings (it judges
    /// hosts with the suspect and down intervals of `timings`).
    pub failover: crate::failover::FailoverConfig,
    /// The autoscaling controller's sync period and windows.
    pub autoscale: crate::autoscale::ControllerConfig,
    /// Alert evaluation interval and retention.
    pub alerting: crate::alerting::AlertingConfig,
}

impl ServerConfig {
    /// A config with the default store and no signal handling.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            store_url: None,
            remote_write: None,
            handle_signals: false,
            join_token: None,
            timings: Timings::default(),
            worker_id: None,
            failover: crate::failover::FailoverConfig::default(),
            autoscale: crate::autoscale::ControllerConfig::default(),
            alerting: crate::alerting::AlertingConfig::default(),
        }
    }

    /// The workflow worker id in effect.
    pub fn effective_worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(default_worker_id)
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

/// Name of the file under the data dir holding the agents' join token.
pub const JOIN_TOKEN_FILE: &str = "join.token";

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The admin token, only on the first start against a store (also
    /// written to `<data_dir>/admin.token`); `None` on every later start.
    pub admin_token: Option<String>,
    /// The token agents register with.
    pub join_token: String,
    state: AppState,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
    /// The workflow worker: awaited on stop, so that the store is released
    /// when `wait` returns (a restart in the same process reopens it).
    engine_task: JoinHandle<()>,
    /// The singleton controllers' elections: awaited on stop, so that the
    /// leader locks are released (a peer takes over at once).
    electors: Vec<crate::leader::Elector>,
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
        let served = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e.to_string()))),
        };
        // The HTTP side has stopped, so the engine was told too (same signal).
        let _ = self.stop.send(true);
        if let Err(e) = self.engine_task.await {
            tracing::warn!(error = %e, "the workflow engine stopped abnormally");
        }
        for e in self.electors {
            e.join().await;
        }
        served
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
    config
        .timings
        .validate()
        .map_err(|m| ServerError::Api(crate::HttpError::invalid("timings", m)))?;
    state.set_timings(config.timings);
    let join_token = match &config.join_token {
        Some(t) => t.clone(),
        None => load_or_create_join_token(&config.data_dir)?,
    };
    state.set_join_token(&join_token);
    if !config.effective_store_url().starts_with("memory://") {
        let dir = config.data_dir.join(TSDB_DIR);
        let started = std::time::Instant::now();
        let tsdb = state.tsdb().clone();
        let open_dir = dir.clone();
        tokio::task::spawn_blocking(move || tsdb.open_dir(&open_dir))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e.to_string())))?
            .map_err(|source| ServerError::Tsdb { path: dir, source })?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "metrics store opened"
        );
    }
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
    state.platform().start_sweeper(stop.subscribe());
    let worker_id = config.effective_worker_id();
    let engine = match state.engine() {
        Some(e) => e.clone(),
        None => crate::ops::engine(
            &state,
            jdos_workflow::EngineConfig::new(&worker_id),
            &crate::ops::OpsContext::new(&state),
        ),
    };
    let engine_task = engine.start(stop.subscribe());
    tracing::info!(worker = %engine.config().worker_id, kinds = ?engine.kinds(), "workflow engine started");
    // The failover controller, the autoscaler and the alert evaluator act
    // only in the server that leads each (several servers may share a store).
    let lead = |name: &str, start: Starter| {
        let cfg = crate::leader::LeaderConfig::default();
        crate::leader::spawn(&state, name, &worker_id, cfg, stop.subscribe(), start)
    };
    let mut electors = Vec::new();
    let (st, failover) = (state.clone(), config.failover.clone());
    electors.push(lead(
        crate::leader::FAILOVER,
        Box::new(move |stop| crate::failover::start(&st, failover.clone(), stop)),
    ));
    // Drains a previous process left running go on (every step is idempotent).
    crate::failover::drain::resume_all(&state).await?;
    tokio::spawn(maintain_tsdb(state.clone(), stop.subscribe()));
    let autoscaler = match state.autoscaler() {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(crate::autoscale::Controller::new(config.autoscale));
            state.set_autoscaler(c.clone());
            c
        }
    };
    let weak = state.downgrade();
    electors.push(lead(
        crate::leader::AUTOSCALE,
        Box::new(move |stop| autoscaler.start(weak.clone(), stop)),
    ));
    tracing::info!(sync = ?config.autoscale.sync_period, "autoscaling controller elected");
    let (st, alerting) = (state.clone(), config.alerting);
    electors.push(lead(
        crate::leader::ALERTING,
        Box::new(move |stop| spawn_alerting(&st, alerting, stop)),
    ));
    let remote_task = config.remote_write.clone().map(|c| {
        tracing::info!(url = %c.url, "remote write enabled");
        let w = crate::remote_write::RemoteWriter::new(c);
        state.tsdb().set_remote_writer(w.clone());
        w.spawn(stop.subscribe())
    });
    let handle_signals = config.handle_signals;
    let tsdb = state.tsdb().clone();
    let task = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = os_signal(), if handle_signals => {
                    tracing::info!("signal received: shutting down");
                }
            }
        };
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .map_err(ServerError::Serve);
        // Let the remote writer send what is queued (one attempt).
        if let Some(t) = remote_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
        // Snapshot the metrics head so a restart replays no WAL.
        let tsdb = tsdb.clone();
        match tokio::task::spawn_blocking(move || tsdb.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush the metrics store"),
            Err(e) => tracing::warn!(error = %e, "metrics store flush panicked"),
        }
        served
    });
    tracing::info!(%addr, "jdos api listening");
    Ok(ServerHandle {
        addr,
        admin_token,
        join_token,
        state,
        stop,
        task,
        engine_task,
        electors,
    })
}

/// Reads `<data_dir>/join.token`, or creates it (mode 0600) with a fresh
/// random token: restarts keep the token agents were given.
fn load_or_create_join_token(data_dir: &std::path::Path) -> Result<String, ServerError> {
    let path = data_dir.join(JOIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::DataDir { path, source }),
    }
    let token = format!("join.{}", crate::auth::random_hex(24)?);
    crate::auth::write_secret_file(&path, &format!("{token}\n"))
        .map_err(|source| ServerError::DataDir { path, source })?;
    tracing::info!("created the agents' join token in {}", JOIN_TOKEN_FILE);
    Ok(token)
}

/// The machine's host name (the workflow worker id when none is given).
fn default_worker_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "jdos-server".to_string())
}

/// Starts the alert evaluator over the server's metrics store, delivering
/// through SMTP relays and HTTP gateways.
fn spawn_alerting(
    state: &AppState,
    config: crate::alerting::AlertingConfig,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    use crate::alerting::{deliver::Dispatcher, source, Evaluator};
    let tsdb = state.tsdb().clone();
    let metrics = source::TsdbSource::new(move |q| source::window_on(&tsdb.read(), q));
    let evaluator = Evaluator::new(
        state.clone(),
        Arc::new(metrics),
        Arc::new(Dispatcher::new()),
        config,
    );
    Arc::new(evaluator).spawn(stopped)
}

/// Starts a controller task when its server takes the lead.
type Starter = Box<dyn FnMut(watch::Receiver<bool>) -> JoinHandle<()> + Send>;

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

/// The metrics store's upkeep: seal due windows (hourly downsample), retention, WAL fsync.
async fn maintain_tsdb(state: AppState, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(crate::monitoring::MAINTENANCE_EVERY) => {}
        }
        let tsdb = state.tsdb().clone();
        let now = state.now_ms() as i64;
        match tokio::task::spawn_blocking(move || tsdb.maintain(now)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics store maintenance failed"),
            Err(e) => tracing::warn!(error = %e, "metrics store maintenance panicked"),
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
