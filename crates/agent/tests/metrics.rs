//! The agent's metric collection end to end: a real agent (fake engine, real /proc) pushes
//! rounds through its HTTP control plane into a real server, whose query API then answers
//! with the host's series under the agent's host name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jdos_agent::{Agent, AgentConfig, HttpControlPlane};
use jdos_runtime::FakeDriver;
use jdos_server::{start, ServerConfig};
use jdos_types::metrics::{names, MetricQuery};
use jdos_types::Resources;

#[tokio::test]
async fn agent_pushes_host_metrics_that_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        store_url: Some("memory://".into()),
        join_token: Some("join-secret".into()),
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())
    })
    .await
    .unwrap();
    let admin = jdos_client::Client::new(server.url(), server.admin_token.clone()).unwrap();

    let mut config = AgentConfig::new("mh1", "dc1", "sw1", "r1", Resources::new(2000, 4 << 30));
    config.metrics_interval = Some(Duration::from_millis(200));
    let control = Arc::new(HttpControlPlane::new(&server.url(), "join-secret").unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent =
        tokio::spawn(Agent::new(config).run(Arc::new(FakeDriver::new()), control, shutdown));

    let q = MetricQuery {
        host: Some("mh1".into()),
        ..MetricQuery::new(names::HOST_CPU_UTILIZATION)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let latest = loop {
        let l = admin.latest_metrics(&q).await.unwrap();
        if !l.is_empty() {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no host metrics arrived from the agent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(latest[0].labels["datacenter"], "dc1");
    assert!((0.0..=1.0).contains(&latest[0].v), "{latest:?}");
    let own = admin
        .latest_metrics(&MetricQuery::new(names::AGENT_COLLECT_SECONDS))
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].labels["host"], "mh1");
    assert!(own[0].v > 0.0 && own[0].v < 1.0, "{own:?}");

    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
    server.shutdown().await;
}
