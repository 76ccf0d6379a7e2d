//! Tasks per second through the engine: a trivial 3-step operation, one
//! task per app (so up to `concurrency` run at once), on the memory and
//! redb stores. Each sample submits `TASKS` tasks to a started engine and
//! waits until all finished; the throughput column is tasks/s.
//!
//! `cargo bench -p jdos-workflow --bench engine`

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use divan::counter::ItemsCount;
use jdos_store::Store;
use jdos_workflow::{
    Engine, EngineConfig, NewTask, NoEvents, Operation, StepContext, StepError, StepOutcome, Task,
    TaskState, WorkflowError,
};

const TASKS: usize = 1_000;

fn main() {
    divan::main();
}

struct Trivial;

#[async_trait]
impl Operation for Trivial {
    fn kind(&self) -> &'static str {
        "trivial"
    }

    fn steps(&self, _task: &Task) -> Result<Vec<String>, WorkflowError> {
        Ok(vec!["one".into(), "two".into(), "three".into()])
    }

    async fn run_step(
        &self,
        _ctx: &mut StepContext,
        _step: &str,
    ) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::done(""))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn run(store: Arc<dyn Store>, concurrency: usize) {
    let mut engine = Engine::new(
        store,
        EngineConfig {
            concurrency,
            ..EngineConfig::new("bench")
        },
        Arc::new(NoEvents),
    );
    engine.register(Arc::new(Trivial));
    let engine = Arc::new(engine);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handle = engine.start(rx);
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let e = engine.clone();
        submits.spawn(async move {
            let t = e
                .submit(NewTask {
                    kind: "trivial".into(),
                    app: format!("app{i}"),
                    actor: "bench".into(),
                    ..Default::default()
                })
                .await
                .expect("submit");
            e.wait(&t.id, Duration::from_secs(600)).await.expect("wait")
        });
    }
    while let Some(t) = submits.join_next().await {
        assert_eq!(t.expect("task").state, TaskState::Succeeded);
    }
    stop.send(true).expect("stop");
    handle.await.expect("engine");
}

#[divan::bench(args = [16, 256], sample_count = 10)]
fn memory(bencher: divan::Bencher, concurrency: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(TASKS))
        .with_inputs(|| rt.block_on(jdos_store::open("memory://")).expect("store"))
        .bench_values(|store| rt.block_on(run(store, concurrency)));
}

#[divan::bench(args = [16, 256], sample_count = 5)]
fn redb(bencher: divan::Bencher, concurrency: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(TASKS))
        .with_inputs(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("redb://{}", dir.path().join("bench.redb").display());
            let store = rt.block_on(jdos_store::open(&url)).expect("store");
            (dir, store)
        })
        .bench_values(|(dir, store)| {
            rt.block_on(run(store, concurrency));
            drop(dir);
        });
}
