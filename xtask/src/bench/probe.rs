//! The bench's HTTP probe: runs inside the client namespace (`cargo xtask` re-executes itself there
//! through `ip netns exec`), sends bounded requests, and prints what answered as JSON: the backend named
//! in each body, the status and the Set-Cookie values. Also opens the sessions and idle connections of
//! the memory measurement and holds them until its stdin closes.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use serde::{Deserialize, Serialize};
use testkit::http::Client;

/// How long one connect, read or write may take before the probe gives up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A flow's connect gives up after this (one SYN retransmission, at 1 s) and retries from a new port.
const CONNECT_RETRY_AFTER: Duration = Duration::from_millis(1500);

/// What the probe does; passed as one JSON argument.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    /// For each entry of `cookies` (a `Cookie` header value, or none): `connections` connections one
    /// after the other, each sending `requests` keep-alive GETs.
    Requests {
        /// Where to send.
        target: SocketAddr,
        /// `Cookie` header values; `None` sends no cookie.
        cookies: Vec<Option<String>>,
        /// New connections per cookie, one after the other.
        connections: u32,
        /// GETs per connection.
        requests: u32,
    },
    /// The http memory measurement: `sessions` sessions (a GET without cookie that gets one, then a
    /// GET sending it back, which must reach the same backend) over `threads` keep-alive connections,
    /// which stay open; a first report, then a line on stdin; then `hold` more connections, each
    /// replaying one session's cookie once and left open idle.
    Sessions {
        /// Where to send.
        target: SocketAddr,
        /// The balancer's cookie name.
        cookie_name: String,
        /// Sessions to create.
        sessions: u32,
        /// Connections creating them, in parallel.
        threads: u32,
        /// Idle connections left open.
        hold: u32,
    },
    /// The idle-connection measurement: `warm` keep-alive connections, each sending one GET (with
    /// `cookie`, a `Cookie` header value, if any) and then left open and idle; a first report, then a
    /// line on stdin; then `connections` more the same way.
    Idle {
        /// Where to send.
        target: SocketAddr,
        /// `Cookie` header value; `None` sends no cookie.
        cookie: Option<String>,
        /// Connections of the first phase (the baseline reading is taken with them open).
        warm: u32,
        /// Connections of the second phase.
        connections: u32,
        /// Threads opening them.
        threads: u32,
    },
    /// The tcp memory measurement: `flows` connections from `sources` (round robin), each one GET,
    /// all left open.
    Flows {
        /// Where to send.
        target: SocketAddr,
        /// Client addresses to bind.
        sources: Vec<Ipv4Addr>,
        /// Connections to open.
        flows: u32,
        /// Threads opening them.
        threads: u32,
    },
}

/// One response of a [`Spec::Requests`] probe.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Reply {
    /// Index of the cookie it sent.
    pub cookie: usize,
    /// Index of the connection that carried it.
    pub conn: u32,
    /// HTTP status.
    pub status: u16,
    /// The backend named by the body (`bN\n` -> `bN`); `None` if the body names no backend.
    pub backend: Option<String>,
    /// `name=value` of each Set-Cookie header.
    pub set_cookie: Vec<String>,
}

/// What a memory probe reports once everything it opened is open.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Held {
    /// Sessions or flows created.
    pub created: u64,
    /// Connections open now.
    pub open: u64,
    /// Requests whose body named no backend, or a non-200 status.
    pub bad: u64,
    /// Session replays that reached another backend, or flows of one source on two backends.
    pub unpinned: u64,
    /// Connects that timed out and were retried from another client port (flows only).
    pub connect_retries: u64,
    /// Backends that answered, with counts.
    pub backends: std::collections::BTreeMap<String, u64>,
}

/// Runs a probe and prints its result on stdout (one JSON line; memory probes then wait for EOF on stdin).
///
/// # Errors
/// A request fails (connect, I/O, malformed response).
pub fn main(spec: &str) -> anyhow::Result<()> {
    let spec: Spec = serde_json::from_str(spec).context("bad probe spec")?;
    match spec {
        Spec::Requests { target, cookies, connections, requests } => {
            let mut replies = Vec::new();
            for (index, cookie) in cookies.iter().enumerate() {
                for conn in 0..connections {
                    let mut c = Conn::open(target, None)?;
                    for _ in 0..requests {
                        let (status, backend, set_cookie) = c.get(cookie.as_deref())?;
                        replies.push(Reply { cookie: index, conn, status, backend, set_cookie });
                    }
                }
            }
            println!("{}", serde_json::to_string(&replies)?);
        }
        Spec::Sessions { target, cookie_name, sessions, threads, hold } => {
            let held = sessions_probe(target, &cookie_name, sessions, threads.max(1), hold)?;
            hold_until_stdin_closes(&held.0, held.1)?;
        }
        Spec::Flows { target, sources, flows, threads } => {
            let held = flows_probe(target, &sources, flows, threads.max(1))?;
            hold_until_stdin_closes(&held.0, held.1)?;
        }
        Spec::Idle { target, cookie, warm, connections, threads } => {
            let (first, mut open) = idle_probe(target, cookie.as_deref(), warm, threads.max(1))?;
            println!("{}", serde_json::to_string(&first)?);
            std::io::stdout().flush()?;
            let mut go = String::new();
            std::io::stdin().read_line(&mut go)?;
            let (held, more) = idle_probe(target, cookie.as_deref(), connections, threads.max(1))?;
            open.extend(more);
            hold_until_stdin_closes(&held, open)?;
        }
    }
    Ok(())
}

/// Prints `held` and keeps `conns` open until stdin reaches EOF (the bench has read the memory).
fn hold_until_stdin_closes(held: &Held, conns: Vec<Conn>) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(held)?);
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(conns);
    Ok(())
}

fn sessions_probe(
    target: SocketAddr,
    cookie_name: &str,
    sessions: u32,
    threads: u32,
    to_hold: u32,
) -> anyhow::Result<(Held, Vec<Conn>)> {
    type Out = (Held, Vec<(String, String)>, Conn);
    let prefix = format!("{cookie_name}=");
    // Phase 1: create and replay every session; keep (cookie, backend) of the first `to_hold`.
    let per_thread = sessions.div_ceil(threads);
    let results: Vec<anyhow::Result<Out>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let prefix = &prefix;
                s.spawn(move || -> anyhow::Result<Out> {
                    let mut held = Held::default();
                    let mut kept = Vec::new();
                    let mut c = Conn::open(target, None)?;
                    let first = t * per_thread;
                    for i in first..(first + per_thread).min(sessions) {
                        let (status, backend, cookies) = c.get(None)?;
                        let cookie = cookies.into_iter().find(|c| c.starts_with(prefix.as_str()));
                        let (Some(backend), Some(cookie), 200) = (backend, cookie, status) else {
                            held.bad += 1;
                            continue;
                        };
                        held.created += 1;
                        let (status, again, _) = c.get(Some(&cookie))?;
                        if status != 200 || again.as_deref() != Some(backend.as_str()) {
                            held.unpinned += 1;
                        }
                        *held.backends.entry(backend.clone()).or_default() += 1;
                        if i < to_hold {
                            kept.push((cookie, backend));
                        }
                    }
                    Ok((held, kept, c))
                })
            })
            .collect();
        join_all(handles)
    });
    let mut held = Held::default();
    let mut kept = Vec::new();
    let mut open = Vec::new();
    for r in results {
        let (h, k, conn) = r?;
        open.push(conn);
        held.created += h.created;
        held.bad += h.bad;
        held.unpinned += h.unpinned;
        for (b, n) in h.backends {
            *held.backends.entry(b).or_default() += n;
        }
        kept.extend(k);
    }
    // Report, and wait for the bench to read the memory with the sessions alone.
    held.open = open.len() as u64;
    println!("{}", serde_json::to_string(&held)?);
    std::io::stdout().flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    // Phase 2: one idle connection per kept session, each after one pinned request.
    for (cookie, backend) in &kept {
        let mut c = Conn::open(target, None)?;
        let (status, again, _) = c.get(Some(cookie))?;
        if status != 200 || again.as_deref() != Some(backend.as_str()) {
            held.unpinned += 1;
        }
        open.push(c);
    }
    held.open = open.len() as u64;
    Ok((held, open))
}

fn flows_probe(
    target: SocketAddr,
    sources: &[Ipv4Addr],
    flows: u32,
    threads: u32,
) -> anyhow::Result<(Held, Vec<Conn>)> {
    type Out = (Held, Vec<Conn>, Vec<(Ipv4Addr, String)>);
    anyhow::ensure!(!sources.is_empty(), "no source addresses");
    let results: Vec<anyhow::Result<Out>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> anyhow::Result<Out> {
                    let mut held = Held::default();
                    let mut open = Vec::new();
                    let mut seen: Vec<(Ipv4Addr, String)> = Vec::new();
                    for i in (t..flows).step_by(threads as usize) {
                        let source = sources[i as usize % sources.len()];
                        // A SYN the balancer cannot give a SNAT port is dropped, and its retransmissions
                        // (same ports) would be too: retry from a new client port, and count it.
                        let mut attempt = 0;
                        let mut c = loop {
                            match Conn::open_within(target, Some(source), CONNECT_RETRY_AFTER) {
                                Ok(c) => break c,
                                Err(e) if attempt >= 4 => return Err(e),
                                Err(_) => {
                                    attempt += 1;
                                    held.connect_retries += 1;
                                }
                            }
                        };
                        let (status, backend, _) = c.get(None)?;
                        let Some(backend) = backend.filter(|_| status == 200) else {
                            held.bad += 1;
                            continue;
                        };
                        held.created += 1;
                        *held.backends.entry(backend.clone()).or_default() += 1;
                        match seen.iter().find(|(s, _)| *s == source) {
                            Some((_, b)) if *b != backend => held.unpinned += 1,
                            Some(_) => {}
                            None => seen.push((source, backend)),
                        }
                        open.push(c);
                    }
                    Ok((held, open, seen))
                })
            })
            .collect();
        join_all(handles)
    });
    let mut held = Held::default();
    let mut open = Vec::new();
    let mut first: Vec<(Ipv4Addr, String)> = Vec::new();
    for r in results {
        let (h, o, seen) = r?;
        held.created += h.created;
        held.bad += h.bad;
        held.unpinned += h.unpinned;
        held.connect_retries += h.connect_retries;
        for (b, n) in h.backends {
            *held.backends.entry(b).or_default() += n;
        }
        open.extend(o);
        // A source's flows on two threads must agree too.
        for (source, backend) in seen {
            match first.iter().find(|(s, _)| *s == source) {
                Some((_, b)) if *b != backend => held.unpinned += 1,
                Some(_) => {}
                None => first.push((source, backend)),
            }
        }
    }
    held.open = open.len() as u64;
    Ok((held, open))
}

fn idle_probe(
    target: SocketAddr,
    cookie: Option<&str>,
    connections: u32,
    threads: u32,
) -> anyhow::Result<(Held, Vec<Conn>)> {
    let results: Vec<anyhow::Result<(Held, Vec<Conn>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> anyhow::Result<(Held, Vec<Conn>)> {
                    let mut held = Held::default();
                    let mut open = Vec::new();
                    for _ in (t..connections).step_by(threads as usize) {
                        let mut c = Conn::open(target, None)?;
                        let (status, backend, _) = c.get(cookie)?;
                        match backend.filter(|_| status == 200) {
                            Some(b) => {
                                held.created += 1;
                                *held.backends.entry(b).or_default() += 1;
                            }
                            None => held.bad += 1,
                        }
                        open.push(c);
                    }
                    Ok((held, open))
                })
            })
            .collect();
        join_all(handles)
    });
    let mut held = Held::default();
    let mut open = Vec::new();
    for r in results {
        let (h, o) = r?;
        held.created += h.created;
        held.bad += h.bad;
        for (b, n) in h.backends {
            *held.backends.entry(b).or_default() += n;
        }
        open.extend(o);
    }
    // A pinned cookie's connections must all have reached one backend.
    if cookie.is_some() && held.backends.len() > 1 {
        held.unpinned = held.created - held.backends.values().copied().max().unwrap_or(0);
    }
    held.open = open.len() as u64;
    Ok((held, open))
}

/// One keep-alive HTTP/1.1 client connection (the test kit's client, as the bench's probes use it).
struct Conn(Client);

impl Conn {
    fn open(target: SocketAddr, source: Option<Ipv4Addr>) -> anyhow::Result<Self> {
        Self::open_within(target, source, IO_TIMEOUT)
    }

    fn open_within(target: SocketAddr, source: Option<Ipv4Addr>, timeout: Duration) -> anyhow::Result<Self> {
        let mut connect = Client::to(target).connect_timeout(timeout).io_timeout(IO_TIMEOUT).host("bench.test");
        if let Some(source) = source {
            connect = connect.from(source);
        }
        Ok(Self(connect.open()?))
    }

    /// One GET /; returns the status, the backend its body names and the Set-Cookie `name=value`s.
    fn get(&mut self, cookie: Option<&str>) -> anyhow::Result<(u16, Option<String>, Vec<String>)> {
        let cookie: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        let r = self.0.request("GET", "/", &cookie, b"")?;
        ensure!(
            r.header("transfer-encoding").is_none(),
            "chunked responses are not expected from the bench's backends"
        );
        ensure!(r.body.len() <= 4096, "response body of {} bytes: not a bench backend", r.body.len());
        let set_cookie = r.set_cookies().into_iter().map(str::to_owned).collect();
        Ok((r.status, backend_of(&r.body), set_cookie))
    }
}

/// The backend a body names: `bN\n` -> `bN`.
#[must_use]
pub fn backend_of(body: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(body).ok()?.strip_suffix('\n')?;
    let digits = name.strip_prefix('b')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| name.to_owned())
}

/// Each scoped probe thread's result, a panic counted as an error.
fn join_all<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>>) -> Vec<anyhow::Result<T>> {
    handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("probe thread panicked")))).collect()
}

#[cfg(test)]
mod tests {
    use super::backend_of;

    #[test]
    fn only_backend_bodies_name_a_backend() {
        assert_eq!(backend_of(b"b1\n").as_deref(), Some("b1"));
        assert_eq!(backend_of(b"b12\n").as_deref(), Some("b12"));
        assert_eq!(backend_of(b"b1"), None);
        assert_eq!(backend_of(b"<html>404</html>\n"), None);
        assert_eq!(backend_of(b"b\n"), None);
    }
}
