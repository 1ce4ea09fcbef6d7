//! The one eBPF build recipe (toolchain, target, flags) and the machine set-up it needs, shared by
//! `cargo xtask` and `sticky-user/build.rs` so both build the same object the same way.
//!
//! Why not rustup: rustup here has stable only, without rust-src, and can download nothing. Debian's
//! `rustc-web` (1.96, LLVM 22) ships a prebuilt `core` for `bpfel-unknown-none` (package
//! `libstd-rust-web-dev-bpf`), so the eBPF crate builds with Debian's compiler and no `build-std`.
//! `RUSTC_BOOTSTRAP=1` lets that stable compiler accept the flags aya-ebpf needs.
#![deny(unsafe_code)]

pub mod ebpf;
pub mod setup;

/// Set on every cargo that builds `sticky`: its build script then embeds the real eBPF object and
/// fails without the toolchain, instead of embedding an empty one (sticky-user/build.rs).
pub const EMBED_EBPF: (&str, &str) = ("STICKY_EBPF_BUILD", "1");

/// The host's target triple, as rustc reports it (e.g. `x86_64-unknown-linux-gnu`).
///
/// # Errors
/// rustc cannot run or prints no host line.
pub fn host_triple() -> anyhow::Result<String> {
    use anyhow::Context as _;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(&rustc).arg("-vV").output().context("failed to run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}
