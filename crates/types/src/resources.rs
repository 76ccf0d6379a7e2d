//! Resource quantities: cpu, memory and disk per storage tier.

use serde::{Deserialize, Serialize};

/// The storage tiers of the seeds (`/export/L0..L3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageTier {
    /// L0: tmpfs in memory.
    L0Tmpfs,
    /// L1: local SSD host path.
    L1Ssd,
    /// L2: local SAS host path.
    L2Sas,
    /// L3: network block volume through a volume driver.
    L3Block,
}

impl StorageTier {
    /// All tiers, in order.
    pub const ALL: [StorageTier; 4] = [
        StorageTier::L0Tmpfs,
        StorageTier::L1Ssd,
        StorageTier::L2Sas,
        StorageTier::L3Block,
    ];

    /// Short name: `l0`, `l1`, `l2`, `l3`.
    pub fn short(self) -> &'static str {
        match self {
            StorageTier::L0Tmpfs => "l0",
            StorageTier::L1Ssd => "l1",
            StorageTier::L2Sas => "l2",
            StorageTier::L3Block => "l3",
        }
    }
}

/// Disk bytes per storage tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskByTier {
    /// L0 tmpfs bytes (counted against memory on the host as well).
    #[serde(default)]
    pub l0: u64,
    /// L1 SSD bytes.
    #[serde(default)]
    pub l1: u64,
    /// L2 SAS bytes.
    #[serde(default)]
    pub l2: u64,
    /// L3 network block bytes.
    #[serde(default)]
    pub l3: u64,
}

impl DiskByTier {
    /// Bytes of one tier.
    pub fn get(&self, tier: StorageTier) -> u64 {
        match tier {
            StorageTier::L0Tmpfs => self.l0,
            StorageTier::L1Ssd => self.l1,
            StorageTier::L2Sas => self.l2,
            StorageTier::L3Block => self.l3,
        }
    }

    /// Mutable bytes of one tier.
    pub fn get_mut(&mut self, tier: StorageTier) -> &mut u64 {
        match tier {
            StorageTier::L0Tmpfs => &mut self.l0,
            StorageTier::L1Ssd => &mut self.l1,
            StorageTier::L2Sas => &mut self.l2,
            StorageTier::L3Block => &mut self.l3,
        }
    }
}

/// A quantity of resources: a container's request, a host's capacity or its
/// allocation. All arithmetic saturates or is checked; nothing wraps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Disk bytes per tier.
    #[serde(default)]
    pub disk: DiskByTier,
}

/// One gibibyte.
pub const GIB: u64 = 1 << 30;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

impl Resources {
    /// Cpu and memory only.
    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
            disk: DiskByTier {
                l0: 0,
                l1: 0,
                l2: 0,
                l3: 0,
            },
        }
    }

    /// True when every dimension of `self` is ≤ the same dimension of `other`.
    pub fn fits_in(&self, other: &Resources) -> bool {
        self.cpu_millis <= other.cpu_millis
            && self.memory_bytes <= other.memory_bytes
            && StorageTier::ALL
                .iter()
                .all(|t| self.disk.get(*t) <= other.disk.get(*t))
    }

    /// The first dimension of `self` that exceeds `other`, by name
    /// (`cpu`, `memory`, `disk.l0` …), for explaining a failed fit.
    pub fn first_exceeding(&self, other: &Resources) -> Option<&'static str> {
        if self.cpu_millis > other.cpu_millis {
            return Some("cpu");
        }
        if self.memory_bytes > other.memory_bytes {
            return Some("memory");
        }
        for (t, name) in StorageTier::ALL
            .iter()
            .zip(["disk.l0", "disk.l1", "disk.l2", "disk.l3"])
        {
            if self.disk.get(*t) > other.disk.get(*t) {
                return Some(name);
            }
        }
        None
    }

    /// Component-wise sum, saturating.
    pub fn saturating_add(&self, o: &Resources) -> Resources {
        let mut r = *self;
        r.cpu_millis = r.cpu_millis.saturating_add(o.cpu_millis);
        r.memory_bytes = r.memory_bytes.saturating_add(o.memory_bytes);
        for t in StorageTier::ALL {
            *r.disk.get_mut(t) = r.disk.get(t).saturating_add(o.disk.get(t));
        }
        r
    }

    /// Component-wise difference, saturating at zero.
    pub fn saturating_sub(&self, o: &Resources) -> Resources {
        let mut r = *self;
        r.cpu_millis = r.cpu_millis.saturating_sub(o.cpu_millis);
        r.memory_bytes = r.memory_bytes.saturating_sub(o.memory_bytes);
        for t in StorageTier::ALL {
            *r.disk.get_mut(t) = r.disk.get(t).saturating_sub(o.disk.get(t));
        }
        r
    }

    /// Component-wise difference, `None` if any dimension would go negative.
    pub fn checked_sub(&self, o: &Resources) -> Option<Resources> {
        if o.fits_in(self) {
            Some(self.saturating_sub(o))
        } else {
            None
        }
    }

    /// Multiplies every dimension by `n`, saturating.
    pub fn times(&self, n: u64) -> Resources {
        let mut r = *self;
        r.cpu_millis = r.cpu_millis.saturating_mul(n);
        r.memory_bytes = r.memory_bytes.saturating_mul(n);
        for t in StorageTier::ALL {
            *r.disk.get_mut(t) = r.disk.get(t).saturating_mul(n);
        }
        r
    }

    /// True when all dimensions are zero.
    pub fn is_zero(&self) -> bool {
        *self == Resources::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res() -> impl Strategy<Value = Resources> {
        (0u64..1 << 40, 0u64..1 << 40, 0u64..1 << 40, 0u64..1 << 40).prop_map(|(c, m, l1, l2)| {
            let mut r = Resources::new(c, m);
            r.disk.l1 = l1;
            r.disk.l2 = l2;
            r
        })
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in res(), b in res()) {
            let s = a.saturating_add(&b);
            prop_assert!(a.fits_in(&s));
            prop_assert_eq!(s.checked_sub(&b), Some(a));
        }

        #[test]
        fn first_exceeding_agrees_with_fits(a in res(), b in res()) {
            prop_assert_eq!(a.fits_in(&b), a.first_exceeding(&b).is_none());
        }
    }
}
