//! Rebuild the eBPF object when the linker changes: bpf-linker is not a cargo dependency, so cargo
//! cannot see a new version on its own. This covers a reinstall at the same path only through the
//! environment variable below; `cargo xtask setup` pins the version, which keeps that rare.
fn main() {
    println!("cargo:rerun-if-env-changed=STICKY_BPF_LINKER");
    if let Ok(path) = std::env::var("STICKY_BPF_LINKER") {
        println!("cargo:rerun-if-changed={path}");
    }
}
