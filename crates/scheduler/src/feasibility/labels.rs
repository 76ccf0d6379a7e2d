//! The host carries every label the group requires; [`HOST_LABEL`] is
//! implicit on every host, valued with its name.

use jdos_types::group::HOST_LABEL;

use super::{FilterCtx, HostFilter};
use crate::explain::Reason;
use crate::snapshot::HostEntry;

/// Filters hosts missing a required label (or with another value).
pub(crate) struct LabelsMatch;

impl HostFilter for LabelsMatch {
    #[inline]
    fn check(&self, ctx: &FilterCtx<'_>, _: u32, host: &HostEntry) -> Result<(), Reason> {
        let ok =
            ctx.req.labels.iter().all(|(k, v)| {
                host.labels.get(k) == Some(v) || (k == HOST_LABEL && host.name == *v)
            });
        if ok {
            Ok(())
        } else {
            Err(Reason::Labels)
        }
    }
}
