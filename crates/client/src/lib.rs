//! jdos-client.
