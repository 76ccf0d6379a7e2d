//! jdos-autoscaler.
