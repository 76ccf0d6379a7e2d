//! jdos-ipam.
