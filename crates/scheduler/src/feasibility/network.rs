//! The group's network (VLAN) is trunked to the host's switch.

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts whose switch does not carry the group's VLAN.
pub(crate) struct NetworkReachable;

impl HostFilter for NetworkReachable {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        match &ctx.req.reachable {
            None => Ok(()),
            Some(r) if r[host.switch as usize] => Ok(()),
            Some(_) => Err(Reason::NetworkUnreachable),
        }
    }
}
