//! jdos-sim.
