//! Processes that die with the test: a guard that kills its child on drop, and readiness polling.

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The `sticky` binary under test: `$STICKY_BIN` (set by `cargo xtask test`), else target/debug/sticky.
#[must_use]
pub fn sticky_bin() -> PathBuf {
    std::env::var_os("STICKY_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sticky"), PathBuf::from)
}

/// A child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed; stdout and stderr are inherited (cargo test captures them).
    ///
    /// # Panics
    /// The program cannot start.
    #[must_use]
    pub fn spawn(cmd: &mut Command) -> Self {
        let what = format!("{cmd:?}");
        let child = cmd.stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Self { child, what }
    }

    /// The child's pid.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills (SIGKILL) and reaps the child now; dropping the guard afterwards does nothing more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for the child to exit: its status, or `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// Everything the child wrote to its stderr (spawned with `Stdio::piped()`), read to the end.
    ///
    /// # Panics
    /// stderr was not piped.
    pub fn stderr_text(&mut self) -> String {
        use std::io::Read as _;
        let mut text = String::new();
        let mut pipe = self.child.stderr.take().expect("stderr must be piped");
        let _ = pipe.read_to_string(&mut text);
        text
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            if e.kind() != std::io::ErrorKind::InvalidInput {
                eprintln!("kill {}: {e}", self.what);
            }
        }
        let _ = self.child.wait();
    }
}

/// Polls until `check` returns true, at most `timeout`; returns whether it did.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a TCP connect to `addr` succeeds within 200 ms (from the calling thread's namespace).
#[must_use]
pub fn can_connect(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
