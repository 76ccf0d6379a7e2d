//! The host's resource zone is allowed for the app's business level.

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts in zones the business level may not use.
pub(crate) struct ZoneAllowed;

impl HostFilter for ZoneAllowed {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        if ctx
            .req
            .allowed_zone
            .get(host.zone as usize)
            .copied()
            .unwrap_or(false)
        {
            Ok(())
        } else {
            Err(Reason::ResourceZone)
        }
    }
}
