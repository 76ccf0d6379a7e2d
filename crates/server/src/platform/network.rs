//! Which network a container's IP comes from.
//!
//! 1. the template's `network`;
//! 2. else a network of the template's `network_zone` trunked to the host's
//!    switch (the scheduler only picks hosts some such network reaches);
//! 3. else (no network asked, as in `jdos dev`) the first network, by
//!    name, trunked to the host's switch;
//! 4. else none: the container runs without a static IP. That only happens
//!    when the template names no network and no network reaches the host.

use jdos_types::group::ContainerTemplate;
use jdos_types::Network;

/// The network for a container of `template` on `host`, from `networks`
/// (sorted by name).
pub(super) fn choose<'n>(
    template: &ContainerTemplate,
    switch: &str,
    networks: &'n [Network],
) -> Option<&'n Network> {
    if let Some(name) = &template.network {
        return networks.iter().find(|n| &n.name == name);
    }
    if let Some(zone) = &template.network_zone {
        return networks
            .iter()
            .find(|n| &n.zone == zone && n.reachable_from(switch));
    }
    networks.iter().find(|n| n.reachable_from(switch))
}
