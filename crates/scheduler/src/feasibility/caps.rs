//! Hard spread caps: the group's replicas per switch, rack and host.

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// The group is at its cap on the host's switch.
pub(crate) struct SwitchCap;

impl HostFilter for SwitchCap {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if ctx.counts.switch[host.switch as usize] < ctx.req.cap_switch {
            Ok(())
        } else {
            Err(Reason::CapSwitch)
        }
    }
}

/// The group is at its cap on the host's rack.
pub(crate) struct RackCap;

impl HostFilter for RackCap {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if ctx.counts.rack[host.rack as usize] < ctx.req.cap_rack {
            Ok(())
        } else {
            Err(Reason::CapRack)
        }
    }
}

/// The group is at its cap on the host.
pub(crate) struct HostCap;

impl HostCap {
    /// The same check by index, for the hot loop.
    #[inline]
    pub(crate) fn ok(ctx: &FilterCtx<'_>, h: u32) -> bool {
        ctx.counts.host[h as usize] < ctx.req.cap_host
    }
}

impl HostFilter for HostCap {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, h: u32, _: &HostEntry) -> Result<(), Reason> {
        if Self::ok(ctx, h) {
            Ok(())
        } else {
            Err(Reason::CapHost)
        }
    }
}
