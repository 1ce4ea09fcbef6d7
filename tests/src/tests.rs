//! The integration tests, one module per feature. Each kernel test starts with `require_root!()`.

mod classifier;
mod l4_packets;
mod l4_topology;
mod l4_topology6;
mod l7_splice;
mod maps_table;
mod packets;
mod splice;
mod swarm;
