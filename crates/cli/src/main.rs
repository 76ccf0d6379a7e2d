//! `jdos`: the one binary. It parses flags, installs tracing and wires the
//! library crates; every sub-command lives in its own file under `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};

/// jdos: an elastic container cloud.
#[derive(Debug, Parser)]
#[command(name = "jdos", version, about, propagate_version = true)]
pub struct Cli {
    /// Options shared by every sub-command.
    #[command(flatten)]
    pub global: cmd::GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands. Each variant's handler lives in `cmd/<name>.rs`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print shell completions (bash, zsh, fish, …) to stdout.
    Completions(cmd::completions::Args),
    /// Replay a load trace under the HPA and the predictive autoscaler.
    #[command(name = "autoscale-sim")]
    AutoscaleSim(cmd::autoscale_sim::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cmd::init_tracing(&cli.global);
    let result = match cli.command {
        Command::Completions(a) => cmd::completions::run(a),
        Command::AutoscaleSim(a) => cmd::autoscale_sim::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A person reads this: the error chain on one line, no backtrace.
            eprintln!("error: {}", cmd::render_error(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
