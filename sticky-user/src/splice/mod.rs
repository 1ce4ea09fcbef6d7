//! The L7 kernel splice of proxied connections: a client socket and its upstream socket are joined in
//! the kernel (`sticky_splice` sends what arrives on one out of the other), and one watcher thread
//! forwards each FIN once the bytes before it are out, passes resets on, and closes the pair when
//! both directions are done. [`hand_off`] is the entry point; without eBPF it runs [`relay`], the
//! user-space copy loop that does the same job. The proxy hands connections over; nothing here
//! knows HTTP.
//!
//! # Life of a pair
//! - **join** (worker thread, [`Splicer::join`]): socket cookies and each socket's byte baseline,
//!   then the maps (`datapath::splice`), then a kick so bytes queued before the join are redirected
//!   too, then both sockets into the watcher's epoll set (FIN/RST/close only, never data).
//! - **FIN on one side** ([`watcher`]): the bytes that arrived before it must leave the other socket
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

mod handoff;
mod watcher;

use std::{
    io,
    net::TcpStream as StdTcpStream,
    os::fd::AsFd as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

pub use self::handoff::{Handoff, hand_off, relay, relay_tls};
use self::watcher::{Pair, Pairs};
use crate::{
    datapath::{
        Datapath, DatapathError,
        sizes::{MapSizes, MapUsage},
        socket::{self, Bound, CloseWatch},
    },
    lock::lock,
};

/// Why the splice did not start, or a pair could not be spliced (its sockets are then relayed in
/// user space).
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The eBPF side refused (cannot load, map full, socket refused).
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// A socket call on a pair failed (the socket is already closed or not TCP).
    #[error("a socket of the pair cannot be spliced")]
    Socket(#[source] io::Error),
    /// The epoll set or the watcher thread could not be made.
    #[error("failed to start the splice watcher")]
    Watcher(#[source] io::Error),
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

/// What `/metrics` shows of the splice, read at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpliceSnapshot {
    /// Pairs handed to the kernel.
    pub joined: u64,
    /// Pairs that ended with FIN both ways.
    pub finished: u64,
    /// Pairs that ended with an error or reset.
    pub aborted: u64,
    /// Pairs the kernel refused (maps full), relayed in user space instead.
    pub refused: u64,
    /// Pairs spliced now.
    pub live: u64,
    /// Socket buffers the verdict redirected to their peer.
    pub redirected_skbs: u64,
    /// Socket buffers left on their socket because the peer was gone.
    pub no_peer_skbs: u64,
    /// Entries used vs capacity of each splice map.
    pub maps: [MapUsage; 3],
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
            watch: CloseWatch::new().map_err(SpliceError::Watcher)?,
            pairs: Mutex::default(),
            stats: SpliceStats::default(),
            max_pairs,
        });
        let watcher = splicer.clone();
        std::thread::Builder::new()
            .name("sticky-splice".into())
            .spawn(move || watcher.run())
            .map_err(SpliceError::Watcher)?;
        Ok(splicer)
    }

    /// Pairs spliced now.
    #[must_use]
    pub fn live(&self) -> u64 {
        lock(&self.pairs).live()
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

    /// Counters, pairs and map usage for `/metrics` (walks the maps: a syscall per entry).
    #[must_use]
    pub fn snapshot(&self) -> SpliceSnapshot {
        let (redirected_skbs, no_peer_skbs) = self.kernel_counters();
        SpliceSnapshot {
            joined: self.stats.joined(),
            finished: self.stats.finished(),
            aborted: self.stats.aborted(),
            refused: self.stats.refused(),
            live: self.live(),
            redirected_skbs,
            no_peer_skbs,
            maps: self.usage(),
        }
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
            Err(e) => return Err((SpliceError::Socket(e), socks)),
        };
        // The watcher waits on this lock: it sees the pair only once everything below is done.
        let mut pairs = lock(&self.pairs);
        let slot = pairs.reserve();
        // Watch first, join second: a FIN that arrives in between is reported once the lock is free.
        for (side, s) in socks.iter().enumerate() {
            if let Err(e) = self.watch.add(s.as_fd(), slot.token(side)) {
                self.unwatch(&socks);
                pairs.release(slot);
                return Err((SpliceError::Socket(e), socks));
            }
        }
        let joined = lock(&self.datapath).splice().join((cookies[0], socks[0].as_fd()), (cookies[1], socks[1].as_fd()));
        if let Err(e) = joined {
            self.unwatch(&socks);
            pairs.release(slot);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err((e.into(), socks));
        }
        // bytes that arrived before the join (the first response, a pipelined request) go now
        for s in &socks {
            socket::kick(s.as_fd());
        }
        pairs.insert(slot, Pair::new(socks, cookies, base));
        self.stats.joined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn unwatch(&self, socks: &[StdTcpStream; 2]) {
        for s in socks {
            self.watch.remove(s.as_fd());
        }
    }
}

/// Loads the kernel splice for the http proxy, unless `no_ebpf`. If it cannot load, logs one line
/// that says what that means (naming the `pinned` services, whose `splice` option then does
/// nothing), and sticky serves everything in user space.
#[must_use]
pub fn load(no_ebpf: bool, max_pairs: u32, pinned: &[&str]) -> Option<Arc<Splicer>> {
    let reason = if no_ebpf {
        "--no-ebpf".to_owned()
    } else {
        match Splicer::start(max_pairs, crate::telemetry::kernel_log_level()) {
            Ok(splicer) => {
                tracing::info!(max_spliced = max_pairs, "kernel splice ready (upgraded and --splice connections)");
                return Some(splicer);
            }
            Err(e) => crate::telemetry::chain(&e),
        }
    };
    if pinned.is_empty() {
        tracing::info!(%reason, "kernel splice unavailable: upgraded connections are relayed in user space");
    } else {
        tracing::warn!(
            %reason, services = ?pinned,
            "kernel splice unavailable: upgraded connections are relayed in user space, and the splice option's connections stay on the proxy path"
        );
    }
    None
}
