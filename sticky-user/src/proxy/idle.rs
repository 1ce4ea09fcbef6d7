//! The worker's idle keep-alive client connections: one timer and one stop watch for all of them.
//!
//! An idle connection waits for its next request with nothing but its socket's readiness and a slot
//! here ([`Parked`], a number): no timer entry and no stop-signal waiter of its own, which were most of
//! an idle task's size (a `Sleep` and a `Notified` are over 200 bytes together, and a task is
//! allocated in steps of 128 bytes). One sweeper task per worker ([`run_sweeper`], started with the
//! first parked connection) wakes the connections whose idle deadline passed, and all of them once
//! `stop` turns true. A deadline is met within [`GRANULE`], and never early.
//!
//! Thread-local, without a lock: each worker is a current-thread runtime whose tasks never change
//! threads (see [`super::buffers`]); a worker serves one proxy, so one stop signal.

use std::{
    cell::RefCell,
    future::poll_fn,
    num::NonZeroU32,
    task::{Context, Poll, Waker},
    time::Duration,
};

use std::future::Future as _;

use tokio::{sync::watch, time::Instant};

/// How late the sweeper may close an idle connection: expired connections are looked for at most
/// this often.
pub const GRANULE: Duration = Duration::from_millis(50);

/// Why an idle wait ends other than with the client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The idle deadline passed.
    Expired,
    /// sticky is stopping.
    Stopping,
}

#[derive(Debug)]
struct Slot {
    deadline: Instant,
    waker: Option<Waker>,
    end: Option<End>,
}

/// The idle connections of one worker.
#[derive(Debug, Default)]
struct Set {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    parked: usize,
    stopping: bool,
    /// The sweeper runs on this worker.
    sweeping: bool,
    /// The sweeper's waker and when it next looks (`None`: when something is parked).
    sweeper: Option<(Waker, Option<Instant>)>,
}

impl Set {
    fn park(&mut self, deadline: Instant) -> u32 {
        let slot = Slot { deadline, waker: None, end: self.stopping.then_some(End::Stopping) };
        self.parked += 1;
        // the sweeper sleeps past this deadline (or until something is parked): it must look sooner
        if let Some((_, due)) = &self.sweeper
            && due.is_none_or(|d| deadline < d)
            && let Some((w, _)) = self.sweeper.take()
        {
            w.wake();
        }
        if let Some(i) = self.free.pop()
            && let Some(s) = self.slots.get_mut(i as usize)
        {
            *s = Some(slot);
            return i;
        }
        self.slots.push(Some(slot));
        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
    }

    fn leave(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize)
            && s.take().is_some()
        {
            self.parked -= 1;
            self.free.push(i);
        }
        // a burst of connections gone idle and back leaves no grown table behind
        if self.parked == 0 && self.slots.capacity() > 64 {
            self.slots = Vec::new();
            self.free = Vec::new();
        }
    }

    fn poll(&mut self, i: u32, cx: &mut Context<'_>) -> Poll<End> {
        let Some(Some(s)) = self.slots.get_mut(i as usize) else { return Poll::Ready(End::Stopping) };
        if let Some(end) = s.end {
            return Poll::Ready(end);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ends the waits whose deadline passed at `now` (all of them when stopping); the earliest
    /// deadline left, if any.
    fn sweep(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for s in self.slots.iter_mut().flatten().filter(|s| s.end.is_none()) {
            if self.stopping || s.deadline <= now {
                s.end = Some(if self.stopping { End::Stopping } else { End::Expired });
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            } else {
                next = Some(next.map_or(s.deadline, |n| n.min(s.deadline)));
            }
        }
        next
    }
}

thread_local! {
    static IDLE: RefCell<Set> = RefCell::new(Set::default());
}

fn with<R>(f: impl FnOnce(&mut Set) -> R) -> Option<R> {
    IDLE.try_with(|s| f(&mut s.borrow_mut())).ok()
}

/// An idle connection's slot in its worker's set, left when dropped.
#[derive(Debug)]
pub struct Parked(NonZeroU32);

impl Parked {
    /// Parks a connection until `deadline`; starts the worker's sweeper (watching `stop`) if it is
    /// not running yet.
    #[must_use]
    pub fn new(deadline: Instant, stop: &watch::Receiver<bool>) -> Self {
        let (slot, start) = with(|s| {
            let start = !std::mem::replace(&mut s.sweeping, true);
            (s.park(deadline), start)
        })
        .unwrap_or((u32::MAX - 1, false));
        if start {
            tokio::spawn(run_sweeper(stop.clone()));
        }
        // kept as index + 1: an `Option<Parked>` in the idle connection's state then costs 4 bytes
        Self(NonZeroU32::new(slot.saturating_add(1)).unwrap_or(NonZeroU32::MAX))
    }

    fn index(&self) -> u32 {
        self.0.get() - 1
    }

    /// The deadline it was parked with (kept in the slot, not in the waiting task).
    #[must_use]
    pub fn deadline(&self) -> Instant {
        with(|s| s.slots.get(self.index() as usize).and_then(|s| s.as_ref().map(|s| s.deadline)))
            .flatten()
            .unwrap_or_else(Instant::now)
    }

    /// Ready once the wait is over for another reason than the client's bytes; else the task is
    /// woken when it is.
    pub fn poll_end(&self, cx: &mut Context<'_>) -> Poll<End> {
        with(|s| s.poll(self.index(), cx)).unwrap_or(Poll::Ready(End::Stopping))
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = with(|s| s.leave(self.index()));
    }
}

/// Marks the worker's sweeper stopped when its task ends (a runtime dropped with it, in tests), so
/// that the next parked connection starts another.
struct Sweeping;

impl Drop for Sweeping {
    fn drop(&mut self) {
        let _ = with(|s| {
            s.sweeping = false;
            s.stopping = false;
            s.sweeper = None;
        });
    }
}

/// The worker's sweeper: wakes parked connections whose deadline passed, at most every
/// [`GRANULE`], and all of them once `stop` turns true (or its sender is gone); connections parked
/// after that end at once.
async fn run_sweeper(mut stop: watch::Receiver<bool>) {
    let _sweeping = Sweeping;
    // one timer for the worker, re-armed to the earliest deadline at each look
    let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
    let tick = poll_fn(|cx| {
        loop {
            let now = Instant::now();
            let Some(due) = with(|s| {
                let due = s.sweep(now).map(|d| d.max(now + GRANULE));
                s.sweeper = Some((cx.waker().clone(), due));
                due
            }) else {
                return Poll::Ready(());
            };
            // nothing parked: a park wakes this task
            let Some(due) = due else { return Poll::Pending };
            timer.as_mut().reset(due);
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    });
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => {}
        () = tick => return,
    }
    let _ = with(|s| {
        s.stopping = true;
        s.sweep(Instant::now());
        s.sweeper = None;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waker_count() -> (Waker, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::{Arc, atomic::AtomicUsize};
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let n = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(n.clone()))), n)
    }

    #[test]
    fn expired_waits_are_woken_and_slots_reused() {
        let mut set = Set::default();
        let t0 = Instant::now();
        let first = set.park(t0 + Duration::from_secs(1));
        let second = set.park(t0 + Duration::from_secs(2));
        let (waker, woken) = waker_count();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(set.poll(first, &mut cx), Poll::Pending);
        assert_eq!(set.poll(second, &mut cx), Poll::Pending);
        assert_eq!(set.sweep(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(woken.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(set.sweep(t0 + Duration::from_secs(1)), Some(t0 + Duration::from_secs(2)));
        assert_eq!(woken.load(std::sync::atomic::Ordering::Relaxed), 1, "the expired one is woken");
        assert_eq!(set.poll(first, &mut cx), Poll::Ready(End::Expired));
        assert_eq!(set.poll(second, &mut cx), Poll::Pending);
        set.leave(first);
        let third = set.park(t0 + Duration::from_secs(3));
        assert_eq!(third, first, "a left slot is taken again");
        set.stopping = true;
        assert_eq!(set.sweep(t0), None);
        assert_eq!(set.poll(second, &mut cx), Poll::Ready(End::Stopping));
        assert_eq!(set.poll(third, &mut cx), Poll::Ready(End::Stopping));
        let late = set.park(t0 + Duration::from_secs(9));
        assert_eq!(set.poll(late, &mut cx), Poll::Ready(End::Stopping), "parked after the stop: ended at once");
        for i in [second, third, late] {
            set.leave(i);
        }
        assert_eq!(set.parked, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_ends_waits_at_their_deadline_and_on_stop() {
        let (tx, rx) = watch::channel(false);
        let start = Instant::now();
        let parked = Parked::new(start + Duration::from_secs(5), &rx);
        let end = poll_fn(|cx| parked.poll_end(cx)).await;
        assert_eq!(end, End::Expired);
        let late = Instant::now() - start;
        assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(5) + GRANULE, "{late:?}");
        drop(parked);
        let parked = Parked::new(Instant::now() + Duration::from_secs(60), &rx);
        tx.send_replace(true);
        assert_eq!(poll_fn(|cx| parked.poll_end(cx)).await, End::Stopping);
    }
}
