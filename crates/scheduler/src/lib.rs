//! jdos-scheduler.
