//! The host's capacity as the agent registers it: cpus and memory from
//! /proc (overridable, for several agents sharing one machine), disk per
//! tier from the L1/L2 roots' filesystems.

use std::path::Path;

use jdos_types::Resources;

/// Millicores from `/proc/cpuinfo`'s `processor` lines (1000 per cpu).
pub fn parse_cpuinfo(text: &str) -> Option<u64> {
    let n = text
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count() as u64;
    (n > 0).then_some(n * 1000)
}

/// Bytes of `MemTotal` in `/proc/meminfo` (given in kB).
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// Millicores of this machine: /proc/cpuinfo, else the cpus this process may
/// use.
pub fn host_cpu_millis() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpuinfo(&t))
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1000, |n| n.get() as u64 * 1000)
        })
}

/// Memory of this machine in bytes (0 when /proc/meminfo cannot be read).
pub fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
        .unwrap_or(0)
}

/// Size of the filesystem holding `path` (0 when it does not exist).
pub fn filesystem_bytes(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_blocks.saturating_mul(s.f_frsize),
        Err(_) => 0,
    }
}

/// The capacity to register: overrides where given, else what the machine
/// has; L1/L2 disk from the tier roots' filesystems when they exist.
pub fn capacity(
    cpu_override: Option<u64>,
    memory_override: Option<u64>,
    l1_root: Option<&Path>,
    l2_root: Option<&Path>,
) -> Resources {
    let mut r = Resources::new(
        cpu_override.unwrap_or_else(host_cpu_millis),
        memory_override.unwrap_or_else(host_memory_bytes),
    );
    r.disk.l1 = l1_root.map_or(0, filesystem_bytes);
    r.disk.l2 = l2_root.map_or(0, filesystem_bytes);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let cpuinfo = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(parse_cpuinfo(cpuinfo), Some(2000));
        assert_eq!(parse_cpuinfo("model name: x"), None);
        let meminfo = "MemTotal:       16318504 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(16_318_504 * 1024));
        assert_eq!(parse_meminfo("MemFree: 1 kB"), None);
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let c = capacity(None, None, Some(Path::new("/")), None);
        assert!(c.cpu_millis >= 1000);
        assert!(c.memory_bytes > 0);
        assert!(c.disk.l1 > 0);
        let o = capacity(Some(500), Some(1 << 30), None, None);
        assert_eq!((o.cpu_millis, o.memory_bytes, o.disk.l1), (500, 1 << 30, 0));
    }
}
