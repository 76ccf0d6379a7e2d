//! Runs the conformance suite against every embedded backend.

mod memory {
    jdos_store::conformance_tests!(|| async {
        jdos_store::open("memory://")
            .await
            .expect("open memory store")
    });
}

mod redb {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A fresh file per case under cargo's per-target temp dir (kept after
    /// the run for inspection, rewritten by the next one).
    fn fresh_path() -> String {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("conformance-{}", std::process::id()));
        let n = N.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("case-{n}.redb")).display().to_string()
    }

    jdos_store::conformance_tests!(|| async {
        let url = format!("redb://{}", fresh_path());
        jdos_store::open(&url).await.expect("open redb store")
    });
}
