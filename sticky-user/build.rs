//! Embed the eBPF object into the `sticky` binary, so one self-contained file carries both halves.
//!
//! Which object is embedded:
//! - `STICKY_EBPF_BUILD=1` (`cargo xtask` sets it wherever it builds `sticky`): the real one, built
//!   with the recipe of `cargo xtask build-ebpf` (xtask's library: Debian's rustc and bpf-linker, in
//!   `target/ebpf`); a missing toolchain is an error.
//! - `STICKY_EBPF_SKIP=1`: an empty object: a binary that says at start-up that it has no eBPF and
//!   serves everything in user space.
//! - neither: the real one if the toolchain is installed (`cargo xtask setup`), else an empty one
//!   with a warning. So `cargo build` just works after the set-up, and `cargo check` or
//!   `cargo clippy --workspace` work on a fresh clone before it (as aya's integration tests write
//!   stubs unless xtask asks for the real objects).
//!
//! A no-change rebuild of the real object takes about a second.
use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.parent().context("sticky-user has no parent directory")?.to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR")?).join("sticky.bpf.o");

    println!("cargo:rerun-if-env-changed=STICKY_EBPF_SKIP");
    println!("cargo:rerun-if-env-changed=STICKY_EBPF_BUILD");
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

    let flag = |name: &str| env::var(name).is_ok_and(|v| v == "1");
    let real = flag("STICKY_EBPF_BUILD") || (!flag("STICKY_EBPF_SKIP") && xtask::ebpf::toolchain_present());
    if !real {
        let why = if flag("STICKY_EBPF_SKIP") {
            "STICKY_EBPF_SKIP=1"
        } else {
            "the eBPF toolchain is not installed (cargo xtask setup installs it)"
        };
        println!("cargo:warning={why}: building sticky without its eBPF programs (user-space only)");
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
