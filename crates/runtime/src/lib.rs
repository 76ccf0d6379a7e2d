//! jdos-runtime.
