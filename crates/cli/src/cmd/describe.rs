//! `jdos describe host NAME`: everything about one object, kubectl style.

use jdos_types::api::HostDetail;
use jdos_types::{Resources, StorageTier};

use super::GlobalOpts;
use crate::output::{age, bytes, cores, now_ms, or_dash, percent, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to describe.
    #[command(subcommand)]
    pub what: What,
}

/// Objects `describe` knows.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A host: topology, state, capacity, allocation and its containers.
    Host {
        /// Host name.
        name: String,
    },
}

/// Fetches and prints the object.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    match a.what {
        What::Host { name } => {
            let d = client.get_host(&name).await?;
            super::print(g, &d, || render_host(&d, now_ms()))
        }
    }
}

fn disks(r: &Resources) -> String {
    let parts: Vec<String> = StorageTier::ALL
        .iter()
        .filter(|t| r.disk.get(**t) > 0)
        .map(|t| format!("{} {}", t.short(), bytes(r.disk.get(*t))))
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

/// Key/value block, then the containers table.
pub fn render_host(d: &HostDetail, now: u64) -> String {
    let h = &d.host;
    let cap = &h.capacity;
    let used = &d.allocation.allocated;
    let labels = if h.labels.is_empty() {
        "-".to_string()
    } else {
        h.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let heartbeat = if h.last_heartbeat_ms == 0 {
        "never".to_string()
    } else {
        format!("{} ago", age(h.last_heartbeat_ms, now))
    };
    let rows: Vec<(&str, String)> = vec![
        ("Name", h.name.clone()),
        ("Datacenter", h.datacenter.clone()),
        ("Switch", h.switch.clone()),
        ("Rack", h.rack.clone()),
        ("State", h.state.as_str().to_string()),
        (
            "Schedulable",
            if h.cordoned {
                "no (cordoned)".to_string()
            } else if h.schedulable() {
                "yes".to_string()
            } else {
                format!("no ({})", h.state.as_str())
            },
        ),
        ("Resource zone", h.resource_zone.clone()),
        ("Driver", or_dash(&h.driver)),
        ("Labels", labels),
        ("Epoch", h.epoch.to_string()),
        (
            "Registered",
            format!("{} ago", age(h.registered_at_ms, now)),
        ),
        ("Last heartbeat", heartbeat),
        ("Capacity", String::new()),
        ("  CPU", cores(cap.cpu_millis)),
        ("  Memory", bytes(cap.memory_bytes)),
        ("  Disk", disks(cap)),
        ("Allocated", String::new()),
        (
            "  CPU",
            format!(
                "{} ({})",
                cores(used.cpu_millis),
                percent(used.cpu_millis, cap.cpu_millis)
            ),
        ),
        (
            "  Memory",
            format!(
                "{} ({})",
                bytes(used.memory_bytes),
                percent(used.memory_bytes, cap.memory_bytes)
            ),
        ),
        ("  Disk", disks(used)),
        ("Containers", d.allocation.containers.to_string()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        let line = format!("{:<width$}{v}", format!("{k}:"));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !d.containers.is_empty() {
        let mut t = Table::new([
            "  CONTAINER",
            "PHASE",
            "IP",
            "CPU",
            "MEMORY",
            "IMAGE",
            "AGE",
        ]);
        for c in &d.containers {
            t.row([
                format!("  {}", c.id),
                c.phase.as_str().to_string(),
                c.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
                cores(c.resources.cpu_millis),
                bytes(c.resources.memory_bytes),
                c.image.clone(),
                age(c.created_at_ms, now),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::resources::GIB;
    use jdos_types::topology::HostAllocation;

    #[test]
    fn host_description_shows_usage_against_capacity() {
        let mut host = crate::cmd::get::tests::host("h-1", true);
        host.capacity.disk.l1 = 1 << 40;
        host.labels.insert("gpu".into(), "none".into());
        let d = HostDetail {
            allocation: HostAllocation {
                host: "h-1".into(),
                allocated: Resources::new(4_000, 16 * GIB),
                containers: 2,
            },
            host,
            containers: vec![],
        };
        let out = render_host(&d, 61_000);
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("Schedulable: no (cordoned)"), "{out}");
        assert!(
            flat.contains("Allocated: CPU: 4 cores (25%) Memory: 16 GiB (25%)"),
            "{out}"
        );
        assert!(flat.contains("Disk: l1 1 TiB"), "{out}");
        assert!(flat.contains("Labels: gpu=none"), "{out}");
        assert!(flat.contains("Registered: 60s ago"), "{out}");
        assert!(!out.lines().any(|l| l.ends_with(' ')));
    }
}
