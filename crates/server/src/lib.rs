//! jdos-server.
