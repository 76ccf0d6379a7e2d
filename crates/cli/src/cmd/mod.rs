//! Sub-command handlers, one file each, plus what they share.

pub mod autoscale_sim;
pub mod completions;

use clap::Args as ClapArgs;

/// Options every sub-command accepts.
#[derive(Debug, Clone, ClapArgs)]
pub struct GlobalOpts {
    /// Log filter, e.g. `info` or `jdos_server=debug` (env RUST_LOG also works).
    #[arg(long, global = true, env = "JDOS_LOG", default_value = "warn")]
    pub log: String,
}

/// Installs the tracing subscriber: only the binary does this.
pub fn init_tracing(g: &GlobalOpts) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&g.log));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Renders an error chain on one line: `what failed: because: because`.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
