//! `cargo run --release -p jdos-sim --example sim -- [hosts] [containers] [schedulers]`:
//! the same run as `jdos sim`, without building the CLI.

use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let config = jdos_sim::SimConfig {
        hosts: args.first().copied().unwrap_or(6000),
        containers: args.get(1).copied().unwrap_or(150_000),
        schedulers: args.get(2).copied().unwrap_or(1),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let run = rt.block_on(jdos_sim::run(
        &config,
        Arc::new(jdos_store::MemoryStore::new()),
    ))?;
    println!("{}", serde_json::to_string(&run.report)?);
    Ok(())
}
