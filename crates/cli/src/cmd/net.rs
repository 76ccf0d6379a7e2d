//! `jdos net create | get | describe | ips | delete`: VLAN networks and their
//! addresses.

use std::net::Ipv4Addr;

use anyhow::Context;
use jdos_types::{IpAssignment, IpRange, IpState, Network, Validate};

use super::GlobalOpts;
use crate::output::{age, now_ms, Table};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub what: What,
}

/// Network sub-commands.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Create a VLAN network.
    Create(CreateArgs),
    /// List networks.
    Get,
    /// Show a network with its address usage.
    Describe {
        /// Network name.
        name: String,
    },
    /// List the addresses of a network: identity and state.
    Ips {
        /// Network name.
        name: String,
    },
    /// Delete a network that has no assigned address.
    Delete {
        /// Network name.
        name: String,
    },
}

/// `jdos net create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Network name.
    pub name: String,
    /// 802.1Q VLAN id (1-4094).
    #[arg(long)]
    pub vlan: u16,
    /// IPv4 subnet, e.g. 10.20.0.0/16.
    #[arg(long)]
    pub subnet: ipnet::Ipv4Net,
    /// Gateway address inside the subnet (default: the subnet's first host address).
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// Range never handed out, `A-B` (or a single address); repeatable.
    #[arg(long = "reserved", value_parser = parse_range)]
    pub reserved: Vec<IpRange>,
    /// Network zone by isolation (e.g. prod, dmz, office).
    #[arg(long, default_value = "default")]
    pub zone: String,
    /// A switch that trunks this VLAN; repeatable (hosts behind other switches cannot use it).
    #[arg(long = "switch")]
    pub switches: Vec<String>,
    /// Seconds a released address waits before another container may get it.
    #[arg(long, default_value_t = 300)]
    pub quarantine_secs: u64,
}

/// Parses `10.0.0.2-10.0.0.9` or `10.0.0.7`.
fn parse_range(s: &str) -> Result<IpRange, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let parse = |x: &str| {
        x.trim().parse::<Ipv4Addr>().map_err(|_| {
            format!("{x:?} is not an IPv4 address (expected A-B, e.g. 10.0.0.2-10.0.0.9)")
        })
    };
    let r = IpRange {
        start: parse(a)?,
        end: parse(b)?,
    };
    if r.start > r.end {
        return Err(format!("{s}: the start is after the end"));
    }
    Ok(r)
}

/// Runs a `jdos net` sub-command.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    match a.what {
        What::Create(c) => create(c, g).await,
        What::Get => {
            let client = super::client(g)?;
            let nets = client.all_networks().await?;
            super::print(g, &nets, || render_list(&nets))
        }
        What::Describe { name } => {
            let client = super::client(g)?;
            let net = client.get_network(&name).await?;
            let ips = client.all_network_ips(&name).await?;
            let detail = serde_json::json!({ "network": net, "ips": ips });
            super::print(g, &detail, || render_describe(&net, &ips))
        }
        What::Ips { name } => {
            let client = super::client(g)?;
            let net = client.get_network(&name).await?;
            let ips = client.all_network_ips(&name).await?;
            super::print(g, &ips, || render_ips(&net, &ips, now_ms()))
        }
        What::Delete { name } => {
            let client = super::client(g)?;
            client.delete_network(&name).await?;
            super::print(g, &serde_json::json!({ "deleted": name }), || {
                format!("network/{name} deleted\n")
            })
        }
    }
}

async fn create(c: CreateArgs, g: &GlobalOpts) -> anyhow::Result<()> {
    let gateway =
        match c.gateway {
            Some(gw) => gw,
            None => c.subnet.hosts().next().with_context(|| {
                format!("subnet {} has no host address for a gateway", c.subnet)
            })?,
        };
    let net = Network {
        name: c.name,
        vlan: c.vlan,
        subnet: c.subnet,
        gateway,
        reserved: c.reserved,
        zone: c.zone,
        switches: c.switches,
        quarantine_secs: c.quarantine_secs,
    };
    // Check locally first so that bad input fails before any request; the
    // server checks again (and checks overlaps with other networks).
    if let Err(e) = net.validate() {
        let lines: Vec<String> = e
            .errors
            .iter()
            .map(|f| format!("--{}: {}", f.field.replace('_', "-"), f.message))
            .collect();
        anyhow::bail!("invalid network: {}", lines.join("; "));
    }
    let client = super::client(g)?;
    let created = client.create_network(&net).await?;
    super::print(g, &created, || {
        format!(
            "network/{} created (vlan {}, {}, gateway {})\n",
            created.name, created.vlan, created.subnet, created.gateway
        )
    })
}

/// Host addresses of a network that can be handed out.
fn usable(n: &Network) -> u64 {
    let total = 1u64 << (32 - u32::from(n.subnet.prefix_len()));
    let reserved: u64 = n
        .reserved
        .iter()
        .map(|r| (u64::from(u32::from(r.end)) + 1).saturating_sub(u64::from(u32::from(r.start))))
        .sum();
    // Network, broadcast and gateway; reserved ranges are assumed disjoint.
    total.saturating_sub(3 + reserved)
}

fn ranges(r: &[IpRange]) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(",")
}

fn render_list(nets: &[Network]) -> String {
    let mut t = Table::new([
        "NAME", "VLAN", "SUBNET", "GATEWAY", "ZONE", "SWITCHES", "RESERVED",
    ]);
    for n in nets {
        t.row([
            n.name.clone(),
            n.vlan.to_string(),
            n.subnet.to_string(),
            n.gateway.to_string(),
            n.zone.clone(),
            if n.switches.is_empty() {
                "-".into()
            } else {
                n.switches.join(",")
            },
            ranges(&n.reserved),
        ]);
    }
    if nets.is_empty() {
        return "no networks\n".into();
    }
    t.render()
}

fn render_describe(n: &Network, ips: &[IpAssignment]) -> String {
    let assigned = ips.iter().filter(|a| a.state == IpState::Assigned).count() as u64;
    let quarantined = ips.len() as u64 - assigned;
    let usable = usable(n);
    let mut s = String::new();
    s += &format!("Name:        {}\n", n.name);
    s += &format!("VLAN:        {}\n", n.vlan);
    s += &format!("Subnet:      {}\n", n.subnet);
    s += &format!("Gateway:     {}\n", n.gateway);
    s += &format!("Reserved:    {}\n", ranges(&n.reserved));
    s += &format!("Zone:        {}\n", n.zone);
    s += &format!(
        "Switches:    {}\n",
        if n.switches.is_empty() {
            "-".to_string()
        } else {
            n.switches.join(", ")
        }
    );
    s += &format!("Quarantine:  {}s\n", n.quarantine_secs);
    s += &format!(
        "Addresses:   {assigned} assigned, {quarantined} in quarantine, {} free of {usable}\n",
        usable.saturating_sub(assigned + quarantined)
    );
    if !ips.is_empty() {
        s += "\n";
        s += &render_ips(n, ips, now_ms());
    }
    s
}

fn render_ips(n: &Network, ips: &[IpAssignment], now: u64) -> String {
    let mut t = Table::new(["IP", "IDENTITY", "STATE", "AGE", "REUSABLE"]);
    for a in ips {
        let reusable = match a.state {
            IpState::Assigned => "-".to_string(),
            IpState::Quarantined => {
                // The quarantine is any u64 the creator chose: saturate, as
                // the allocator does, rather than overflow.
                let until = a
                    .since_ms
                    .saturating_add(n.quarantine_secs.saturating_mul(1000));
                if until <= now {
                    "now".to_string()
                } else {
                    format!("in {}s", (until - now).div_ceil(1000))
                }
            }
        };
        t.row([
            a.ip.to_string(),
            a.identity.to_string(),
            a.state.as_str().to_string(),
            age(a.since_ms, now),
            reusable,
        ]);
    }
    if ips.is_empty() {
        return "no addresses assigned\n".into();
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        let r = parse_range("10.0.0.2-10.0.0.9").unwrap();
        assert_eq!(r.start, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.end, Ipv4Addr::new(10, 0, 0, 9));
        let one = parse_range("10.0.0.7").unwrap();
        assert_eq!(one.start, one.end);
        assert!(parse_range("10.0.0.9-10.0.0.2")
            .unwrap_err()
            .contains("after"));
        assert!(parse_range("10.0.0.x-10.0.0.2")
            .unwrap_err()
            .contains("not an IPv4"));
    }

    fn network(quarantine_secs: u64) -> Network {
        Network {
            name: "a".into(),
            vlan: 1,
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            reserved: vec![],
            zone: "default".into(),
            switches: vec![],
            quarantine_secs,
        }
    }

    #[test]
    fn ips_show_state_age_and_when_reusable() {
        let n = network(300);
        let rec = |last: u8, index: u32, state: IpState, since_ms: u64| IpAssignment {
            network: "a".into(),
            ip: Ipv4Addr::new(10, 0, 0, last),
            identity: format!("shop/production/web/{index}").parse().unwrap(),
            state,
            since_ms,
        };
        let now = 1_000_000;
        let ips = [
            rec(2, 0, IpState::Assigned, now - 90_000),
            rec(3, 1, IpState::Quarantined, now - 60_000),
            rec(4, 2, IpState::Quarantined, now - 400_000),
        ];
        let out = render_ips(&n, &ips, now);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["IP", "IDENTITY", "STATE", "AGE", "REUSABLE"]);
        assert_eq!(
            lines[1],
            ["10.0.0.2", "shop/production/web/0", "assigned", "90s", "-"]
        );
        assert_eq!(
            lines[2],
            [
                "10.0.0.3",
                "shop/production/web/1",
                "quarantined",
                "60s",
                "in",
                "240s"
            ]
        );
        assert_eq!(
            lines[3],
            [
                "10.0.0.4",
                "shop/production/web/2",
                "quarantined",
                "6m",
                "now"
            ]
        );
    }

    #[test]
    fn a_huge_quarantine_renders_without_overflow() {
        let n = network(u64::MAX / 10);
        let rec = IpAssignment {
            network: "a".into(),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            identity: "shop/production/web/0".parse().unwrap(),
            state: IpState::Quarantined,
            since_ms: 1_000,
        };
        let out = render_ips(&n, &[rec], 2_000);
        let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[4], "in", "{out}");
        let secs: u64 = row[5].trim_end_matches('s').parse().unwrap();
        assert!(secs > 1_000_000_000, "{out}");
    }

    #[test]
    fn usable_counts_special_addresses() {
        let n = Network {
            name: "a".into(),
            vlan: 1,
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            reserved: vec![parse_range("10.0.0.2-10.0.0.11").unwrap()],
            zone: "default".into(),
            switches: vec![],
            quarantine_secs: 300,
        };
        assert_eq!(usable(&n), 256 - 3 - 10);
    }
}
