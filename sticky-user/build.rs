//! Embed the eBPF object into the `sticky` binary, so one self-contained file carries both halves.
//!
//! It runs the same recipe as `cargo xtask build-ebpf` (xtask's library): Debian's rustc and bpf-linker,
//! in `target/ebpf`. A no-change rebuild takes about a second. Set `STICKY_EBPF_SKIP=1` to embed an
//! empty object instead (for `cargo check`/`clippy` on a machine without the toolchain): such a binary
//! says at start-up that it has no eBPF and serves everything in user space.
use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.parent().context("sticky-user has no parent directory")?.to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR")?).join("sticky.bpf.o");

    println!("cargo:rerun-if-env-changed=STICKY_EBPF_SKIP");
    for path in [
        "sticky-ebpf/src",
        "sticky-ebpf/Cargo.toml",
        "sticky-ebpf/build.rs",
        "sticky-common/src",
        "sticky-common/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    if env::var("STICKY_EBPF_SKIP").is_ok_and(|v| v == "1") {
        println!("cargo:warning=STICKY_EBPF_SKIP=1: building sticky without its eBPF programs (user-space only)");
        fs::write(&out, b"")?;
        return Ok(());
    }
    let object = xtask::ebpf::build(&workspace).context(
        "building the eBPF programs failed; run `cargo xtask setup` to install the toolchain, \
         or set STICKY_EBPF_SKIP=1 to build a user-space-only binary",
    )?;
    fs::copy(&object, &out).with_context(|| format!("failed to copy {} to {}", object.display(), out.display()))?;
    Ok(())
}
