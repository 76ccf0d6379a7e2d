//! The server's side of one idle agent heartbeat (authenticate the agent,
//! read its host record, mark it seen, no reports) with 6,000 agents
//! registered on the in-memory store, as each of a 6,000-host cell's agents
//! sends every second. `cargo bench -p jdos-server --bench agents`.

use std::sync::atomic::{AtomicUsize, Ordering};

use divan::Bencher;
use jdos_server::AppState;
use jdos_types::agent::{AgentRegister, Heartbeat};
use jdos_types::api::RegisterHost;
use jdos_types::resources::GIB;
use jdos_types::Resources;

fn main() {
    divan::main();
}

const AGENTS: usize = 6_000;
const JOIN: &str = "bench-join-token";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A state with `AGENTS` registered agents: (host, token, epoch) of each.
async fn setup() -> (AppState, Vec<(String, String, u64)>) {
    let st = AppState::new(std::sync::Arc::new(jdos_store::MemoryStore::new()));
    st.set_join_token(JOIN);
    let mut agents = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let req = AgentRegister {
            host: RegisterHost {
                name: format!("h{i:05}"),
                datacenter: "dc1".into(),
                switch: format!("sw{}", i / 40),
                rack: format!("r{}", i / 20),
                capacity: Resources::new(64_000, 256 * GIB),
                resource_zone: None,
                labels: Default::default(),
                driver: Some("fake".into()),
            },
            version: "bench".into(),
        };
        let s = jdos_server::api::agents::register(&st, JOIN, req)
            .await
            .unwrap();
        agents.push((s.host.name, s.token, s.host.epoch));
    }
    (st, agents)
}

#[divan::bench(sample_count = 20, sample_size = 2_000)]
fn idle_heartbeat(bencher: Bencher) {
    let rt = rt();
    let (st, agents) = rt.block_on(setup());
    let next = AtomicUsize::new(0);
    bencher.bench_local(|| {
        let (host, token, epoch) = &agents[next.fetch_add(1, Ordering::Relaxed) % AGENTS];
        let hb = Heartbeat {
            epoch: *epoch,
            reports: Vec::new(),
            full: false,
            sent_at_ms: 0,
        };
        rt.block_on(jdos_server::api::agents::heartbeat(&st, host, token, hb))
            .unwrap()
    });
}
