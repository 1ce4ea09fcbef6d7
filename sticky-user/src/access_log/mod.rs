//! The access log (`--access-log text|json`): one line per request (HTTP/1 and HTTP/2) and per tcp
//! connection relayed in user space, off by default.
//!
//! The data path never waits for it: a request that is logged formats its line ([`format`]) and
//! offers it to a bounded channel; a writer thread of its own writes the lines to stdout or a file.
//! A full channel (a slow disk, a blocked stdout) drops the line, and so does the rate limit
//! (`--access-log-rate`); both count in `sticky_access_log_dropped_total`. Sampling
//! (`--access-log-sample N`, one request in N) drops nothing: the others are simply not logged.
//!
//! One log per process, so it is a process-wide sink installed at start ([`install`]) that the hooks
//! read ([`get`]): the proxy's per-connection state does not grow by a byte for it.

pub mod format;

use std::{
    io::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError},
    },
    time::{Duration, Instant, SystemTime},
};

pub use format::{Line, Pick};

pub use crate::config::ops::{Format, Settings};

use crate::policy::{Decision, Reject};

/// Lines waiting for the writer at most; past it lines are dropped (and counted).
pub const QUEUE: usize = 8192;

/// The installed log: sampling, rate limit, the channel to the writer and its drop counter.
#[derive(Debug)]
pub struct Sink {
    format: Format,
    sample: u64,
    rate: Option<u32>,
    seen: AtomicU64,
    /// (second << 32) | lines in that second.
    window: AtomicU64,
    tx: SyncSender<String>,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The installed log, if any.
#[must_use]
pub fn get() -> Option<&'static Sink> {
    SINK.get()
}

/// Lines dropped so far (`sticky_access_log_dropped_total`): over the rate, or the writer behind.
#[must_use]
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Opens the destination and starts the writer thread; a second call keeps the first log.
///
/// # Errors
/// The file cannot be opened for appending, or the thread cannot start.
pub fn install(settings: &Settings) -> std::io::Result<()> {
    if SINK.get().is_some() {
        return Ok(());
    }
    let out: Box<dyn std::io::Write + Send> = match &settings.file {
        Some(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stdout()),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    std::thread::Builder::new().name("access-log".into()).spawn(move || writer(&rx, out))?;
    let sink = Sink {
        format: settings.format,
        sample: settings.sample.max(1),
        rate: settings.rate,
        seen: AtomicU64::new(0),
        window: AtomicU64::new(0),
        tx,
    };
    let _ = SINK.set(sink);
    tracing::info!(format = ?settings.format, file = ?settings.file, sample = settings.sample, rate = ?settings.rate, "access log on");
    Ok(())
}

/// How long the writer sleeps between two drains while lines come, and at most while none do.
const DRAIN_MIN: Duration = Duration::from_millis(20);
const DRAIN_MAX: Duration = Duration::from_millis(200);

/// Drains the queue on a timer and writes what it holds in one buffered write; ends when the sink
/// is gone. It never blocks in `recv`: a receiver waiting in the channel would be woken by every
/// line (a futex call on the worker's side, and a write per line here), which measured as most of
/// the log's cost; sleeping instead makes a line a lock-free push for the worker, and the queue
/// (8192 lines per 20 ms, 400k lines a second) is still far above what one instance serves.
fn writer(rx: &Receiver<String>, out: Box<dyn std::io::Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    let mut pause = DRAIN_MIN;
    loop {
        std::thread::sleep(pause);
        let mut result = Ok(());
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    wrote = true;
                    if result.is_ok() {
                        result = out.write_all(line.as_bytes());
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        // quiet: look less often, up to DRAIN_MAX; busy: every DRAIN_MIN
        pause = if wrote { DRAIN_MIN } else { (pause * 2).min(DRAIN_MAX) };
        if !wrote {
            continue;
        }
        match result.and_then(|()| out.flush()) {
            Err(e) if !failed => {
                failed = true;
                tracing::warn!(error = %e, "access log write failed; lines are lost until it works again");
            }
            Err(_) => {}
            Ok(()) => failed = false,
        }
    }
}

impl Sink {
    /// Whether the next request is logged (one in `sample`); the rate limit is applied when its line
    /// is sent.
    #[must_use]
    pub fn sampled(&self) -> bool {
        self.sample <= 1 || self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.sample)
    }

    /// Formats `line` and offers it to the writer; dropped (and counted) over the rate or when the
    /// writer is behind.
    pub fn send(&self, line: &Line<'_>) {
        if !self.within_rate() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut text = String::with_capacity(256);
        format::write(line, self.format, &mut text);
        match self.tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn within_rate(&self) -> bool {
        let Some(rate) = self.rate else { return true };
        let second = crate::proxy::pin::now_secs();
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (window, lines) = (current >> 32, current & 0xffff_ffff);
            let next = if window == u64::from(second) {
                if lines >= u64::from(rate) {
                    return false;
                }
                current + 1
            } else {
                (u64::from(second) << 32) | 1
            };
            match self.window.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// How a policy's final decision reads in the log: the backend and the pick.
#[must_use]
pub fn pick_of(decision: Decision) -> (Option<usize>, Pick) {
    match decision {
        Decision::Keep(i) => (Some(i), Pick::Pinned),
        Decision::Pin { backend, repin: None } => (Some(backend), Pick::New),
        Decision::Pin { backend, repin: Some(r) } => (Some(backend), Pick::Repinned(r)),
        Decision::Reject(Reject::Strict(r)) => (None, Pick::Strict(r)),
        Decision::Reject(Reject::NoBackend) => (None, Pick::NoBackend),
    }
}

/// A request being logged: what must be copied before the exchange consumes its head.
#[derive(Debug)]
pub struct Pending {
    sink: &'static Sink,
    time: SystemTime,
    start: Instant,
    method: Vec<u8>,
    path: Vec<u8>,
}

/// What the exchange learnt by its end: the answer's status and the bytes each way.
#[derive(Clone, Copy, Debug, Default)]
pub struct Note {
    /// The status sent; `None`: none (the client left or stalled).
    pub status: Option<u16>,
    /// Bytes the client sent for the request.
    pub bytes_in: Option<u64>,
    /// Bytes sent to the client.
    pub bytes_out: Option<u64>,
}

impl Pending {
    /// Starts a line for a request with this method and path (cut to the logged lengths), if the log
    /// is on and samples this request.
    #[must_use]
    pub fn start(method: &[u8], path: &[u8]) -> Option<Self> {
        let sink = get().filter(|s| s.sampled())?;
        let cut = |v: &[u8], max: usize| v.get(..max.saturating_add(1)).unwrap_or(v).to_vec();
        Some(Self {
            sink,
            time: SystemTime::now(),
            start: Instant::now(),
            method: cut(method, format::MAX_METHOD),
            // one byte past the bound, so that the formatter sees the path was longer
            path: cut(path, format::MAX_PATH),
        })
    }

    /// Sends the line of a request of `service` answered as `note` after the policy's final
    /// `decision`.
    pub fn finish(
        self,
        service: &crate::state::ServiceRoute,
        client: &[u8],
        proto: &'static str,
        decision: Decision,
        note: Note,
    ) {
        let (index, pick) = pick_of(decision);
        let backend = index.and_then(|i| service.backends.get(i)).map(|b| &*b.id.0);
        self.send(&service.spec.name, backend, client, proto, pick, note);
    }

    /// Sends the line of a request sticky answered itself before any backend was chosen: `pick` is
    /// [`Pick::NoRoute`] (its `service` is `-`) or [`Pick::Redirect`].
    pub fn finish_local(self, service: &str, client: &[u8], proto: &'static str, pick: Pick, note: Note) {
        self.send(service, None, client, proto, pick, note);
    }

    fn send(self, service: &str, backend: Option<&str>, client: &[u8], proto: &'static str, pick: Pick, note: Note) {
        let client = std::str::from_utf8(client).unwrap_or("-");
        self.sink.send(&Line {
            time: self.time,
            client,
            proto,
            service,
            backend,
            pick,
            status: note.status,
            bytes_in: note.bytes_in,
            bytes_out: note.bytes_out,
            duration: self.start.elapsed(),
            method: &self.method,
            path: &self.path,
        });
    }
}

/// A tcp connection relayed in user space, for its line.
#[derive(Debug)]
pub struct TcpLine<'a> {
    /// The service's name.
    pub service: &'a str,
    /// The client (the PROXY protocol's, if its source sends one).
    pub client: std::net::IpAddr,
    /// The backend's address.
    pub backend: std::net::SocketAddr,
    /// Affinity or Maglev.
    pub pick: Pick,
    /// When it was accepted.
    pub opened: SystemTime,
}

/// Logs one tcp connection relayed in user space, when it closed: `bytes` are (client to backend,
/// backend to client); one connection in `sample` is logged. A no-op while the log is off.
pub fn tcp(l: &TcpLine<'_>, duration: Duration, bytes: (u64, u64)) {
    let Some(sink) = get().filter(|s| s.sampled()) else { return };
    let client = l.client.to_string();
    let backend = l.backend.to_string();
    sink.send(&Line {
        time: l.opened,
        client: &client,
        proto: "tcp",
        service: l.service,
        backend: Some(&backend),
        pick: l.pick,
        status: None,
        bytes_in: Some(bytes.0),
        bytes_out: Some(bytes.1),
        duration,
        method: b"",
        path: b"",
    });
}
