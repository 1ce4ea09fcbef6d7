//! Body progress, one type for every framing the engine relays: nothing, a Content-Length countdown,
//! a chunked body ([`ChunkedBody`]), or everything until the peer closes. The engine feeds it what it
//! read and forwards the `used` bytes; what follows is the next message.

use std::ops::Range;

use super::{
    chunked::{ChunkedBody, ChunkedError, Progress},
    request::RequestFraming,
    response::{ResponseFraming, ResponseHead, ResponseKind},
};

/// A body that cannot be relayed as framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The chunked framing is invalid.
    #[error(transparent)]
    Chunked(#[from] ChunkedError),
    /// The peer closed before the framing said the body ends.
    #[error("body ended before its framing said it would")]
    Truncated,
}

/// Where a body stands.
#[derive(Clone, Debug)]
pub enum Body {
    /// No body, or all of it seen.
    Done,
    /// `remaining` bytes of a Content-Length body to come.
    Length {
        /// Bytes still to come.
        remaining: u64,
    },
    /// A chunked body.
    Chunked(ChunkedBody),
    /// Everything until the peer closes (a response without length; the connection closes after).
    UntilClose,
}

impl Body {
    /// The body of a request framed as `framing`; `max_trailers` bounds a chunked body's trailer section.
    #[must_use]
    pub fn request(framing: RequestFraming, max_trailers: usize) -> Self {
        match framing {
            RequestFraming::None => Self::Done,
            RequestFraming::Length(n) => Self::length(n),
            RequestFraming::Chunked => Self::Chunked(ChunkedBody::new(max_trailers)),
        }
    }

    /// The body of a response (none for interim responses and tunnels).
    #[must_use]
    pub fn response(head: &ResponseHead, max_trailers: usize) -> Self {
        if head.kind() != ResponseKind::Final {
            return Self::Done;
        }
        match head.framing() {
            ResponseFraming::None => Self::Done,
            ResponseFraming::Length(n) => Self::length(n),
            ResponseFraming::Chunked => Self::Chunked(ChunkedBody::new(max_trailers)),
            ResponseFraming::UntilClose => Self::UntilClose,
        }
    }

    fn length(n: u64) -> Self {
        if n == 0 { Self::Done } else { Self::Length { remaining: n } }
    }

    /// Whether the whole body was seen.
    #[must_use]
    pub fn is_done(&self) -> bool {
        match self {
            Self::Done => true,
            Self::Chunked(c) => c.is_done(),
            Self::Length { .. } | Self::UntilClose => false,
        }
    }

    /// Takes the next bytes read: how many belong to the body, and whether it is complete.
    ///
    /// # Errors
    /// An invalid chunked framing.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        self.feed_data(input, |_| {})
    }

    /// [`Self::feed`], and `on_data` gets the ranges of `input` that are payload (all of what is used,
    /// except a chunked body's framing).
    ///
    /// # Errors
    /// An invalid chunked framing.
    pub fn feed_data(&mut self, input: &[u8], mut on_data: impl FnMut(Range<usize>)) -> Result<Progress, BodyError> {
        match self {
            Self::Done => Ok(Progress { used: 0, done: true }),
            Self::Length { remaining } => {
                let used = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                on_data(0..used);
                *remaining -= used as u64;
                let done = *remaining == 0;
                if done {
                    *self = Self::Done;
                }
                Ok(Progress { used, done })
            }
            Self::Chunked(c) => Ok(c.feed_data(input, on_data)?),
            Self::UntilClose => {
                on_data(0..input.len());
                Ok(Progress { used: input.len(), done: false })
            }
        }
    }

    /// The peer closed its side: fine if the body was complete or runs until close.
    ///
    /// # Errors
    /// [`BodyError::Truncated`] when the framing expected more.
    pub fn finish(&mut self) -> Result<(), BodyError> {
        if self.is_done() || matches!(self, Self::UntilClose) {
            *self = Self::Done;
            Ok(())
        } else {
            Err(BodyError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_counts_down_across_reads_and_stops_at_the_next_message() {
        let mut b = Body::request(RequestFraming::Length(7), 1024);
        assert_eq!(b.feed(b"abc").expect("a length body must not fail"), Progress { used: 3, done: false });
        let mut data = Vec::new();
        let p = b.feed_data(b"defgGET /", |r| data.push((r.start, r.end))).expect("a length body must not fail");
        assert_eq!((p, data), (Progress { used: 4, done: true }, vec![(0, 4)]));
        assert!(b.is_done());
        assert_eq!(b.feed(b"x").expect("a finished body must not fail"), Progress { used: 0, done: true });
    }

    #[test]
    fn eof_is_fine_only_when_the_framing_allows_it() {
        assert_eq!(Body::request(RequestFraming::None, 1024).finish(), Ok(()));
        assert_eq!(Body::request(RequestFraming::Length(0), 1024).finish(), Ok(()));
        assert_eq!(Body::request(RequestFraming::Length(2), 1024).finish(), Err(BodyError::Truncated));
        let mut chunked = Body::request(RequestFraming::Chunked, 1024);
        chunked.feed(b"1\r\na\r\n").expect("a valid chunk must be accepted");
        assert_eq!(chunked.finish(), Err(BodyError::Truncated));
        let mut close = Body::UntilClose;
        assert_eq!(
            close.feed(b"anything").expect("a body until close must take everything"),
            Progress { used: 8, done: false }
        );
        assert_eq!(close.finish(), Ok(()));
    }

    #[test]
    fn chunked_errors_pass_through() {
        let mut b = Body::request(RequestFraming::Chunked, 1024);
        assert_eq!(b.feed(b"z"), Err(BodyError::Chunked(ChunkedError::SizeNotHex { at: 0, byte: b'z' })));
    }
}
