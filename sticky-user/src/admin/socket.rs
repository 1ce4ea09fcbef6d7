//! The admin API on a unix socket (`--admin-socket PATH`): the way to reach it as deployed. Nothing
//! listens on the network; whoever may open the file may use it, and the file is made mode 0600
//! (sticky's user: root in the image), so on a manager that is root, e.g.
//! `curl --unix-socket PATH http://sticky/api/backends`. `deploy/stack.yml` mounts a Docker volume
//! at the socket's directory, so the host reaches the same file.
//!
//! Start-up, in order:
//! - the directory must exist and be a directory: else a [`SocketError`] stops `sticky run` (a
//!   missing mount is a deployment mistake to see at once, not a silently absent API);
//! - a file at PATH that is not a socket is never touched ([`SocketError::NotASocket`]);
//! - a socket file at PATH is probed by connecting to it: refused means stale (a previous task's,
//!   which cannot remove its file when it is killed), and it is replaced; accepted means live: another
//!   sticky serves it (a start-first update of sticky puts two tasks on one node for a moment). A live
//!   socket is never taken over: this instance logs one line and probes again every second, and
//!   binds once the other one is gone;
//! - binding fails (the directory is read-only or not sticky's): a [`SocketError`].
//!
//! On exit the socket file is removed if it is still the one this instance bound (same device and
//! inode), so a successor's socket is never removed by its predecessor.

use std::{
    io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::net::UnixListener;

use super::Admin;

/// Mode of the socket file: only its owner (sticky's user) may connect.
pub const MODE: u32 = 0o600;
/// How often an instance that found a live socket checks whether it is gone.
const RETRY: Duration = Duration::from_secs(1);

/// Why the admin socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket's directory does not exist.
    #[error(
        "--admin-socket {path}: directory {dir} does not exist (create it, or mount it: deploy/stack.yml mounts the volume sticky_admin there)"
    )]
    NoDirectory {
        /// The socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The socket's directory is something else.
    #[error("--admin-socket {path}: {dir} is not a directory")]
    NotADirectory {
        /// The socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The path holds a file that is not a socket.
    #[error("--admin-socket {path}: a file that is not a socket is there; sticky does not replace it")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// The path cannot be examined, bound or restricted (a read-only or foreign directory).
    #[error("--admin-socket {path}: cannot {action} (is the directory writable by sticky?)")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        action: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What is at the socket path before binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Nothing,
    /// A socket nobody listens on (left by a task that was killed): replaced.
    Stale,
    /// A socket another process serves: left alone.
    Live,
}

/// Probes `path`: nothing there, a stale socket, or a live one.
///
/// # Errors
/// A file that is not a socket, or the path cannot be examined.
pub fn probe(path: &Path) -> Result<Existing, SocketError> {
    let io = |action, source| SocketError::Io { path: path.to_owned(), action, source };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(io("examine the path", e)),
        Ok(m) if !m.file_type().is_socket() => return Err(SocketError::NotASocket { path: path.to_owned() }),
        Ok(_) => {}
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(Existing::Live),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Existing::Stale),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(io("connect to the socket that is there", e)),
    }
}

/// Checks that the directory of `path` exists.
///
/// # Errors
/// It does not, or it is not a directory.
pub fn check_directory(path: &Path) -> Result<(), SocketError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SocketError::NotADirectory { path: path.to_owned(), dir }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SocketError::NoDirectory { path: path.to_owned(), dir }),
        Err(source) => Err(SocketError::Io { path: path.to_owned(), action: "examine its directory", source }),
    }
}

/// A socket file's identity: (device, inode).
pub type FileId = (u64, u64);

/// Binds `path` unless a live socket is there (`Ok(None)`): a stale one is removed first; the new
/// file gets [`MODE`]. Returns the listener and the file's identity.
///
/// # Errors
/// See [`SocketError`].
pub fn bind(path: &Path) -> Result<Option<(UnixListener, FileId)>, SocketError> {
    let io = |action, source| SocketError::Io { path: path.to_owned(), action, source };
    match probe(path)? {
        Existing::Live => return Ok(None),
        Existing::Stale => {
            tracing::info!(path = %path.display(), "replacing a stale admin socket (nothing listens on it)");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("remove the stale socket", e)),
                _ => {}
            }
        }
        Existing::Nothing => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| io("create the socket", e))?;
    // bound with the umask's mode (connecting needs write permission, which 022 already denies to
    // others); narrowed to the owner at once
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE)).map_err(|e| io("set its mode to 0600", e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| io("examine the new socket", e))?;
    Ok(Some((listener, (meta.dev(), meta.ino()))))
}

/// The socket this instance serves; dropping it removes the file if it is still this instance's.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    bound: Arc<Mutex<Option<FileId>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SocketGuard {
    /// The socket path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this instance is serving the socket now (false while another one holds it).
    #[must_use]
    pub fn serving(&self) -> bool {
        self.bound.lock().is_ok_and(|b| b.is_some())
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.task.abort();
        let ours = self.bound.lock().ok().and_then(|b| *b);
        let here = std::fs::symlink_metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == here {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves the admin API on the unix socket `path` on a task of the current runtime (see the module
/// documentation for what happens to a file already there).
///
/// # Errors
/// The directory is missing, the path holds something else, or the socket cannot be created.
pub fn spawn(path: &Path, admin: Arc<Admin>) -> Result<SocketGuard, SocketError> {
    check_directory(path)?;
    let bound = Arc::new(Mutex::new(None));
    let first = bind(path)?;
    let path = path.to_owned();
    let task = {
        let (path, bound) = (path.clone(), bound.clone());
        let record = move |id| {
            if let Ok(mut b) = bound.lock() {
                *b = Some(id);
            }
        };
        if let Some((listener, id)) = first {
            record(id);
            tokio::spawn(serve_logged(listener, admin))
        } else {
            tracing::warn!(
                path = %path.display(),
                "another sticky serves the admin socket (a start-first update?); taking it over once it is gone"
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RETRY).await;
                    match bind(&path) {
                        Ok(Some((listener, id))) => {
                            record(id);
                            tracing::info!(path = %path.display(), "admin socket taken over");
                            serve_logged(listener, admin).await;
                            return;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %crate::telemetry::chain(&e), "admin socket unavailable");
                            return;
                        }
                    }
                }
            })
        }
    };
    Ok(SocketGuard { path, bound, task })
}

async fn serve_logged(listener: UnixListener, admin: Arc<Admin>) {
    if let Err(e) = serve(listener, admin).await {
        tracing::error!(error = %e, "admin socket failed");
    }
}

/// Serves the admin API on `listener` until dropped.
///
/// # Errors
/// Only an accept error that will not recover.
pub async fn serve(listener: UnixListener, admin: Arc<Admin>) -> io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let cred = stream.peer_cred().ok();
                let caller =
                    super::access::Caller::Socket { uid: cred.map(|c| c.uid()), pid: cred.and_then(|c| c.pid()) };
                super::serve_connection(stream, caller, None, admin.clone());
            }
            Err(e) if crate::net::is_transient(&e) => {
                tracing::warn!(error = %e, "admin socket accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
