//! tcp mode's numbers as Prometheus text: packet counters, map usage (entries used vs max) and flows
//! per backend for the kernel path; connection counters and affinity usage for the fallback. The
//! lead's `/metrics` can append these strings as they are.

use std::fmt::Write as _;

use crate::datapath::l4::Usage;

/// The kernel path's usage and counters.
#[must_use]
pub fn render_kernel(usage: &Usage) -> String {
    let mut out = String::new();
    out.push_str("# HELP sticky_l4_packets_total Packets of the eBPF programs, by counter (verdicts and L4 events).\n");
    out.push_str("# TYPE sticky_l4_packets_total counter\n");
    for (counter, value) in usage.stats.iter() {
        let _ = writeln!(out, "sticky_l4_packets_total{{counter=\"{}\"}} {value}", counter.name());
    }
    out.push_str("# HELP sticky_l4_map_entries Entries in an L4 kernel map.\n# TYPE sticky_l4_map_entries gauge\n");
    for m in &usage.maps {
        let _ = writeln!(out, "sticky_l4_map_entries{{map=\"{}\"}} {}", m.name, m.used);
    }
    out.push_str(
        "# HELP sticky_l4_map_max_entries Capacity of an L4 kernel map.\n# TYPE sticky_l4_map_max_entries gauge\n",
    );
    for m in &usage.maps {
        let _ = writeln!(out, "sticky_l4_map_max_entries{{map=\"{}\"}} {}", m.name, m.max);
    }
    out.push_str(
        "# HELP sticky_l4_backend_flows Established flows per backend id.\n# TYPE sticky_l4_backend_flows gauge\n",
    );
    for (id, n) in &usage.flows_per_backend {
        let _ = writeln!(out, "sticky_l4_backend_flows{{backend_id=\"{id}\"}} {n}");
    }
    out
}

/// The fallback's counters and affinity-table usage.
#[must_use]
pub fn render_fallback(counters: &super::fallback::Snapshot) -> String {
    let mut out = String::new();
    out.push_str("# HELP sticky_l4_fallback_connections_total Connections of the user-space fallback, by outcome.\n");
    out.push_str("# TYPE sticky_l4_fallback_connections_total counter\n");
    for (name, value) in counters.outcomes() {
        let _ = writeln!(out, "sticky_l4_fallback_connections_total{{outcome=\"{name}\"}} {value}");
    }
    let _ = writeln!(out, "# TYPE sticky_l4_fallback_active gauge\nsticky_l4_fallback_active {}", counters.active);
    let _ = writeln!(
        out,
        "# TYPE sticky_l4_map_entries gauge\nsticky_l4_map_entries{{map=\"AFFINITY\"}} {}",
        counters.affinity_used
    );
    let _ = writeln!(
        out,
        "# TYPE sticky_l4_map_max_entries gauge\nsticky_l4_map_max_entries{{map=\"AFFINITY\"}} {}",
        counters.affinity_max
    );
    out
}

/// Reads one sample of `text` (Prometheus exposition) by its full series name, e.g.
/// `sticky_l4_map_entries{map="CONNS"}`. For tests and `sticky` diagnostics.
#[must_use]
pub fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
