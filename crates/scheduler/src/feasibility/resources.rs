//! Every resource dimension and storage tier fits in what is free.

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts without room for one more container.
pub(crate) struct ResourcesFit;

impl HostFilter for ResourcesFit {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        match ctx.req.res.first_exceeding(&host.free()) {
            None => Ok(()),
            Some(d) => Err(Reason::from_dimension(d)),
        }
    }
}
