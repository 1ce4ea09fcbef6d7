//! Loud skips: a test that cannot run here says why, and CI turns the skip into a failure.

use std::io::Write as _;

/// Whether this process can do what kernel tests need (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[expect(unsafe_code, reason = "libc::geteuid is the direct way to read the effective uid")]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// The running kernel's release, for skip messages.
#[must_use]
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

/// Records that `test` cannot run because of `reason`: printed, logged for the summary, or a panic
/// under `STICKY_REQUIRE_ALL=1`.
///
/// # Panics
/// When `STICKY_REQUIRE_ALL=1` (CI), so a test cannot silently stop running.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason} (kernel {})", kernel_release());
    assert!(
        !std::env::var("STICKY_REQUIRE_ALL").is_ok_and(|v| v == "1"),
        "STICKY_REQUIRE_ALL=1 but this test would be skipped: {line}"
    );
    eprintln!("SKIPPED {line}");
    if let Some(path) = std::env::var_os("STICKY_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Returns from the calling test, loudly, unless the process is root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::skip::is_root() {
            $crate::skip::skip(
                &format!("{}::{}", module_path!(), line!()),
                "needs root (network namespaces, BPF programs)",
            );
            return;
        }
    };
}
