//! The L7 kernel splice of proxied connections: a client socket and its upstream socket are joined in
//! the kernel (`sticky_splice` sends what arrives on one out of the other), and one watcher thread
//! forwards each FIN once the bytes before it are out, passes resets on, and closes the pair when
//! both directions are done. [`hand_off`] is the entry point; without eBPF it runs [`relay`], the
//! user-space copy loop that does the same job.
//!
//! # Life of a pair
//! - **join** (worker thread, [`Splicer::join`]): socket cookies and each socket's byte baseline,
//!   then the maps (`datapath::splice`), then a kick so bytes queued before the join are redirected
//!   too, then both sockets into the watcher's epoll set (FIN/RST/close only, never data).
//! - **FIN on one side** (watcher): the bytes that arrived before it must leave the other socket
//!   first. The kernel sends redirected bytes from a work queue, so the watcher compares what the
//!   verdict counted (`SPLICE_BYTES`) with what the other socket's TCP has taken
//!   ([`socket::written`]), and only then shuts the other socket's write side (`shutdown(SHUT_WR)`:
//!   the FIN goes out after the bytes). Not there yet: it looks again after 1 ms, doubling to 128 ms.
//! - **both directions shut**: the sockets are closed (the kernel drops them from the sockhashes)
//!   and their `SPLICE_BYTES` entries deleted. Usage goes back to zero.
//! - **error (RST) or a close nobody asked for**: both sockets are closed with `SO_LINGER` 0, so the
//!   peer of the healthy side gets a RST too, as from a user-space proxy.
//!
//! A spliced connection has no idle timeout of its own (user space no longer sees its bytes): it
//! lives until an end closes it, like a TCP proxy without a timeout. Backends close idle
//! keep-alive connections on their own (nginx after 75 s), which closes the pair.

use std::{
    io,
    net::TcpStream as StdTcpStream,
    os::fd::AsFd as _,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::{
    datapath::{
        Datapath, DatapathError,
        l4::{MapSizes, MapUsage},
        socket::{self, Bound, CloseWatch, Closing},
    },
    state::Shared,
};

/// Why a pair could not be spliced (its sockets are then relayed in user space).
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The eBPF side refused (map full, socket refused).
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// A socket call failed (the socket is already closed or not TCP).
    #[error("socket")]
    Socket(#[from] io::Error),
}

/// How a handed-off connection went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The kernel carries it; the watcher closes it when it ends.
    Spliced,
    /// Relayed in user space until it ended (no eBPF, or the splice was refused).
    Relayed,
}

/// Counters of the splice, for `/metrics`.
#[derive(Debug, Default)]
pub struct SpliceStats {
    joined: AtomicU64,
    finished: AtomicU64,
    aborted: AtomicU64,
    refused: AtomicU64,
}

impl SpliceStats {
    /// Pairs handed to the kernel.
    #[must_use]
    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }
    /// Pairs that ended with FIN both ways.
    #[must_use]
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }
    /// Pairs that ended with an error or reset (both sides reset).
    #[must_use]
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }
    /// Pairs the kernel refused (map full), relayed in user space instead.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// First and longest pause before looking again whether a FIN may be forwarded.
const RECHECK_FIRST: Duration = Duration::from_millis(1);
const RECHECK_MAX: Duration = Duration::from_millis(128);

/// One spliced connection. Index 0 is the client side, 1 the upstream side; bytes arriving on
/// socket `i` leave through socket `1 - i`.
#[derive(Debug)]
struct Pair {
    socks: [StdTcpStream; 2],
    cookies: [u64; 2],
    /// What each socket's TCP had taken at the join (an upper bound, see [`socket::written`]).
    base: [u64; 2],
    /// The socket's peer sent FIN: nothing more arrives on it.
    eof: [bool; 2],
    /// The socket's write side is shut (the other side's FIN was forwarded).
    shut: [bool; 2],
    /// Pause before the next look at a FIN that could not be forwarded yet.
    backoff: Duration,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    pair: Option<Pair>,
}

/// Where a pair stands after a look at its FINs.
enum Step {
    /// Nothing to do until the next FIN or error.
    Open,
    /// A FIN waits for its bytes to leave: look again later.
    Wait,
    /// Both directions are shut: close.
    Closed,
    /// A socket failed: reset both.
    Broken,
}

#[derive(Debug, Default)]
struct Pairs {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (when, token of the pair): FINs waiting for their bytes to leave.
    rechecks: Vec<(Instant, u64)>,
    live: u64,
}

impl Pairs {
    fn get_mut(&mut self, slot: usize, generation: u32) -> Option<&mut Pair> {
        let s = self.slots.get_mut(slot)?;
        if s.generation & 0x7fff_ffff == generation { s.pair.as_mut() } else { None }
    }
}

/// A pair's epoll token: slot index, generation (so a late event of a closed pair is ignored when
/// its slot is reused), side.
fn token(slot: u32, generation: u32, side: usize) -> u64 {
    (u64::from(slot) << 32) | (u64::from(generation & 0x7fff_ffff) << 1) | (side as u64 & 1)
}

fn untoken(token: u64) -> (usize, u32, usize) {
    ((token >> 32) as usize, ((token >> 1) & 0x7fff_ffff) as u32, (token & 1) as usize)
}

/// The kernel splice: the loaded eBPF maps and the watcher of every spliced pair.
#[derive(Debug)]
pub struct Splicer {
    datapath: Mutex<Datapath>,
    watch: CloseWatch,
    pairs: Mutex<Pairs>,
    stats: SpliceStats,
    max_pairs: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // every critical section leaves its data consistent at each step (no half-updated invariants)
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Splicer {
    /// Loads the eBPF object with room for `max_pairs` spliced connections, attaches the verdict,
    /// and starts the watcher thread (which lives as long as the process).
    ///
    /// # Errors
    /// eBPF cannot load or attach (not root, no BPF, old kernel), or the thread cannot start.
    pub fn start(max_pairs: u32, log_level: aya_log::Level) -> Result<Arc<Self>, SpliceError> {
        let mut datapath = Datapath::load_with(log_level, &MapSizes::http(max_pairs.max(1)))?;
        datapath.attach_splice()?;
        let splicer = Arc::new(Self {
            datapath: Mutex::new(datapath),
            watch: CloseWatch::new()?,
            pairs: Mutex::default(),
            stats: SpliceStats::default(),
            max_pairs,
        });
        let watcher = splicer.clone();
        std::thread::Builder::new().name("sticky-splice".into()).spawn(move || watcher.run())?;
        Ok(splicer)
    }

    /// Pairs spliced now.
    #[must_use]
    pub fn live(&self) -> u64 {
        lock(&self.pairs).live
    }

    /// The most pairs the maps hold (`--max-spliced`).
    #[must_use]
    pub fn max_pairs(&self) -> u32 {
        self.max_pairs
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> &SpliceStats {
        &self.stats
    }

    /// The kernel's splice counters, summed over CPUs: skbs redirected to their peer, and skbs left
    /// on their own socket because the peer was gone. Zero if the counters cannot be read.
    #[must_use]
    pub fn kernel_counters(&self) -> (u64, u64) {
        lock(&self.datapath).stats().map_or((0, 0), |s| {
            (s.get(sticky_common::Counter::SpliceRedirect), s.get(sticky_common::Counter::SpliceNoPeer))
        })
    }

    /// Entries used vs capacity of each splice map (walks the maps: a syscall per entry).
    #[must_use]
    pub fn usage(&self) -> [MapUsage; 3] {
        lock(&self.datapath).splice().usage()
    }

    /// Splices `client` and `upstream` (connected, non-blocking, no longer registered with tokio):
    /// from now on the kernel relays their bytes and the watcher closes them.
    ///
    /// # Errors
    /// The kernel refused (the maps are full, a socket is not established); both sockets come back,
    /// untouched, to be relayed in user space.
    pub fn join(&self, client: StdTcpStream, upstream: StdTcpStream) -> Result<(), (SpliceError, [StdTcpStream; 2])> {
        let socks = [client, upstream];
        let facts = (|| -> io::Result<([u64; 2], [u64; 2])> {
            let cookies = [socket::cookie(socks[0].as_fd())?, socket::cookie(socks[1].as_fd())?];
            let base =
                [socket::written(socks[0].as_fd(), Bound::Upper)?, socket::written(socks[1].as_fd(), Bound::Upper)?];
            Ok((cookies, base))
        })();
        let (cookies, base) = match facts {
            Ok(f) => f,
            Err(e) => return Err((e.into(), socks)),
        };
        // The watcher waits on this lock: it sees the pair only once everything below is done.
        let mut pairs = lock(&self.pairs);
        let (slot, generation) = match pairs.free.pop() {
            Some(i) => (i, pairs.slots[i as usize].generation),
            None => {
                pairs.slots.push(Slot::default());
                (u32::try_from(pairs.slots.len() - 1).unwrap_or(u32::MAX), 0)
            }
        };
        let release = |pairs: &mut Pairs| pairs.free.push(slot);
        // Watch first, join second: a FIN that arrives in between is reported once the lock is free.
        for (side, s) in socks.iter().enumerate() {
            if let Err(e) = self.watch.add(s.as_fd(), token(slot, generation, side)) {
                socks.iter().for_each(|s| self.watch.remove(s.as_fd()));
                release(&mut pairs);
                return Err((e.into(), socks));
            }
        }
        let joined = lock(&self.datapath).splice().join((cookies[0], socks[0].as_fd()), (cookies[1], socks[1].as_fd()));
        if let Err(e) = joined {
            socks.iter().for_each(|s| self.watch.remove(s.as_fd()));
            release(&mut pairs);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err((e.into(), socks));
        }
        // bytes that arrived before the join (the first response, a pipelined request) go now
        socks.iter().for_each(|s| socket::kick(s.as_fd()));
        pairs.slots[slot as usize].pair =
            Some(Pair { socks, cookies, base, eof: [false; 2], shut: [false; 2], backoff: RECHECK_FIRST });
        pairs.live += 1;
        self.stats.joined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The watcher: waits for FIN/RST/close of spliced sockets and for due re-checks, forever.
    fn run(&self) {
        let mut events = Vec::with_capacity(64);
        loop {
            let timeout = {
                let pairs = lock(&self.pairs);
                pairs.rechecks.iter().map(|(t, _)| *t).min().map(|t| t.saturating_duration_since(Instant::now()))
            };
            events.clear();
            if let Err(e) = self.watch.wait(timeout, &mut events) {
                tracing::error!(error = %e, "splice watcher: epoll_wait failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            let mut pairs = lock(&self.pairs);
            for event in &events {
                self.on_event(&mut pairs, *event);
            }
            let now = Instant::now();
            let due: Vec<u64> = {
                let (due, later): (Vec<_>, Vec<_>) = pairs.rechecks.drain(..).partition(|(t, _)| *t <= now);
                pairs.rechecks = later;
                due.into_iter().map(|(_, token)| token).collect()
            };
            for token in due {
                self.advance(&mut pairs, token);
            }
        }
    }

    fn on_event(&self, pairs: &mut Pairs, event: Closing) {
        let (slot, generation, side) = untoken(event.token);
        let Some(pair) = pairs.get_mut(slot, generation) else { return };
        if event.error || (event.hangup && !pair.shut[side]) {
            // a reset, or a close that was not the end of both directions
            self.end(pairs, slot, true);
            return;
        }
        if event.eof {
            pair.eof[side] = true;
        }
        self.advance(pairs, event.token);
    }

    /// Forwards every FIN whose bytes have left, schedules another look at the others, and ends the
    /// pair once both directions are shut.
    fn advance(&self, pairs: &mut Pairs, token: u64) {
        let (slot, generation, _) = untoken(token);
        let Some(pair) = pairs.get_mut(slot, generation) else { return };
        match self.step(pair) {
            Step::Open => {}
            Step::Wait => {
                let at = Instant::now() + pair.backoff;
                pair.backoff = (pair.backoff * 2).min(RECHECK_MAX);
                pairs.rechecks.push((at, token));
            }
            Step::Closed => self.end(pairs, slot, false),
            Step::Broken => self.end(pairs, slot, true),
        }
    }

    fn step(&self, pair: &mut Pair) -> Step {
        let mut waiting = false;
        for from in 0..2 {
            let to = 1 - from;
            if !pair.eof[from] || pair.shut[to] {
                continue;
            }
            match self.flushed(pair, from) {
                Ok(true) => {
                    if pair.socks[to].shutdown(std::net::Shutdown::Write).is_err() {
                        return Step::Broken;
                    }
                    pair.shut[to] = true;
                }
                Ok(false) => waiting = true,
                Err(e) => {
                    tracing::debug!(error = %e, "spliced connection: bytes cannot be accounted for; resetting it");
                    return Step::Broken;
                }
            }
        }
        if pair.shut == [true, true] {
            Step::Closed
        } else if waiting {
            Step::Wait
        } else {
            Step::Open
        }
    }

    /// Whether every byte that arrived on `pair.socks[from]` before its FIN has been taken by the
    /// other socket's TCP (so a FIN written now follows them).
    fn flushed(&self, pair: &Pair, from: usize) -> io::Result<bool> {
        let to = 1 - from;
        // Takes the socket lock: the receive that carried the FIN (and its verdict, which counts the
        // last bytes) has finished once this returns.
        let stuck = socket::queued_in(pair.socks[from].as_fd())?;
        if stuck > 0 {
            // bytes the verdict could not redirect (the peer left the maps: it is closing) never leave
            return Err(io::Error::other(format!("{stuck} bytes left on a spliced socket")));
        }
        let redirected = lock(&self.datapath)
            .splice()
            .redirected(pair.cookies[from])
            .ok_or_else(|| io::Error::other("no SPLICE_BYTES entry"))?;
        let taken = socket::written(pair.socks[to].as_fd(), Bound::Lower)?.saturating_sub(pair.base[to]);
        Ok(taken >= redirected)
    }

    /// Closes a pair (with RSTs if `abort`) and removes what is left of it from the maps.
    fn end(&self, pairs: &mut Pairs, slot: usize, abort: bool) {
        let Some(s) = pairs.slots.get_mut(slot) else { return };
        let Some(pair) = s.pair.take() else { return };
        s.generation = s.generation.wrapping_add(1);
        pairs.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
        pairs.live = pairs.live.saturating_sub(1);
        for s in &pair.socks {
            self.watch.remove(s.as_fd());
            if abort {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
        }
        // closing the sockets takes them out of both sockhashes; the byte counters go by hand
        drop(pair.socks);
        let mut datapath = lock(&self.datapath);
        for cookie in pair.cookies {
            datapath.splice().leave(cookie);
        }
        let counter = if abort { &self.stats.aborted } else { &self.stats.finished };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(abort, "spliced connection closed");
    }
}

/// Loads the kernel splice for http mode (unless `no_ebpf`) and publishes it in `shared`. If it
/// cannot load, logs one line that says what that means, and sticky serves everything in user space.
pub fn start(shared: &Shared, no_ebpf: bool, max_pairs: u32) {
    let reason = if no_ebpf {
        "--no-ebpf".to_owned()
    } else {
        match Splicer::start(max_pairs, crate::telemetry::kernel_log_level()) {
            Ok(splicer) => {
                tracing::info!(max_spliced = max_pairs, "kernel splice ready (upgraded and --splice connections)");
                let _ = shared.splice.set(splicer);
                return;
            }
            Err(e) => crate::telemetry::chain(&e),
        }
    };
    let table = shared.table();
    let pinned: Vec<&str> =
        table.services.iter().filter(|s| s.spec.splice.pinned).map(|s| s.spec.name.as_str()).collect();
    if pinned.is_empty() {
        tracing::info!(%reason, "kernel splice unavailable: upgraded connections are relayed in user space");
    } else {
        tracing::warn!(
            %reason, services = ?pinned,
            "kernel splice unavailable: upgraded connections are relayed in user space, and the splice option's connections stay on the proxy path"
        );
    }
}

/// Hands a client connection and its upstream connection over for good: `client_early` (bytes read
/// from the client that the upstream has not seen) and `upstream_early` are written first, then the
/// pair is spliced in the kernel if `splicer` is given and accepts it, else relayed here until it
/// ends.
///
/// # Errors
/// Writing the early bytes or the relay failed.
pub async fn hand_off(
    splicer: Option<&Arc<Splicer>>,
    mut client: TcpStream,
    client_early: Bytes,
    mut upstream: TcpStream,
    upstream_early: Bytes,
) -> io::Result<Handoff> {
    // Written before the join: the kernel's bytes then follow them on each socket.
    if !client_early.is_empty() {
        upstream.write_all(&client_early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
    }
    let Some(splicer) = splicer else {
        relay(client, upstream).await?;
        return Ok(Handoff::Relayed);
    };
    // into_std takes the sockets out of tokio's epoll: a spliced socket must not wake this thread
    let (client, upstream) = (client.into_std()?, upstream.into_std()?);
    match splicer.join(client, upstream) {
        Ok(()) => Ok(Handoff::Spliced),
        Err((e, [client, upstream])) => {
            tracing::debug!(error = %e, "splice refused; relaying in user space");
            relay(TcpStream::from_std(client)?, TcpStream::from_std(upstream)?).await?;
            Ok(Handoff::Relayed)
        }
    }
}

/// The user-space copy loop: bytes both ways until both directions are closed (a FIN is passed on as
/// a FIN).
///
/// # Errors
/// Either socket fails.
pub async fn relay(mut client: TcpStream, mut upstream: TcpStream) -> io::Result<()> {
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await.map(|_| ())
}
