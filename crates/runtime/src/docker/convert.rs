//! Pure mapping between jdos specs and Docker Engine API bodies (no IO, so
//! every field can be checked by unit tests).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerUpdateBody,
    EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, NetworkingConfig,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use jdos_types::Resources;

use crate::labels;
use crate::network::ObservedNetwork;
use crate::spec::{cpu_quota_us, cpu_shares, ContainerSpec, CpuPolicy, Isolation};
use crate::status::{parse_docker_time, ContainerStats, ContainerStatus, RuntimeState};
use crate::storage::PreparedVolume;

/// Log rotation for the json-file driver: logs stay local and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLimits {
    /// `max-size`, e.g. `10m`.
    pub max_size: String,
    /// `max-file`.
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_size: "10m".into(),
            max_files: 3,
        }
    }
}

/// The cgroup limits of `resources` under `isolation`, as Docker's resource
/// fields. `ncpu` is the host's cpu count (to undo a cpuset on resize).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `CpuShares`.
    pub cpu_shares: i64,
    /// `CpuPeriod` (0 = unset).
    pub cpu_period: i64,
    /// `CpuQuota` (0 = unset, -1 = unlimited).
    pub cpu_quota: i64,
    /// `CpusetCpus` (empty = unset).
    pub cpuset_cpus: String,
    /// `Memory`.
    pub memory: i64,
    /// `MemorySwap`.
    pub memory_swap: i64,
    /// `MemorySwappiness`.
    pub swappiness: Option<i64>,
    /// `PidsLimit`.
    pub pids_limit: Option<i64>,
    /// `BlkioWeight`.
    pub blkio_weight: Option<u16>,
    /// `Ulimits` nofile.
    pub nofile: Option<(i64, i64)>,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Computes the limits. For a live update, `resize_from_pinned` resets a
/// cpuset to all `ncpu` cpus and a quota to unlimited when the new policy
/// does not use them (Docker treats empty / 0 as "unchanged").
pub fn limits(r: &Resources, iso: &Isolation, for_update: bool, ncpu: u32) -> Limits {
    let mut l = Limits {
        cpu_shares: clamp(cpu_shares(r.cpu_millis)),
        memory: clamp(r.memory_bytes),
        memory_swap: clamp(iso.memory_swap_bytes.unwrap_or(r.memory_bytes)),
        swappiness: iso.swappiness.map(i64::from),
        pids_limit: iso.pids_limit.map(clamp),
        blkio_weight: iso.blkio_weight,
        nofile: iso.nofile.map(|n| (clamp(n.soft), clamp(n.hard))),
        ..Limits::default()
    };
    match &iso.cpu {
        CpuPolicy::Shares => {}
        CpuPolicy::Quota { period_us } => {
            l.cpu_period = clamp(*period_us);
            l.cpu_quota = clamp(cpu_quota_us(r.cpu_millis, *period_us));
        }
        CpuPolicy::Cpuset { cpus } => {
            let mut c = cpus.clone();
            c.sort_unstable();
            l.cpuset_cpus = c.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        }
    }
    if for_update {
        if l.cpu_quota == 0 {
            l.cpu_quota = -1;
        }
        if l.cpuset_cpus.is_empty() && ncpu > 0 {
            l.cpuset_cpus = format!("0-{}", ncpu - 1);
        }
    }
    l
}

fn ulimits(l: &Limits) -> Option<Vec<ResourcesUlimits>> {
    l.nofile.map(|(soft, hard)| {
        vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(soft),
            hard: Some(hard),
        }]
    })
}

fn non_zero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The body of `POST /containers/create` for `spec`, with its host volumes
/// already prepared.
pub fn create_body(
    spec: &ContainerSpec,
    host_volumes: &[PreparedVolume],
    logs: &LogLimits,
) -> ContainerCreateBody {
    let l = limits(&spec.resources, &spec.isolation, false, 0);
    let mut mounts = Vec::new();
    for p in host_volumes {
        mounts.push(Mount {
            target: Some(p.volume.path.clone()),
            source: Some(p.host_path.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(p.volume.read_only),
            bind_options: Some(MountBindOptions::default()),
            ..Default::default()
        });
    }
    for v in &spec.storage.block_volumes {
        let opts: HashMap<String, String> = v.driver_options().into_iter().collect();
        mounts.push(Mount {
            target: Some(v.path.clone()),
            source: Some(v.volume_name(&spec.instance)),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            volume_options: Some(MountVolumeOptions {
                labels: Some(
                    [
                        (labels::MANAGED.to_string(), "true".to_string()),
                        (labels::INSTANCE.to_string(), spec.instance.to_string()),
                    ]
                    .into_iter()
                    .collect(),
                ),
                driver_config: Some(MountVolumeOptionsDriverConfig {
                    name: Some(v.driver.clone()),
                    options: (!opts.is_empty()).then_some(opts),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let tmpfs: HashMap<String, String> = spec
        .storage
        .tmpfs
        .iter()
        .map(|t| (t.path.clone(), format!("size={},mode=1777", t.size_bytes)))
        .collect();
    let host_config = HostConfig {
        cpu_shares: Some(l.cpu_shares),
        cpu_period: non_zero(l.cpu_period),
        cpu_quota: non_zero(l.cpu_quota),
        cpuset_cpus: non_empty(&l.cpuset_cpus),
        memory: Some(l.memory),
        memory_swap: Some(l.memory_swap),
        memory_swappiness: l.swappiness,
        pids_limit: l.pids_limit,
        blkio_weight: l.blkio_weight,
        ulimits: ulimits(&l),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: spec.network.as_ref().map(|n| n.docker_network.clone()),
        // The agent restarts crashed containers itself, with back-off and a
        // migration after repeated failures; an engine policy would race it.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(
                [
                    ("max-size".to_string(), logs.max_size.clone()),
                    ("max-file".to_string(), logs.max_files.to_string()),
                ]
                .into_iter()
                .collect(),
            ),
        }),
        ..Default::default()
    };
    let networking_config = spec.network.as_ref().map(|n| NetworkingConfig {
        endpoints_config: Some(
            [(
                n.docker_network.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(n.ipv4.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        ),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: (!spec.ports.is_empty())
            .then(|| spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
        labels: Some(spec.all_labels().into_iter().collect()),
        stop_timeout: Some(i64::from(spec.stop_grace_secs)),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The body of `POST /containers/{id}/update` for a live resize.
pub fn update_body(r: &Resources, iso: &Isolation, ncpu: u32) -> ContainerUpdateBody {
    let l = limits(r, iso, true, ncpu);
    ContainerUpdateBody {
        cpu_shares: Some(l.cpu_shares),
        cpu_period: non_zero(l.cpu_period),
        cpu_quota: non_zero(l.cpu_quota),
        cpuset_cpus: non_empty(&l.cpuset_cpus),
        memory: Some(l.memory),
        memory_swap: Some(l.memory_swap),
        pids_limit: l.pids_limit,
        blkio_weight: l.blkio_weight,
        ..Default::default()
    }
}

/// A container's status from `GET /containers/{id}/json`.
pub fn status_from_inspect(i: &ContainerInspectResponse) -> ContainerStatus {
    let labels: BTreeMap<String, String> = i
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let state = i.state.clone().unwrap_or_default();
    let runtime_state = state
        .status
        .map(|s| RuntimeState::from_docker(s.as_ref()))
        .unwrap_or(RuntimeState::Unknown);
    let networks = i
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    // Prefer the jdos network's endpoint; else any endpoint with an address.
    let endpoint = labels
        .get(labels::DOCKER_NETWORK)
        .and_then(|n| networks.get(n))
        .or_else(|| {
            networks
                .values()
                .find(|e| e.ip_address.as_deref().is_some_and(|a| !a.is_empty()))
        });
    let ip = endpoint
        .and_then(|e| e.ip_address.as_deref())
        .and_then(|a| a.parse().ok());
    ContainerStatus {
        instance: labels::instance_of(&labels),
        name: i
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        id: i.id.clone().unwrap_or_default(),
        image: i
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        state: runtime_state,
        exit_code: match runtime_state {
            RuntimeState::Exited | RuntimeState::Dead => state.exit_code,
            _ => None,
        },
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.unwrap_or_default(),
        ip,
        started_at_ms: state.started_at.as_deref().and_then(parse_docker_time),
        finished_at_ms: state.finished_at.as_deref().and_then(parse_docker_time),
        restart_count: i
            .restart_count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        labels: std::sync::Arc::new(labels),
    }
}

/// Usage counters from one `GET /containers/{id}/stats?stream=false`.
pub fn stats_from_docker(s: &ContainerStatsResponse) -> ContainerStats {
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let mem = s.memory_stats.clone().unwrap_or_default();
    let mstat = mem.stats.clone().unwrap_or_default();
    let get = |k: &str| mstat.get(k).copied().unwrap_or(0);
    let mut out = ContainerStats {
        read_at_ms: s.read.as_deref().and_then(parse_docker_time),
        cpu_usage_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
        system_cpu_ns: cpu.system_cpu_usage.unwrap_or(0),
        online_cpus: cpu.online_cpus.unwrap_or(0),
        cpu_throttled_periods: cpu
            .throttling_data
            .and_then(|t| t.throttled_periods)
            .unwrap_or(0),
        memory_usage_bytes: mem.usage.unwrap_or(0),
        memory_limit_bytes: mem.limit.unwrap_or(0),
        // cgroup v1 names first, v2 names as the fallback.
        memory_rss_bytes: get("rss").max(get("anon")),
        memory_cache_bytes: get("cache").max(get("file")),
        memory_swap_bytes: get("swap"),
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        ..ContainerStats::default()
    };
    for n in s.networks.clone().unwrap_or_default().values() {
        out.net_rx_bytes += n.rx_bytes.unwrap_or(0);
        out.net_tx_bytes += n.tx_bytes.unwrap_or(0);
        out.net_rx_packets += n.rx_packets.unwrap_or(0);
        out.net_tx_packets += n.tx_packets.unwrap_or(0);
    }
    if let Some(entries) = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.clone())
    {
        for e in entries {
            match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => out.blkio_read_bytes += e.value.unwrap_or(0),
                Some("write") => out.blkio_write_bytes += e.value.unwrap_or(0),
                _ => {}
            }
        }
    }
    out
}

/// The reusable parts of an engine network.
pub fn observed_network(n: &bollard::models::NetworkInspect) -> ObservedNetwork {
    let cfg = n
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    ObservedNetwork {
        id: n.id.clone().unwrap_or_default(),
        driver: n.driver.clone().unwrap_or_default(),
        subnets: cfg
            .iter()
            .filter_map(|c| c.subnet.as_deref()?.parse().ok())
            .collect(),
        gateways: cfg
            .iter()
            .filter_map(|c| c.gateway.as_deref()?.parse().ok())
            .collect(),
        options: n.options.clone().unwrap_or_default().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{HostTier, HostVolume, Nofile, TmpfsMount};
    use jdos_types::resources::MIB;

    fn spec() -> ContainerSpec {
        let mut r = Resources::new(1500, 128 * MIB);
        r.disk.l0 = 8 * MIB;
        let mut s = ContainerSpec::new("a/b/c/1".parse().unwrap(), "img:1", "h1", r);
        s.storage.tmpfs.push(TmpfsMount {
            path: "/scratch".into(),
            size_bytes: 8 * MIB,
        });
        s
    }

    #[test]
    fn shares_quota_and_cpuset_map_to_cgroup_fields() {
        let mut s = spec();
        let hc = create_body(&s, &[], &LogLimits::default())
            .host_config
            .unwrap();
        assert_eq!(hc.cpu_shares, Some(1536));
        assert_eq!(
            (hc.cpu_period, hc.cpu_quota, hc.cpuset_cpus),
            (None, None, None)
        );
        assert_eq!(hc.memory, Some(128 * MIB as i64));
        assert_eq!(hc.memory_swap, Some(128 * MIB as i64), "no swap by default");
        assert_eq!(hc.pids_limit, Some(4096));
        assert_eq!(
            hc.tmpfs.unwrap()["/scratch"],
            format!("size={},mode=1777", 8 * MIB)
        );

        s.isolation.cpu = CpuPolicy::Quota { period_us: 50_000 };
        s.isolation.memory_swap_bytes = Some(256 * MIB);
        s.isolation.swappiness = Some(0);
        s.isolation.nofile = Some(Nofile {
            soft: 1024,
            hard: 4096,
        });
        let hc = create_body(&s, &[], &LogLimits::default())
            .host_config
            .unwrap();
        assert_eq!((hc.cpu_period, hc.cpu_quota), (Some(50_000), Some(75_000)));
        assert_eq!(hc.memory_swap, Some(256 * MIB as i64));
        assert_eq!(hc.memory_swappiness, Some(0));
        let u = &hc.ulimits.unwrap()[0];
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(4096))
        );

        s.isolation.cpu = CpuPolicy::Cpuset { cpus: vec![3, 1] };
        let hc = create_body(&s, &[], &LogLimits::default())
            .host_config
            .unwrap();
        assert_eq!(hc.cpuset_cpus.as_deref(), Some("1,3"));
    }

    #[test]
    fn resize_away_from_a_cpuset_or_quota_resets_them() {
        let s = spec();
        let u = update_body(&s.resources, &s.isolation, 4);
        assert_eq!(u.cpuset_cpus.as_deref(), Some("0-3"));
        assert_eq!(u.cpu_quota, Some(-1));
    }

    #[test]
    fn volumes_and_the_static_ip_are_in_the_body() {
        let mut s = spec();
        s.network = Some(crate::spec::NetworkAttachment {
            network: "n".into(),
            docker_network: "jdos-n".into(),
            subnet: "10.213.0.0/24".parse().unwrap(),
            gateway: "10.213.0.1".parse().unwrap(),
            ipv4: "10.213.0.7".parse().unwrap(),
        });
        s.storage.block_volumes.push(crate::spec::BlockVolume {
            name: "db".into(),
            path: "/db".into(),
            size_bytes: 1,
            driver: "local".into(),
            options: Default::default(),
        });
        let hv = HostVolume {
            tier: HostTier::L1,
            name: "data".into(),
            path: "/data".into(),
            size_bytes: 1,
            read_only: true,
        };
        let prepared = [PreparedVolume {
            volume: hv,
            host_path: "/export/L1/x/data".into(),
        }];
        let b = create_body(&s, &prepared, &LogLimits::default());
        let hc = b.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("jdos-n"));
        let m = hc.mounts.unwrap();
        assert_eq!(m[0].source.as_deref(), Some("/export/L1/x/data"));
        assert_eq!(m[0].read_only, Some(true));
        assert_eq!(m[1].source.as_deref(), Some("jdos-a-b-c-1-db"));
        let ep = &b.networking_config.unwrap().endpoints_config.unwrap()["jdos-n"];
        assert_eq!(
            ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.213.0.7")
        );
        assert_eq!(b.labels.unwrap()[labels::IP], "10.213.0.7");
    }
}
