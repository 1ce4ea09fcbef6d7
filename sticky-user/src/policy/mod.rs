//! Balancing decisions as plain functions of their inputs: no I/O, no clocks, no kernel. The kernel
//! path's map sync and the user-space fallback share them, so both decide alike.
//!
//! - [`maglev`]: the Maglev lookup table of a backend set, identical on every instance.
//! - [`affinity`]: whether a client's remembered backend is still trusted; the fallback's affinity table.

pub mod affinity;
pub mod maglev;
