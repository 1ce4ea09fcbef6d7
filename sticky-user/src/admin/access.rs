//! Who may write through the admin API (drain, activate), and the log line of every write.
//!
//! Reads (`/metrics`, `/api/backends`, `/healthz`, the dashboard) are open to whoever reaches the
//! listener: Prometheus scrapes them, and the listener binds to loopback unless told otherwise.
//! Writes are decided by the way in:
//!
//! | way in | `--admin-read-only` | token file given | no token file |
//! |---|---|---|---|
//! | TCP (`--admin`) | refused (403) | `Authorization: Bearer TOKEN` required (401 without it) | refused (403): writes over the network need a token |
//! | unix socket (`--admin-socket`) | refused (403) | allowed | allowed |
//!
//! Reads and writes over TCP also need a `Host` that names the listener ([`Access::check_host`]):
//! its own address, localhost, or an `--admin-host` name, so that a web page cannot read the API
//! through DNS rebinding (a name of its own resolving to this address); `/healthz` is exempt.
//!
//! The unix socket is mode 0600: reaching it is already proof of being its owner (root in the
//! image), the way the Docker socket works, so it needs no token. Every write, allowed or refused,
//! is logged at INFO with the caller and what it asked.

use std::{fmt, net::SocketAddr, path::Path};

use http::{HeaderMap, StatusCode, header};

/// The shortest token accepted: a guessable token would be worse than none.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin API's write policy, and the Host names its TCP listener answers for.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Vec<u8>>,
    read_only: bool,
    /// `--admin-host` names, lower-case.
    hosts: Vec<String>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the token itself
        f.debug_struct("Access")
            .field("token", &self.token.is_some())
            .field("read_only", &self.read_only)
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Who is calling, as the admin listener sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A TCP peer of `--admin`.
    Tcp(SocketAddr),
    /// A process on the unix socket, with its credentials if the kernel gave them.
    Socket {
        /// The peer's user id.
        uid: Option<u32>,
        /// The peer's process id.
        pid: Option<i32>,
    },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(peer) => write!(f, "tcp {peer}"),
            Self::Socket { uid, pid } => {
                write!(f, "unix socket")?;
                if let Some(uid) = uid {
                    write!(f, " uid {uid}")?;
                }
                if let Some(pid) = pid {
                    write!(f, " pid {pid}")?;
                }
                Ok(())
            }
        }
    }
}

/// What the dashboard and `/api/backends` say about writes for a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Writes {
    /// Allowed without a token.
    Open,
    /// Allowed with the bearer token.
    Token,
    /// Refused whatever is sent.
    Disabled,
}

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It cannot be read.
    #[error("--admin-token-file {path}: cannot read it")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is too short (or empty).
    #[error(
        "--admin-token-file {path}: the token has {len} bytes, at least {MIN_TOKEN_LEN} are needed (e.g. openssl rand -hex 32)"
    )]
    Short {
        /// The file.
        path: std::path::PathBuf,
        /// The token's length after trimming.
        len: usize,
    },
}

impl Access {
    /// The policy: `token` (the token file's content, surrounding whitespace ignored) and read-only.
    ///
    /// # Errors
    /// The token is shorter than [`MIN_TOKEN_LEN`].
    pub fn new(token: Option<(&Path, &[u8])>, read_only: bool) -> Result<Self, TokenError> {
        let token = match token {
            Some((path, bytes)) => {
                let t = bytes.trim_ascii();
                if t.len() < MIN_TOKEN_LEN {
                    return Err(TokenError::Short { path: path.to_owned(), len: t.len() });
                }
                Some(t.to_vec())
            }
            None => None,
        };
        Ok(Self { token, read_only, hosts: Vec::new() })
    }

    /// The policy with extra Host names the TCP listener answers for (`--admin-host`).
    #[must_use]
    pub fn with_hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// Whether a request over TCP to the listener's address `local` may be answered, by its `Host`
    /// (DNS rebinding: a page of another site whose name now resolves to this listener makes the
    /// browser send that name as Host). Answered: no Host (not a browser: HTTP/1.0 tools), an IP
    /// literal that is `local` or a loopback address, `localhost` (and `*.localhost`), or an
    /// `--admin-host` name; the port is not compared. The unix socket is not asked (no browser reaches it).
    ///
    /// # Errors
    /// 421 (Misdirected Request) with the reason.
    pub fn check_host(&self, local: std::net::IpAddr, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let Some(host) = headers.get(header::HOST) else { return Ok(()) };
        if host_allowed(host.as_bytes(), local, &self.hosts) {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(host.as_bytes()).chars().take(100).collect::<String>();
        Err((
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this admin listener answers for its own address, localhost and --admin-host names, not Host {shown:?} \
                 (a refused name protects against DNS rebinding: add it with --admin-host NAME if it is yours)\n"
            ),
        ))
    }

    /// Reads the token file (if any) and builds the policy.
    ///
    /// # Errors
    /// The file cannot be read, or its token is too short.
    pub fn load(token_file: Option<&Path>, read_only: bool) -> Result<Self, TokenError> {
        match token_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| TokenError::Read { path: path.to_owned(), source })?;
                Self::new(Some((path, &bytes)), read_only)
            }
            None => Self::new(None, read_only),
        }
    }

    /// How writes stand for `caller`.
    #[must_use]
    pub fn writes(&self, caller: &Caller) -> Writes {
        match (self.read_only, caller, &self.token) {
            (true, _, _) | (false, Caller::Tcp(_), None) => Writes::Disabled,
            (false, Caller::Tcp(_), Some(_)) => Writes::Token,
            (false, Caller::Socket { .. }, _) => Writes::Open,
        }
    }

    /// Whether `caller` may write with these request headers; the refusal's status and reason.
    ///
    /// # Errors
    /// 403 when writes are disabled for this caller, 401 when the token is missing or wrong.
    pub fn check(&self, caller: &Caller, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        match self.writes(caller) {
            Writes::Open => Ok(()),
            Writes::Disabled if self.read_only => {
                Err((StatusCode::FORBIDDEN, "the admin API is read-only (--admin-read-only)\n"))
            }
            Writes::Disabled => Err((
                StatusCode::FORBIDDEN,
                "admin writes over TCP need a token: start sticky with --admin-token-file FILE, or use --admin-socket\n",
            )),
            Writes::Token => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                    .map(<[u8]>::trim_ascii);
                match (given, &self.token) {
                    (Some(given), Some(token)) if same(given, token) => Ok(()),
                    (None, _) => Err((StatusCode::UNAUTHORIZED, "admin writes need Authorization: Bearer TOKEN\n")),
                    _ => Err((StatusCode::UNAUTHORIZED, "wrong admin token\n")),
                }
            }
        }
    }
}

/// Whether a `Host` value names this listener (see [`Access::check_host`]).
#[must_use]
pub fn host_allowed(host: &[u8], local: std::net::IpAddr, extra: &[String]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let host = host.trim().to_ascii_lowercase();
    // the name without its port: `[v6]:port`, `[v6]`, `name:port`, `v4:port`, `name`
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(
            host.as_str(),
            |(n, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) { n } else { "" }
            },
        )
    };
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return false;
    }
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        let ip = crate::cidr::unmap(ip);
        return ip == crate::cidr::unmap(local) || ip.is_loopback();
    }
    name == "localhost" || name.ends_with(".localhost") || extra.iter().any(|e| e.trim_end_matches('.') == name)
}

/// Equality that takes as long whatever the first differing byte (the length may show).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
