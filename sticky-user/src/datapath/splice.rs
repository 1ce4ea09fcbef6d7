//! Typed splice maps: join two sockets in the order that never lets the verdict see a socket without
//! its peer, read the bytes the kernel redirected, leave, count entries.
//!
//! Keys are socket cookies ([`super::socket::cookie`], the value `bpf_get_socket_cookie` returns in the kernel):
//! unique for the life of the system, the same in both worlds, and independent of the address family.

use std::os::fd::{AsFd as _, BorrowedFd};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, SockHash},
};
use sticky_common::maps;

use super::{DatapathError, sizes::MapUsage, take_map};

/// `BPF_NOEXIST`: cookies are unique, so an existing key means a bug; fail instead of replacing.
const NOEXIST: u64 = 1;

/// The three splice maps, typed.
pub struct SpliceMaps {
    peers: SockHash<MapData, u64>,
    socks: SockHash<MapData, u64>,
    bytes: HashMap<MapData, u64, u64>,
    max: u32,
}

fn map_err(name: &'static str, action: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, action, source: Box::new(source) }
}

impl SpliceMaps {
    pub(super) fn take(ebpf: &mut Ebpf, max: u32) -> Result<Self, DatapathError> {
        let open = |ebpf: &mut Ebpf, name| take_map(ebpf, name);
        Ok(Self {
            peers: SockHash::try_from(open(ebpf, maps::SPLICE_PEERS)?).map_err(map_err(maps::SPLICE_PEERS, "open"))?,
            socks: SockHash::try_from(open(ebpf, maps::SPLICE_SOCKS)?).map_err(map_err(maps::SPLICE_SOCKS, "open"))?,
            bytes: HashMap::try_from(open(ebpf, maps::SPLICE_BYTES)?).map_err(map_err(maps::SPLICE_BYTES, "open"))?,
            max,
        })
    }

    /// The map `sticky_splice` attaches to.
    pub(super) fn socks(&self) -> &SockHash<MapData, u64> {
        &self.socks
    }

    /// Joins two connected TCP sockets: from now on the kernel sends what arrives on one out of the other.
    ///
    /// Order matters: the byte counters first, then each socket as the other's peer (`SPLICE_PEERS`,
    /// no program there), and only then the sockets into `SPLICE_SOCKS`, which attaches the verdict.
    /// So the verdict never runs on a socket whose peer is unknown (it would have to leave those
    /// bytes on the socket, where nobody reads them any more). Bytes that were already queued on a
    /// socket before the join are not seen until the verdict is triggered: see
    /// [`crate::splice`], which does that right after.
    ///
    /// # Errors
    /// A map is full (`--max-spliced`) or the kernel refuses a socket (not TCP, not established).
    /// Everything inserted so far is removed again, so the sockets are as before and can be relayed
    /// in user space.
    pub fn join(&mut self, a: (u64, BorrowedFd<'_>), b: (u64, BorrowedFd<'_>)) -> Result<(), DatapathError> {
        let result = self.try_join(a, b);
        if result.is_err() {
            self.leave(a.0);
            self.leave(b.0);
        }
        result
    }

    fn try_join(&mut self, a: (u64, BorrowedFd<'_>), b: (u64, BorrowedFd<'_>)) -> Result<(), DatapathError> {
        let full = |name| {
            move |e: MapError| match &e {
                MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG) => {
                    DatapathError::Full { what: name, max: 0 }
                }
                _ => map_err(name, "update")(e),
            }
        };
        let max = self.max;
        let fix = move |e: DatapathError| match e {
            DatapathError::Full { what, .. } => DatapathError::Full { what, max },
            e => e,
        };
        for cookie in [a.0, b.0] {
            self.bytes.insert(cookie, 0, NOEXIST).map_err(full(maps::SPLICE_BYTES)).map_err(fix)?;
        }
        self.peers.insert(a.0, b.1.as_fd(), NOEXIST).map_err(full(maps::SPLICE_PEERS)).map_err(fix)?;
        self.peers.insert(b.0, a.1.as_fd(), NOEXIST).map_err(full(maps::SPLICE_PEERS)).map_err(fix)?;
        self.socks.insert(a.0, a.1.as_fd(), NOEXIST).map_err(full(maps::SPLICE_SOCKS)).map_err(fix)?;
        self.socks.insert(b.0, b.1.as_fd(), NOEXIST).map_err(full(maps::SPLICE_SOCKS)).map_err(fix)?;
        Ok(())
    }

    /// Bytes the kernel redirected from the socket with this cookie to its peer since the join.
    #[must_use]
    pub fn redirected(&self, cookie: u64) -> Option<u64> {
        self.bytes.get(&cookie, 0).ok()
    }

    /// Removes a socket's entries (absent ones are fine). A socket leaves both sockhashes by itself
    /// when it closes; this also covers a pair given back to user space while its sockets stay open.
    pub fn leave(&mut self, cookie: u64) {
        for (name, result) in [
            (maps::SPLICE_SOCKS, self.socks.remove(&cookie)),
            (maps::SPLICE_PEERS, self.peers.remove(&cookie)),
            (maps::SPLICE_BYTES, self.bytes.remove(&cookie)),
        ] {
            match result {
                Ok(()) | Err(MapError::KeyNotFound | MapError::ElementNotFound) => {}
                Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => tracing::warn!(map = name, cookie, error = %e, "failed to remove a splice map entry"),
            }
        }
    }

    /// Entries used vs capacity of each splice map (a walk over the keys: a syscall per entry).
    #[must_use]
    pub fn usage(&self) -> [MapUsage; 3] {
        let max = u64::from(self.max);
        [
            MapUsage { name: maps::SPLICE_PEERS, used: self.peers.keys().flatten().count() as u64, max },
            MapUsage { name: maps::SPLICE_SOCKS, used: self.socks.keys().flatten().count() as u64, max },
            MapUsage { name: maps::SPLICE_BYTES, used: self.bytes.keys().flatten().count() as u64, max },
        ]
    }
}
