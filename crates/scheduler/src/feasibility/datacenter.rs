//! The host is in the group's datacenter.

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts of other datacenters.
pub(crate) struct InDatacenter;

impl HostFilter for InDatacenter {
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if ctx.req.dc == Some(host.datacenter) {
            Ok(())
        } else {
            Err(Reason::Datacenter)
        }
    }
}
