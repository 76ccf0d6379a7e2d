//! L1/L2 host-path volumes: a directory per container and volume under the
//! tier's root (`<root>/<container name>/<volume>`), with a size budget.
//!
//! What enforces the budget:
//! - **Admission** (here): a volume is created only if the sum of all budgets
//!   recorded under the tier root, plus the new one, fits the tier's capacity
//!   (the configured capacity, else the filesystem's size) *and* the new
//!   budget fits the filesystem's free space now. Budgets are recorded in
//!   `<root>/<container name>/.jdos-budget.json`, so admission survives agent
//!   restarts. A mutex serializes admissions within one driver.
//! - **At run time**: nothing in Docker limits a bind mount's size. A hard
//!   limit needs the tier filesystem to enforce it — XFS project quotas
//!   (`prjquota`) per container directory, which an operator sets up on the
//!   `/export/L1`, `/export/L2` mounts; this driver does not. Over-use is
//!   visible through [`TierRoots::usage`], which the monitor samples.
//!
//! L0 (tmpfs) is enforced by the kernel (`size=`); L3 by the volume driver.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::spec::{HostTier, HostVolume};
use crate::DriverError;

const BUDGET_FILE: &str = ".jdos-budget.json";

/// One tier's root directory on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRoot {
    /// Directory (must exist: usually the tier's mount point).
    pub path: PathBuf,
    /// Capacity to admit against; `None` = the filesystem's size.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
}

impl TierRoot {
    /// A root at `path`, capacity from the filesystem.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TierRoot {
            path: path.into(),
            capacity_bytes: None,
        }
    }
}

/// The L1 and L2 roots of a host.
#[derive(Debug)]
pub struct TierRoots {
    /// L1 (SSD) root.
    pub l1: TierRoot,
    /// L2 (SAS) root.
    pub l2: TierRoot,
    /// Shared by every clone: the driver hands a clone to each blocking
    /// task, and admissions through different clones must still not
    /// interleave (each would pass against the same ledgers).
    lock: Arc<Mutex<()>>,
}

impl Clone for TierRoots {
    fn clone(&self) -> Self {
        TierRoots {
            l1: self.l1.clone(),
            l2: self.l2.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl Default for TierRoots {
    /// The seeds' layout: `/export/L1`, `/export/L2`.
    fn default() -> Self {
        TierRoots::new(TierRoot::new("/export/L1"), TierRoot::new("/export/L2"))
    }
}

/// A prepared host volume: where its directory is and whether this call
/// created it (so a failed create can roll back only what it made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The volume.
    pub volume: HostVolume,
    /// Its host directory.
    pub host_path: PathBuf,
}

/// The result of [`TierRoots::prepare`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Every volume with its directory.
    pub volumes: Vec<PreparedVolume>,
    /// Container directories this call created (removed on rollback).
    pub created_dirs: Vec<PathBuf>,
}

impl TierRoots {
    /// Roots for L1 and L2.
    pub fn new(l1: TierRoot, l2: TierRoot) -> Self {
        TierRoots {
            l1,
            l2,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The root of `tier`.
    pub fn root(&self, tier: HostTier) -> &TierRoot {
        match tier {
            HostTier::L1 => &self.l1,
            HostTier::L2 => &self.l2,
        }
    }

    /// `<root>/<container>`.
    pub fn container_dir(&self, tier: HostTier, container: &str) -> PathBuf {
        self.root(tier).path.join(container)
    }

    /// Admits and creates the directories of `volumes` for `container`.
    /// Nothing is created when any volume does not fit.
    pub fn prepare(
        &self,
        container: &str,
        volumes: &[HostVolume],
    ) -> Result<Prepared, DriverError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut want: BTreeMap<HostTier, BTreeMap<String, u64>> = BTreeMap::new();
        for v in volumes {
            want.entry(v.tier)
                .or_default()
                .insert(v.name.clone(), v.size_bytes);
        }
        // Admission for every tier first, so a failure leaves nothing behind.
        for (tier, vols) in &want {
            self.admit(*tier, container, vols.values().sum())?;
        }
        let mut out = Prepared::default();
        let result = (|| {
            for (tier, vols) in &want {
                let dir = self.container_dir(*tier, container);
                if !dir.exists() {
                    std::fs::create_dir(&dir).map_err(|e| io_err("create", &dir, e))?;
                    out.created_dirs.push(dir.clone());
                }
                // Keep budgets of volumes this spec no longer lists out of the
                // ledger; their data stays until destroy.
                let text = serde_json::to_string(vols).unwrap_or_default();
                let ledger = dir.join(BUDGET_FILE);
                std::fs::write(&ledger, text).map_err(|e| io_err("write", &ledger, e))?;
            }
            for v in volumes {
                let host_path = self.container_dir(v.tier, container).join(&v.name);
                std::fs::create_dir_all(&host_path).map_err(|e| io_err("create", &host_path, e))?;
                out.volumes.push(PreparedVolume {
                    volume: v.clone(),
                    host_path,
                });
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                rollback(&out);
                Err(e)
            }
        }
    }

    fn admit(&self, tier: HostTier, container: &str, need: u64) -> Result<(), DriverError> {
        let root = self.root(tier);
        if !root.path.is_dir() {
            return Err(DriverError::Storage(format!(
                "the {tier:?} root {} does not exist: create or mount it, or configure another root",
                root.path.display()
            )));
        }
        let fs = rustix::fs::statvfs(&root.path).map_err(|e| {
            DriverError::Storage(format!("cannot stat {}: {e}", root.path.display()))
        })?;
        let fs_size = fs.f_blocks.saturating_mul(fs.f_frsize);
        let fs_free = fs.f_bavail.saturating_mul(fs.f_frsize);
        let capacity = root.capacity_bytes.map_or(fs_size, |c| c.min(fs_size));
        let ledgers = read_ledgers(&root.path).map_err(|e| io_err("read", &root.path, e))?;
        let previous = ledgers.get(container).copied().unwrap_or(0);
        let others: u64 = ledgers
            .iter()
            .filter(|(c, _)| c.as_str() != container)
            .map(|(_, b)| b)
            .sum();
        if others.saturating_add(need) > capacity {
            return Err(DriverError::Storage(format!(
                "{tier:?} budget of {need} bytes does not fit {}: {others} of {capacity} bytes are already promised to other containers",
                root.path.display()
            )));
        }
        if need.saturating_sub(previous) > fs_free {
            return Err(DriverError::Storage(format!(
                "{tier:?} budget of {need} bytes exceeds the {fs_free} bytes free on {}",
                root.path.display()
            )));
        }
        Ok(())
    }

    /// Removes every directory of `container` on both tiers (idempotent).
    pub fn purge(&self, container: &str) -> Result<(), DriverError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for tier in [HostTier::L1, HostTier::L2] {
            let dir = self.container_dir(tier, container);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &dir, e)),
            }
        }
        Ok(())
    }

    /// Bytes used under `<root>/<container>` on each tier (L1, L2).
    pub fn usage(&self, container: &str) -> (u64, u64) {
        (
            dir_size(&self.container_dir(HostTier::L1, container)),
            dir_size(&self.container_dir(HostTier::L2, container)),
        )
    }

    /// Budgets recorded under `tier`'s root, per container.
    pub fn budgets(&self, tier: HostTier) -> Result<BTreeMap<String, u64>, DriverError> {
        let root = &self.root(tier).path;
        read_ledgers(root).map_err(|e| io_err("read", root, e))
    }
}

/// Removes what a [`Prepared`] created.
pub fn rollback(p: &Prepared) {
    for d in &p.created_dirs {
        if let Err(e) = std::fs::remove_dir_all(d) {
            tracing::warn!(dir = %d.display(), error = %e, "could not roll back a volume directory");
        }
    }
}

fn read_ledgers(root: &Path) -> io::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let ledger = entry.path().join(BUDGET_FILE);
        let Ok(text) = std::fs::read_to_string(&ledger) else {
            continue;
        };
        let vols: BTreeMap<String, u64> = serde_json::from_str(&text).unwrap_or_default();
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            vols.values().sum(),
        );
    }
    Ok(out)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

fn io_err(what: &str, path: &Path, e: io::Error) -> DriverError {
    DriverError::Storage(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(tier: HostTier, name: &str, size: u64) -> HostVolume {
        HostVolume {
            tier,
            name: name.into(),
            path: format!("/{name}"),
            size_bytes: size,
            read_only: false,
        }
    }

    #[test]
    fn budgets_are_admitted_against_capacity_and_recorded() {
        let l1 = tempfile::tempdir().unwrap();
        let l2 = tempfile::tempdir().unwrap();
        let roots = TierRoots::new(
            TierRoot {
                path: l1.path().into(),
                capacity_bytes: Some(100),
            },
            TierRoot {
                path: l2.path().into(),
                capacity_bytes: Some(100),
            },
        );
        let p = roots
            .prepare(
                "c1",
                &[vol(HostTier::L1, "data", 60), vol(HostTier::L2, "logs", 10)],
            )
            .unwrap();
        assert_eq!(p.volumes.len(), 2);
        assert!(l1.path().join("c1/data").is_dir());
        assert_eq!(roots.budgets(HostTier::L1).unwrap()["c1"], 60);

        // 60 + 50 > 100: refused, and nothing of c2 is created on either tier.
        let err = roots
            .prepare(
                "c2",
                &[vol(HostTier::L2, "a", 5), vol(HostTier::L1, "b", 50)],
            )
            .unwrap_err();
        assert!(err.to_string().contains("already promised"), "{err}");
        assert!(!l1.path().join("c2").exists());
        assert!(!l2.path().join("c2").exists());

        // Re-preparing c1 replaces its own budget rather than adding to it.
        roots
            .prepare("c1", &[vol(HostTier::L1, "data", 90)])
            .unwrap();
        assert_eq!(roots.budgets(HostTier::L1).unwrap()["c1"], 90);

        std::fs::write(l1.path().join("c1/data/f"), b"12345").unwrap();
        let ledger = std::fs::metadata(l1.path().join("c1").join(BUDGET_FILE)).unwrap();
        assert_eq!(roots.usage("c1").0, 5 + ledger.len());
        roots.purge("c1").unwrap();
        roots.purge("c1").unwrap();
        assert!(!l1.path().join("c1").exists());
        assert!(!l2.path().join("c1").exists());
    }

    #[test]
    fn clones_serialize_admissions_with_the_original() {
        // DockerDriver::create prepares volumes on a clone per call, so
        // concurrent creates only exclude each other if clones share the
        // admission lock.
        let roots = TierRoots::new(TierRoot::new("/l1"), TierRoot::new("/l2"));
        let clone = roots.clone();
        let _held = roots.lock.lock().unwrap();
        assert!(
            clone.lock.try_lock().is_err(),
            "a clone admitted while the original was admitting"
        );
    }

    #[test]
    fn a_missing_root_is_a_clear_error() {
        let roots = TierRoots::new(
            TierRoot::new("/nonexistent/l1"),
            TierRoot::new("/nonexistent/l2"),
        );
        let err = roots
            .prepare("c", &[vol(HostTier::L1, "d", 1)])
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
