//! `jdos`: the one binary. It parses flags, installs tracing and wires the
//! library crates; every sub-command lives in its own file under `cmd/`.

mod cmd;
mod config;
mod output;

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
    /// Run the API server on a persistent store.
    Server(cmd::server::Args),
    /// Run the node agent of this host: register, heartbeat, run its containers.
    Agent(cmd::agent::Args),
    /// Run everything in one process with simulated hosts: the five-minute demo.
    Dev(cmd::dev::Args),
    /// Check a token against a server and save both to the config file.
    Login(cmd::login::Args),
    /// Show who the current token is.
    Whoami(cmd::whoami::Args),
    /// Create or update apps from a YAML spec (`--dry-run` shows the diff,
    /// `--wait` follows the tasks it starts).
    Apply(cmd::apply::Args),
    /// Scale a group (`--replicas 4`, `+2`, `-50%`), or every group a
    /// selector picks (`--selector department=retail --replicas +50%`).
    Scale(cmd::scale::Args),
    /// Delete a group or an app with its containers.
    Delete(cmd::delete::Args),
    /// Cancel a task.
    Cancel(cmd::cancel::Args),
    /// Show the event trail; `--watch` follows it.
    Events(cmd::events::Args),
    /// List objects: hosts, datacenters, apps, groups, containers, events, tasks, tokens.
    Get(cmd::get::Args),
    /// Show one object in detail.
    Describe(cmd::describe::Args),
    /// Stop placing new containers on a host.
    Cordon(cmd::cordon::Args),
    /// Make a cordoned host schedulable again.
    Uncordon(cmd::cordon::Args),
    /// Create an object (tokens).
    Create(cmd::create::Args),
    /// Measure the API under a steady load.
    Bench(cmd::bench::Args),
    /// Print shell completions (bash, zsh, fish, …) to stdout.
    Completions(cmd::completions::Args),
    /// VLAN networks and their addresses: create, get, describe, ips, delete.
    Net(cmd::net::Args),
    /// Cordon a host and move its containers elsewhere with their IPs.
    Drain(cmd::drain::Args),
    /// Commit a running container of a group to an image and scale out with clones of it.
    #[command(name = "snapshot-scale")]
    SnapshotScale(cmd::snapshot_scale::Args),
    /// Failure handling: status of the controller and its brakes, resume.
    Failover(cmd::failover::Args),
    /// The autoscaling controller's last decision per group.
    Autoscale(cmd::autoscale::Args),
    /// Replay a load trace under the HPA and the predictive autoscaler.
    #[command(name = "autoscale-sim")]
    AutoscaleSim(cmd::autoscale_sim::Args),
    /// Place a generated workload on thousands of simulated hosts with the
    /// real scheduler and store commit, and check the result.
    Sim(cmd::sim::Args),
    /// Alerts (`--state firing`), alert policies and receivers.
    Alerts(cmd::alerts::Args),
    /// Mute notifications of matching alerts for a while.
    Silence(cmd::silence::Args),
    /// Query a container or host metric over a range (table and sparkline).
    Metrics(cmd::metrics::Args),
    /// Latest cpu, memory and network per container or host.
    Top(cmd::top::Args),
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cmd::init_tracing(&cli.global);
    let g = &cli.global;
    // Async commands run through `cmd::block_on`; `main` stays synchronous so
    // a sub-command may also build its own runtime.
    let result = match cli.command {
        Command::Server(a) => cmd::block_on(cmd::server::run(a, g)),
        Command::Agent(a) => cmd::block_on(cmd::agent::run(a, g)),
        Command::Dev(a) => cmd::block_on(cmd::dev::run(a, g)),
        Command::Login(a) => cmd::block_on(cmd::login::run(a, g)),
        Command::Whoami(a) => cmd::block_on(cmd::whoami::run(a, g)),
        Command::Apply(a) => cmd::block_on(cmd::apply::run(a, g)),
        Command::Scale(a) => cmd::block_on(cmd::scale::run(a, g)),
        Command::Delete(a) => cmd::block_on(cmd::delete::run(a, g)),
        Command::Cancel(a) => cmd::block_on(cmd::cancel::run(a, g)),
        Command::Events(a) => cmd::block_on(cmd::events::run(a, g)),
        Command::Get(a) => cmd::block_on(cmd::get::run(a, g)),
        Command::Describe(a) => cmd::block_on(cmd::describe::run(a, g)),
        Command::Cordon(a) => cmd::block_on(cmd::cordon::run(a, g, true)),
        Command::Uncordon(a) => cmd::block_on(cmd::cordon::run(a, g, false)),
        Command::Create(a) => cmd::block_on(cmd::create::run(a, g)),
        Command::Bench(a) => cmd::block_on(cmd::bench::run(a, g)),
        Command::Completions(a) => cmd::completions::run(a),
        Command::Net(a) => cmd::block_on(cmd::net::run(a, g)),
        Command::Drain(a) => cmd::block_on(cmd::drain::run(a, g)),
        Command::SnapshotScale(a) => cmd::block_on(cmd::snapshot_scale::run(a, g)),
        Command::Failover(a) => cmd::block_on(cmd::failover::run(a, g)),
        Command::Autoscale(a) => cmd::block_on(cmd::autoscale::run(a, g)),
        Command::AutoscaleSim(a) => cmd::autoscale_sim::run(a),
        Command::Sim(a) => cmd::sim::run(a),
        Command::Alerts(a) => cmd::block_on(cmd::alerts::run(a, g)),
        Command::Silence(a) => cmd::block_on(cmd::silence::run(a, g)),
        Command::Metrics(a) => cmd::block_on(cmd::metrics::run(a, g)),
        Command::Top(a) => cmd::block_on(cmd::top::run(a, g)),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        // Catches duplicate flags (e.g. a sub-command redefining the global `-o`).
        super::Cli::command().debug_assert();
    }
}
