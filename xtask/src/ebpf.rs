//! Build `sticky-ebpf` into a BTF-carrying BPF ELF object with Debian's rustc and bpf-linker.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The BPF target: little-endian, as on every host sticky runs on.
pub const TARGET: &str = "bpfel-unknown-none";
/// The eBPF package and its one binary (the object file's name).
pub const PACKAGE: &str = "sticky-ebpf";
/// Debian's cargo and rustc (package `cargo-web`/`rustc-web`); rustup's come first on PATH.
pub const CARGO: &str = "/usr/bin/cargo";
/// Debian's rustc, 1.96 with LLVM 22.
pub const RUSTC: &str = "/usr/bin/rustc";

/// Where the object lands after a build: `<workspace>/target/ebpf/bpfel-unknown-none/release/sticky`.
///
/// A target directory of its own: the host build must not share fingerprints with another compiler,
/// and `build.rs` runs this nested inside cargo, which holds the lock of the main target directory.
#[must_use]
pub fn object_path(workspace: &Path) -> PathBuf {
    workspace.join("target/ebpf").join(TARGET).join("release/sticky")
}

/// Whether the toolchain this recipe needs is present (Debian's compiler with the BPF `core`, and bpf-linker).
#[must_use]
pub fn toolchain_present() -> bool {
    Path::new(CARGO).exists()
        && Path::new(RUSTC).exists()
        && Path::new("/usr/lib/rustlib").join(TARGET).exists()
        && crate::setup::bpf_linker().is_some()
}

/// Builds the eBPF object and returns its path.
///
/// Quiet unless it fails: build scripts must not flood cargo's output. A second run with no change
/// takes about a second (cargo's own fingerprints, in `target/ebpf`).
///
/// # Errors
/// The toolchain is missing (run `cargo xtask setup`), or the eBPF crate fails to compile or link.
pub fn build(workspace: &Path) -> anyhow::Result<PathBuf> {
    let Some(linker) = crate::setup::bpf_linker() else {
        bail!(
            "bpf-linker not found: run `cargo xtask setup` (it installs bpf-linker {})",
            crate::setup::BPF_LINKER_VERSION
        );
    };
    for tool in [CARGO, RUSTC] {
        if !Path::new(tool).exists() {
            bail!("{tool} not found: run `cargo xtask setup` (it installs Debian's rustc-web and cargo-web)");
        }
    }
    let mut cmd = Command::new(CARGO);
    cmd.current_dir(workspace)
        // `bpf`: the binary is built for the BPF target only (sticky-ebpf/Cargo.toml)
        .args(["build", "--release", "--locked", "--package", PACKAGE, "--features", "bpf", "--target", TARGET])
        .arg("--target-dir")
        .arg(workspace.join("target/ebpf"));
    // An enclosing cargo (build.rs) exports its own compiler, flags and wrappers: none of them apply here.
    for key in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_LTO",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_INCREMENTAL",
    ] {
        cmd.env_remove(key);
    }
    let mut path = OsString::from(linker.parent().unwrap_or(Path::new("/")));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    cmd.env("PATH", path)
        .env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("STICKY_BPF_LINKER", &linker)
        // Keep the lockfile within the oldest compiler of the workspace (rustup stable).
        .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback")
        // Debug info for BTF (CO-RE and readable verifier logs); `--btf` makes bpf-linker emit `.BTF`.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf");
    let output = cmd.output().with_context(|| format!("failed to run {cmd:?}"))?;
    if !output.status.success() {
        bail!("eBPF build failed ({}): {cmd:?}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let object = object_path(workspace);
    check_btf(&object)?;
    Ok(object)
}

/// Checks that `object` is a BPF ELF with a `.BTF` section (aya needs it for BTF maps and readable errors).
///
/// # Errors
/// The file is missing, not an ELF for the BPF machine, or has no `.BTF` section.
pub fn check_btf(object: &Path) -> anyhow::Result<()> {
    use object::{Object as _, ObjectSection as _};
    let bytes = std::fs::read(object).with_context(|| format!("failed to read {}", object.display()))?;
    let file = object::File::parse(&*bytes).with_context(|| format!("{} is not an object file", object.display()))?;
    if file.architecture() != object::Architecture::Bpf {
        bail!("{} is not a BPF object ({:?})", object.display(), file.architecture());
    }
    if !file.sections().any(|s| s.name() == Ok(".BTF")) {
        bail!("{} has no .BTF section (bpf-linker must run with --btf)", object.display());
    }
    Ok(())
}
