//! `jdos completions SHELL`.

use clap::CommandFactory;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shell to generate completions for.
    pub shell: clap_complete::Shell,
}

/// Writes the completion script to stdout.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "jdos", &mut std::io::stdout());
    Ok(())
}
