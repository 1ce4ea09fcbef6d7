//! The holder's side: the sockets it holds (taken over from a running holder, or bound), its unix
//! socket put in place atomically (bound at a temporary name, then renamed over the path), and the
//! answers to every request, one blocking exchange per connection.

use std::{
    net::{SocketAddr, TcpListener},
    os::{
        fd::AsFd as _,
        unix::{
            fs::{MetadataExt as _, PermissionsExt as _},
            net::UnixStream,
        },
    },
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    HoldError, client, fds,
    protocol::{MAX_LINE, Request, Response, select},
};

/// Mode of the holder's unix socket: only its owner (root in the image) may connect.
pub const MODE: u32 = 0o600;

/// The listening sockets a holder keeps open, by address.
#[derive(Debug)]
pub struct Held {
    sockets: Vec<(SocketAddr, TcpListener)>,
}

impl Held {
    /// The sockets of `listen`: each taken from the holder already serving `path` if it holds that
    /// address (so the socket and its queue of connections never close), else bound here.
    /// A holder's sockets that are not in `listen` are not taken (they close when it exits).
    ///
    /// # Errors
    /// A running holder answers wrongly, or an address cannot be bound.
    pub fn acquire(path: &Path, listen: &[SocketAddr]) -> Result<Self, HoldError> {
        let mut previous = match client::fetch(path, &Request::All) {
            Ok(sockets) => {
                tracing::info!(
                    holder = %path.display(), sockets = ?sockets.iter().map(|s| s.0).collect::<Vec<_>>(),
                    "a holder runs already: taking over its listening sockets"
                );
                sockets
            }
            // nothing there, or a stale file of a holder that was killed
            Err(HoldError::Absent { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut sockets = Vec::new();
        for &addr in listen {
            if let Some(i) = previous.iter().position(|(a, _)| *a == addr) {
                let (_, listener) = previous.swap_remove(i);
                tracing::info!(%addr, "holding the listening socket taken over (never closed)");
                sockets.push((addr, listener));
            } else {
                let listener = crate::net::bind(addr).map_err(|source| HoldError::Bind { addr, source })?;
                let bound = listener.local_addr().map_err(|source| HoldError::Bind { addr, source })?;
                tracing::info!(addr = %bound, "holding a newly bound listening socket");
                sockets.push((bound, listener));
            }
        }
        for (addr, _) in &previous {
            tracing::warn!(%addr, "the previous holder's socket is not in --listen: not taken (it closes with that holder)");
        }
        Ok(Self { sockets })
    }

    /// A holder of exactly these sockets (sticky standing in for a holder that is gone).
    #[must_use]
    pub fn of(sockets: Vec<(SocketAddr, TcpListener)>) -> Self {
        Self { sockets }
    }

    /// The addresses held, in `--listen` order.
    #[must_use]
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    /// Answers one connection: reads its request line, sends the response with the sockets asked
    /// for. A malformed request gets an `err` line; nothing here ends the holder.
    ///
    /// # Errors
    /// The connection fails (logged by the caller, at debug).
    pub fn answer(&self, stream: &UnixStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(client::TIMEOUT))?;
        stream.set_write_timeout(Some(client::TIMEOUT))?;
        let mut line = Vec::new();
        let mut buf = [0u8; MAX_LINE];
        while !line.ends_with(b"\n") && line.len() <= MAX_LINE {
            let (n, _ignored) = fds::recv(stream, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            line.extend_from_slice(&buf[..n]);
        }
        let request = Request::parse(&String::from_utf8_lossy(&line));
        let held = self.addrs();
        let (response, chosen) = match request.as_ref().map_err(ToString::to_string).and_then(|r| select(&held, r)) {
            Ok(chosen) => (Response::Ok(chosen.iter().map(|&i| held[i]).collect()), chosen),
            Err(message) => (Response::Err(message), Vec::new()),
        };
        match (&request, &response) {
            (Ok(r), Response::Ok(addrs)) => tracing::info!(request = ?r, sockets = ?addrs, "sockets handed out"),
            (_, Response::Err(message)) => tracing::warn!(%message, "request refused"),
            _ => {}
        }
        let fds: Vec<_> = chosen.iter().map(|&i| self.sockets[i].1.as_fd()).collect();
        fds::send(stream, response.encode().as_bytes(), &fds)
    }
}

/// The holder's unix socket, in place at its path; dropping it removes the file if it is still
/// this holder's (a successor renamed its own over it, which must stay).
#[derive(Debug)]
pub struct Endpoint {
    path: PathBuf,
    id: (u64, u64),
}

impl Endpoint {
    /// Binds a unix socket beside `path` (a temporary name), narrows it to [`MODE`], and renames it
    /// over `path`: a client connecting meanwhile reaches either the old holder or this one, never
    /// nothing.
    ///
    /// # Errors
    /// The directory is missing or not writable.
    pub fn bind(path: &Path) -> Result<(Self, std::os::unix::net::UnixListener), HoldError> {
        let io = |action, source| HoldError::Socket { path: path.to_owned(), action, source };
        Self::check_directory(path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let listener = std::os::unix::net::UnixListener::bind(&temp).map_err(|e| io("create the socket", e))?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(MODE))
            .map_err(|e| io("set its mode to 0600", e))?;
        let meta = std::fs::symlink_metadata(&temp).map_err(|e| io("examine the new socket", e))?;
        if let Err(e) = std::fs::rename(&temp, path) {
            let _ = std::fs::remove_file(&temp);
            return Err(io("rename the new socket into place", e));
        }
        Ok((Self { path: path.to_owned(), id: (meta.dev(), meta.ino()) }, listener))
    }

    /// Checks that the directory of `path` exists (a volume shared with sticky must be mounted there).
    ///
    /// # Errors
    /// [`HoldError::NoDirectory`].
    pub fn check_directory(path: &Path) -> Result<(), HoldError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if dir.is_dir() { Ok(()) } else { Err(HoldError::NoDirectory { path: path.to_owned(), dir: dir.to_owned() }) }
    }

    /// Whether the file at the path is still this holder's socket.
    #[must_use]
    pub fn ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if self.ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Answers every connection of `listener` on a blocking thread of its own, until the runtime ends.
///
/// # Errors
/// The listener cannot be registered, or accepting fails for good.
pub async fn serve(listener: std::os::unix::net::UnixListener, held: Arc<Held>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let held = held.clone();
                tokio::task::spawn_blocking(move || {
                    let result = stream.into_std().and_then(|s| {
                        s.set_nonblocking(false)?;
                        held.answer(&s)
                    });
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "holder connection failed");
                    }
                });
            }
            Err(e) if crate::net::is_transient(&e) => {
                tracing::warn!(error = %e, "holder accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
