//! The map registry, the object and ARCHITECTURE.md agree: every map the object declares is in
//! `sticky_common::maps::ALL` with the kernel-reported sizes, and has a row in the map table.

use std::collections::BTreeSet;

use aya::maps::Map;
use sticky_common::maps::{ALL, MapSpec};

use crate::require_root;

fn spec(name: &str) -> Option<&'static MapSpec> {
    ALL.iter().find(|s| s.name == name)
}

#[test]
fn object_maps_match_the_registry() {
    require_root!();
    let ebpf = aya::Ebpf::load(sticky::datapath::OBJECT).expect("the embedded eBPF object must load");
    let mut seen = BTreeSet::new();
    for (name, map) in ebpf.maps() {
        // Global data (`.rodata`: aya-log's AYA_LOG_LEVEL and constants) becomes a one-entry array
        // map whose size follows the code; ARCHITECTURE.md documents it in a note, not the table.
        if name.starts_with(".rodata") || name.starts_with(".data") || name.starts_with(".bss") {
            continue;
        }
        let spec =
            spec(name).unwrap_or_else(|| panic!("map {name} is in the object but not in sticky_common::maps::ALL"));
        let data = match map {
            Map::PerCpuArray(d)
            | Map::RingBuf(d)
            | Map::Array(d)
            | Map::HashMap(d)
            | Map::LruHashMap(d)
            | Map::SockHash(d) => d,
            other => panic!("map {name}: kind {other:?} is not handled by this test yet"),
        };
        let info = data.info().expect("map info must be readable");
        spec.check(&info).unwrap_or_else(|e| panic!("{e}"));
        seen.insert(name.to_owned());
    }
    // A map only in the registry would be a stale row: the object must declare every entry.
    let names: BTreeSet<String> = ALL.iter().map(|s| s.name.to_owned()).collect();
    assert_eq!(seen, names, "object maps and registry entries must be the same set");
}

#[test]
fn architecture_md_has_a_row_per_map() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md");
    let doc = std::fs::read_to_string(path).expect("ARCHITECTURE.md must exist at the workspace root");
    for spec in ALL {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` ", spec.name)))
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no map-table row for `{}`", spec.name));
        assert!(
            row.contains(&spec.max_entries.to_string()) || row.contains(&format_entries(spec.max_entries)),
            "ARCHITECTURE.md row for `{}` must state max_entries {}: {row}",
            spec.name,
            spec.max_entries
        );
    }
}

/// `131072` also written as `128 Ki`.
fn format_entries(n: u32) -> String {
    if n >= 1024 && n.is_multiple_of(1024) { format!("{} Ki", n / 1024) } else { n.to_string() }
}
