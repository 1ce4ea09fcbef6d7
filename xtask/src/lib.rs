//! The one eBPF build recipe (toolchain, target, flags) and the machine set-up it needs, shared by
//! `cargo xtask` and `sticky-user/build.rs` so both build the same object the same way.
//!
//! Why not rustup: rustup here has stable only, without rust-src, and can download nothing. Debian's
//! `rustc-web` (1.96, LLVM 22) ships a prebuilt `core` for `bpfel-unknown-none` (package
//! `libstd-rust-web-dev-bpf`), so the eBPF crate builds with Debian's compiler and no `build-std`.
//! `RUSTC_BOOTSTRAP=1` lets that stable compiler accept the flags aya-ebpf needs.

pub mod ebpf;
pub mod setup;
