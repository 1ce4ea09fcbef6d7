//! The watcher thread of the kernel splice: one epoll set over every spliced socket (FIN, RST and
//! close only), which forwards each FIN once the bytes before it have left, resets both sides of a
//! broken pair, and closes a pair once both directions are shut.

use std::{
    io,
    net::TcpStream as StdTcpStream,
    os::fd::AsFd as _,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::Splicer;
use crate::{
    datapath::socket::{self, Bound, Closing},
    lock::lock,
};

/// First and longest pause before looking again whether a FIN may be forwarded.
const RECHECK_FIRST: Duration = Duration::from_millis(1);
const RECHECK_MAX: Duration = Duration::from_millis(128);

/// One spliced connection. Index 0 is the client side, 1 the upstream side; bytes arriving on
/// socket `i` leave through socket `1 - i`.
#[derive(Debug)]
pub(super) struct Pair {
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

/// Every spliced pair, in slots reused through a free list.
#[derive(Debug, Default)]
pub(super) struct Pairs {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (when, token of the pair): FINs waiting for their bytes to leave.
    rechecks: Vec<(Instant, u64)>,
    live: u64,
}

impl Pair {
    /// A pair just joined: sockets, their cookies, and what each socket's TCP had taken then.
    pub(super) fn new(socks: [StdTcpStream; 2], cookies: [u64; 2], base: [u64; 2]) -> Self {
        Self { socks, cookies, base, eof: [false; 2], shut: [false; 2], backoff: RECHECK_FIRST }
    }
}

/// A reserved slot of [`Pairs`].
#[derive(Clone, Copy, Debug)]
pub(super) struct SlotId {
    slot: u32,
    generation: u32,
}

impl SlotId {
    /// The epoll token of side `side` (0 client, 1 upstream) of the pair in this slot.
    pub(super) fn token(self, side: usize) -> u64 {
        token(self.slot, self.generation, side)
    }
}

impl Pairs {
    /// Pairs spliced now.
    pub(super) fn live(&self) -> u64 {
        self.live
    }

    /// A free slot for a pair about to join.
    pub(super) fn reserve(&mut self) -> SlotId {
        if let Some(slot) = self.free.pop() {
            let generation = self.slots.get(slot as usize).map_or(0, |s| s.generation);
            return SlotId { slot, generation };
        }
        self.slots.push(Slot::default());
        SlotId { slot: u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX), generation: 0 }
    }

    /// Gives a reserved slot back unused.
    pub(super) fn release(&mut self, id: SlotId) {
        self.free.push(id.slot);
    }

    /// Puts a joined pair into its reserved slot.
    pub(super) fn insert(&mut self, id: SlotId, pair: Pair) {
        if let Some(s) = self.slots.get_mut(id.slot as usize) {
            s.pair = Some(pair);
            self.live += 1;
        }
    }

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

impl Splicer {
    /// The watcher: waits for FIN/RST/close of spliced sockets and for due re-checks, forever.
    pub(super) fn run(&self) {
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
