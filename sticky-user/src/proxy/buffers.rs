//! The worker's pool of what a request needs only while it is under way: I/O buffers and the parsed
//! heads. A keep-alive client connection between requests holds none of it (issue 12: nothing held
//! while idle); the next request takes them back from the pool.
//!
//! Thread-local, without a lock: each worker is a current-thread runtime whose tasks never change
//! threads, so a pool is only ever touched by its own worker.

use std::{
    cell::RefCell,
    ops::{Deref, DerefMut},
};

use bytes::BytesMut;

use super::h1::{RequestHead, ResponseHead};

/// Size of a pooled buffer: a typical head and a good slice of body per read.
pub const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept per worker; more are freed when given back.
const POOL_BUFFERS: usize = 512;
/// A buffer that grew past this (a large head) is freed rather than kept.
const KEEP_MAX: usize = 64 * 1024;
/// Request scratch sets kept per worker.
const POOL_SCRATCH: usize = 256;

thread_local! {
    static BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    #[expect(clippy::vec_box, reason = "a lease moves a pointer in and out, not the two heads")]
    static SCRATCH: RefCell<Vec<Box<Scratch>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer on loan from the worker's pool, given back when dropped.
#[derive(Debug)]
pub struct Buf(BytesMut);

impl Buf {
    /// A cleared buffer of at least [`BUF_SIZE`] bytes of room.
    #[must_use]
    pub fn take() -> Self {
        let reused = BUFFERS.try_with(|b| b.borrow_mut().pop()).ok().flatten();
        Self(reused.unwrap_or_else(|| BytesMut::with_capacity(BUF_SIZE)))
    }

    /// Room to read at least `BUF_SIZE / 4` more bytes (reclaiming what was consumed first).
    pub fn room(&mut self) {
        if self.0.capacity() - self.0.len() < BUF_SIZE / 4 {
            self.0.reserve(BUF_SIZE);
        }
    }
}

impl Deref for Buf {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        b.clear();
        // an empty unique buffer reclaims its whole allocation here
        b.reserve(BUF_SIZE);
        if b.capacity() > KEEP_MAX {
            return;
        }
        let _ = BUFFERS.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_BUFFERS {
                p.push(b);
            }
        });
    }
}

/// What one request uses besides the client's read buffer: the parsed heads (their field lists
/// allocate only while they grow), the backend's read buffer and the output buffer.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The client's request head.
    pub req: RequestHead,
    /// The backend's response head.
    pub resp: ResponseHead,
}

/// A scratch set on loan from the worker's pool, given back when dropped.
#[derive(Debug)]
pub struct ScratchLease(Option<Box<Scratch>>);

impl ScratchLease {
    /// A scratch set from the pool, or a new one.
    #[must_use]
    pub fn take() -> Self {
        let reused = SCRATCH.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Self(Some(reused.unwrap_or_default()))
    }
}

impl Deref for ScratchLease {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        // always Some until dropped
        self.0.as_deref().unwrap_or_else(|| unreachable!("a lease holds its scratch until dropped"))
    }
}

impl DerefMut for ScratchLease {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.0.as_deref_mut().unwrap_or_else(|| unreachable!("a lease holds its scratch until dropped"))
    }
}

impl Drop for ScratchLease {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = SCRATCH.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_SCRATCH {
                    p.push(s);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_cleared_and_large_ones_are_freed() {
        {
            let mut b = Buf::take();
            b.extend_from_slice(b"abc");
        }
        let b = Buf::take();
        assert!(b.is_empty() && b.capacity() >= BUF_SIZE, "a pooled buffer comes back empty, full size");
        drop(b);
        let pooled = BUFFERS.with(|p| p.borrow().len());
        {
            let mut big = Buf::take();
            big.reserve(KEEP_MAX * 2);
            big.extend_from_slice(&vec![0u8; KEEP_MAX + 1]);
        }
        assert!(BUFFERS.with(|p| p.borrow().len()) < pooled, "a buffer grown past KEEP_MAX is not kept");
    }

    #[test]
    fn scratch_sets_are_reused() {
        let first = ScratchLease::take();
        let addr = std::ptr::from_ref::<Scratch>(&first);
        drop(first);
        let again = ScratchLease::take();
        assert_eq!(std::ptr::from_ref::<Scratch>(&again), addr, "the same set comes back");
    }
}
