//! Every example in `examples/` parses, validates and survives a YAML round
//! trip: the README and the demo point users at them.

use std::path::PathBuf;

use jdos_types::spec::AppSpec;

fn examples() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        // Alert policies, not an app: read by the CLI's own test.
        .filter(|p| p.file_name().is_some_and(|n| n != "alerts.yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_parses_and_validates() {
    let all = examples();
    let names: Vec<String> = all
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["batch.yaml", "shop.yaml", "web.yaml"] {
        assert!(names.iter().any(|n| n == want), "missing {want}: {names:?}");
    }
    for (path, text) in all {
        let spec: AppSpec =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (app, groups) = spec
            .to_records()
            .unwrap_or_else(|e| panic!("{}: {:#?}", path.display(), e.errors));
        assert_eq!(app.name, spec.name);
        assert_eq!(groups.len(), spec.groups.len(), "{}", path.display());
        for g in &groups {
            assert_eq!(
                g.template.image,
                "jdos-busybox:latest",
                "{}",
                path.display()
            );
            assert!(g.replicas > 0, "{}", path.display());
        }
        // YAML round trip: what `jdos get … -o yaml` prints reads back the same.
        let yaml = serde_norway::to_string(&spec).unwrap();
        let back: AppSpec = serde_norway::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{}: re-read: {e}\n{yaml}", path.display()));
        assert_eq!(back, spec, "{}", path.display());
        assert_eq!(back.to_records().unwrap(), (app, groups));
    }
}

#[test]
fn the_examples_show_what_they_promise() {
    let read = |name: &str| -> AppSpec {
        let (_, text) = examples()
            .into_iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap();
        serde_norway::from_str(&text).unwrap()
    };
    let (_, web) = read("web.yaml").to_records().unwrap();
    let dcs: Vec<&str> = web.iter().map(|g| g.datacenter.as_str()).collect();
    assert_eq!(dcs, ["langfang", "suqian"]);
    assert!(matches!(
        web[0].template.health.as_ref().unwrap().probe,
        jdos_types::workload::Probe::Http { port: 80, .. }
    ));
    let (_, shop) = read("shop.yaml").to_records().unwrap();
    let hooks = &shop[0].template.hooks;
    assert!(
        !hooks.pre_start.is_empty() && !hooks.post_start.is_empty() && !hooks.pre_stop.is_empty()
    );
    assert!(shop[0].autoscaling.is_some());
    let (_, batch) = read("batch.yaml").to_records().unwrap();
    let s = &batch[0].template.storage;
    assert_eq!(
        (s.tmpfs.len(), s.host_volumes.len(), s.block_volumes.len()),
        (1, 2, 1)
    );
    assert_eq!(batch[0].replicas, 2, "the spec's default replicas");
}
