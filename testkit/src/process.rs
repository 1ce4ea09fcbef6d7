//! Processes that die with the test or the bench: a guard that stops its child on drop (SIGKILL, or
//! SIGTERM first when given a grace period), signals by pid, logs into a file, and commands that must
//! succeed.

use std::{
    fs::OpenOptions,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::Duration,
};

use crate::{causes, wait};

/// A process that failed to start, to run to success, or to stay alive.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("failed to start {what}")]
    Spawn {
        /// The command or the process's name.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command that had to succeed exited with a failure.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// A process that had to keep running has exited.
    #[error("{what} exited ({status})")]
    Exited {
        /// The process's name.
        what: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// Its state or a signal could not be read or sent.
    #[error("failed to {action} {what}")]
    Control {
        /// The process's name.
        what: String,
        /// What was attempted.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be opened.
    #[error("failed to open the log {}", path.display())]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A child process, stopped and reaped on drop (also while a failing test unwinds): SIGKILL at once,
/// or with [`ChildGuard::with_grace`] SIGTERM first and SIGKILL if it still runs after the grace period.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
    grace: Option<Duration>,
    /// Set once the child has been reaped: its pid may then belong to another process, so
    /// [`ChildGuard::signal`] refuses.
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed; stdout and stderr as `cmd` says (inherited by default, which
    /// cargo test captures).
    ///
    /// # Panics
    /// The program cannot start.
    #[must_use]
    pub fn spawn(cmd: &mut Command) -> Self {
        Self::try_spawn(cmd).unwrap_or_else(|e| panic!("{e}: {}", causes(&e)))
    }

    /// Spawns `cmd` with stdin closed, named after its command line.
    ///
    /// # Errors
    /// The program cannot start.
    pub fn try_spawn(cmd: &mut Command) -> Result<Self, ProcessError> {
        let what = format!("{cmd:?}");
        match cmd.stdin(Stdio::null()).spawn() {
            Ok(child) => Ok(Self::adopt(&what, child)),
            Err(source) => Err(ProcessError::Spawn { what, source }),
        }
    }

    /// Guards a child spawned elsewhere (e.g. with pipes to its stdin), named `what` in messages.
    #[must_use]
    pub fn adopt(what: &str, child: Child) -> Self {
        Self { child, what: what.to_owned(), grace: None, exited: None }
    }

    /// Names the process in messages (instead of its command line).
    #[must_use]
    pub fn named(mut self, what: &str) -> Self {
        what.clone_into(&mut self.what);
        self
    }

    /// On drop, SIGTERM first and SIGKILL only if it still runs after `grace` (a server that flushes
    /// its logs, a daemon that unmounts).
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The name used in messages.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.what
    }

    /// The child's pid.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.poll().is_none()
    }

    /// Fails if the child has exited.
    ///
    /// # Errors
    /// It has exited (the error has its status), or its state cannot be read.
    pub fn check_alive(&mut self) -> Result<(), ProcessError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.exited = Some(status);
                Err(ProcessError::Exited { what: self.what.clone(), status })
            }
            Err(source) => Err(ProcessError::Control { what: self.what.clone(), action: "wait for", source }),
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the child.
    ///
    /// # Errors
    /// The child was already reaped (its pid may be someone else's now), or kill(2) fails.
    pub fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        if let Some(status) = self.exited {
            return Err(ProcessError::Exited { what: self.what.clone(), status });
        }
        self::signal(self.id(), signal).map_err(|source| ProcessError::Control {
            what: self.what.clone(),
            action: "signal",
            source,
        })
    }

    /// Kills (SIGKILL) and reaps the child now; dropping the guard afterwards does nothing more.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Err(e) = self.child.kill() {
            // InvalidInput: it had already exited (older std); nothing to kill.
            if e.kind() != std::io::ErrorKind::InvalidInput {
                eprintln!("kill {}: {e}", self.what);
            }
        }
        self.exited = self.child.wait().ok();
    }

    /// SIGTERM, then SIGKILL if the child still runs after `grace`; reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if self.poll().is_some() {
            return;
        }
        if self.signal(libc::SIGTERM).is_ok() {
            let _ = wait::until(grace, || self.poll().is_some());
        }
        self.kill();
    }

    /// Waits at most `timeout` for the child to exit: its status, or `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait::until(timeout, || {
            status = self.poll();
            status.is_some()
        });
        status
    }

    /// Everything the child wrote to its stderr (spawned with `Stdio::piped()`), read to the end.
    ///
    /// # Panics
    /// stderr was not piped.
    pub fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        let mut pipe = self.child.stderr.take().expect("stderr must be piped to be read");
        let _ = pipe.read_to_string(&mut text);
        text
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Never panic here: this runs while a failing test unwinds.
        match self.grace {
            Some(grace) => self.stop(grace),
            None => self.kill(),
        }
    }
}

/// Sends `signal` to process `pid`.
///
/// # Errors
/// kill(2) fails (no such process, or not allowed).
pub fn signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions.
    #[expect(unsafe_code, reason = "libc::kill: std cannot send SIGTERM, SIGSTOP or SIGHUP")]
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Sends `cmd`'s stdout and stderr to the end of `path` (created if missing), so a log survives the
/// process and several runs can share one file.
///
/// # Errors
/// The file cannot be opened.
pub fn log_to(cmd: &mut Command, path: &Path) -> Result<(), ProcessError> {
    let fail = |source| ProcessError::Log { path: path.to_owned(), source };
    let file = OpenOptions::new().create(true).append(true).open(path).map_err(fail)?;
    cmd.stdout(file.try_clone().map_err(fail)?).stderr(file);
    Ok(())
}

/// Runs `cmd` to completion with stdin closed and returns its output.
///
/// # Errors
/// It cannot start or exits non-zero (the error carries its stderr).
pub fn run(cmd: &mut Command) -> Result<Output, ProcessError> {
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| ProcessError::Spawn { what: what.clone(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(ProcessError::Failed { what, status: out.status, stderr });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt as _, process::Command, time::Duration};

    use super::{ChildGuard, ProcessError, run};

    #[test]
    fn dropping_the_guard_kills_and_reaps_the_child() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("600"));
        let pid = guard.id();
        drop(guard);
        // Reaped, so not even a zombie is left: /proc has no entry.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the child must be gone after drop");
    }

    #[test]
    fn stop_sends_sigterm_first_and_reaps_the_child() {
        let mut guard = ChildGuard::spawn(Command::new("sleep").arg("600")).named("sleeper");
        guard.stop(Duration::from_secs(30));
        let status = guard.wait_timeout(Duration::ZERO).expect("a stopped child must have an exit status");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "SIGTERM must have been enough: {status:?}");
        assert!(matches!(guard.check_alive(), Err(ProcessError::Exited { .. })), "a stopped child is not alive");
        assert!(guard.signal(libc::SIGCONT).is_err(), "a reaped child's pid must not be signalled");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])).expect_err("exit 3 must fail");
        let text = err.to_string();
        assert!(text.contains("broken") && text.contains('3'), "the message must carry stderr and status: {text}");
    }
}
