//! Install what the build, the tests and the benchmark need, idempotently: Debian packages through
//! apt-get and bpf-linker through `cargo install`. Fast when everything is present (one dpkg query).

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The bpf-linker release that links for LLVM 22 (Debian's rustc-web uses LLVM 22).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages of the eBPF toolchain: Debian's rustc with a prebuilt `core` for the BPF target,
/// and LLVM 22 (headers and libraries) for bpf-linker to build against.
pub const TOOLCHAIN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "rust-web-src",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "clang-22",
    "lld-22",
];

/// Packages the tests and demo use: network namespaces and veth (iproute2), iptables, curl, Docker Swarm,
/// the ACME test server (pebble), a TLS scanner (testssl.sh), headless Chromium with its WebDriver
/// (the admin dashboard's browser test) and HAProxy (the PROXY protocol tests put it in front of sticky
/// and behind it; the bench also runs it as a peer).
pub const TEST_PACKAGES: &[&str] =
    &["iproute2", "iptables", "curl", "docker.io", "pebble", "testssl.sh", "chromium", "chromium-driver", "haproxy"];

/// The peers and the load generators of `cargo xtask bench` (wrk; h2load from nghttp2-client for the
/// HTTP/2 rows), and the openssl CLI (its https rows' certificate).
pub const BENCH_PACKAGES: &[&str] = &["wrk", "nghttp2-client", "haproxy", "nginx-light", "openssl"];

/// What to set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Components {
    /// Packages for tests and the demo (namespaces, Docker).
    pub test: bool,
    /// Packages for the benchmark.
    pub bench: bool,
}

/// Installs whatever of the toolchain (always) and the chosen components is missing.
///
/// # Errors
/// Something is missing and this process is not root (the message says what to install), or apt-get
/// or `cargo install` fails.
pub fn run(components: Components) -> anyhow::Result<()> {
    let mut wanted: Vec<&str> = TOOLCHAIN_PACKAGES.to_vec();
    if components.test {
        wanted.extend_from_slice(TEST_PACKAGES);
    }
    if components.bench {
        wanted.extend_from_slice(BENCH_PACKAGES);
    }
    wanted.sort_unstable();
    wanted.dedup();
    let missing = missing_packages(&wanted)?;
    let linker_ok = bpf_linker_version().as_deref() == Some(BPF_LINKER_VERSION);
    if missing.is_empty() && linker_ok {
        return Ok(());
    }
    if !is_root() {
        let mut msg = String::from("sticky's set-up needs root to install what is missing:\n");
        if !missing.is_empty() {
            let _ = writeln!(msg, "  apt-get update && apt-get install -y {}", missing.join(" "));
        }
        if !linker_ok {
            let _ = writeln!(msg, "  {}", bpf_linker_install_command());
        }
        msg += "then run the command again (or run it as root: `sudo -E cargo xtask setup`).";
        bail!(msg);
    }
    if !missing.is_empty() {
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        apt(&["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(missing.iter().map(String::as_str));
        apt(&args)?;
    }
    if !linker_ok {
        eprintln!("setup: {}", bpf_linker_install_command());
        let status = Command::new(cargo_for_install())
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .status()
            .context("failed to run cargo install bpf-linker")?;
        if !status.success() {
            bail!("cargo install bpf-linker@{BPF_LINKER_VERSION} failed ({status})");
        }
    }
    Ok(())
}

fn bpf_linker_install_command() -> String {
    format!(
        "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@{BPF_LINKER_VERSION} --locked --no-default-features --features llvm-22"
    )
}

/// The cargo that installs bpf-linker: the one running xtask (rustup stable), not Debian's.
fn cargo_for_install() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("failed to run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The packages of `wanted` that dpkg does not report as installed.
///
/// # Errors
/// dpkg-query cannot run (not a Debian system).
pub fn missing_packages(wanted: &[&str]) -> anyhow::Result<Vec<String>> {
    // One query for all: `-W` exits non-zero when any is unknown, but still prints the known ones.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .context("failed to run dpkg-query: sticky's set-up expects Debian 12")?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = listing.lines().filter_map(|line| line.strip_suffix(" installed")).collect();
    Ok(wanted.iter().filter(|p| !installed.iter().any(|i| i == *p)).map(|p| (*p).to_owned()).collect())
}

/// The bpf-linker executable: on PATH, or in cargo's install directory.
#[must_use]
pub fn bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("bpf-linker")).find(|p| p.is_file())
}

/// The installed bpf-linker's version, e.g. `0.13.0`.
#[must_use]
pub fn bpf_linker_version() -> Option<String> {
    let output = Command::new(bpf_linker()?).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(1).map(str::to_owned)
}

/// Whether this process runs as root (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    // No libc dependency for one syscall: /proc tells the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
