//! The host is ready and not cordoned.

use jdos_types::HostState;

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts that are suspect, down, draining or degraded.
pub(crate) struct Ready;

impl HostFilter for Ready {
    fn check(&self, _: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if host.state == HostState::Ready {
            Ok(())
        } else {
            Err(Reason::NotReady)
        }
    }
}

/// Filters cordoned hosts.
pub(crate) struct NotCordoned;

impl HostFilter for NotCordoned {
    fn check(&self, _: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if host.cordoned {
            Err(Reason::Cordoned)
        } else {
            Ok(())
        }
    }
}

/// Filters hosts the request asked to avoid (the hosts a relocation moves
/// containers away from).
pub(crate) struct NotAvoided;

impl HostFilter for NotAvoided {
    fn check(&self, ctx: &FilterCtx<'_>, idx: u32, _: &HostEntry) -> Result<(), Reason> {
        if ctx.req.avoids(idx) {
            Err(Reason::Avoided)
        } else {
            Ok(())
        }
    }
}
