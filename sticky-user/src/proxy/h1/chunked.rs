//! A streaming validator of chunked bodies (RFC 9112 §7.1), relayed as they are: fed the bytes as they
//! arrive, in any split, it says how many belong to the body, when the body (last chunk, trailer
//! section, final CRLF) is complete, or that the framing is invalid. Constant memory: one state, the
//! chunk size left, a few counters; chunk data is skipped a run at a time.
//!
//! Strict where parsers disagree, since a disagreement between sticky and a backend about where a body
//! ends is request smuggling: the size is hex digits only (no `0x`, sign or whitespace before it), a
//! size line is at most [`MAX_LINE`] bytes, chunk extensions must follow the grammar (httparse accepts
//! any byte in them, a bare LF included, and so does Pingora through it; kawa refuses extensions
//! altogether), every line ends in CRLF, and the trailer section is bounded, has well-formed fields and
//! names no framing or routing field (a backend that merged them into its headers could be steered).

use std::ops::Range;

use super::syntax;

/// Longest chunk-size line, extensions included, CR included. Extensions carry nothing any known
/// client or server uses; a size line longer than this is refused rather than streamed.
pub const MAX_LINE: u32 = 1024;

/// Why a chunked body is refused. `at` counts bytes from the start of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A byte that is not a hex digit where the chunk size is (an empty size, `0x`, `-`, a space).
    #[error("chunk size at byte {at} has {byte:#04x}, not a hex digit")]
    SizeNotHex {
        /// Offset of the byte.
        at: u64,
        /// The byte.
        byte: u8,
    },
    /// A chunk size above `u64::MAX`.
    #[error("chunk size at byte {at} does not fit in 64 bits")]
    SizeOverflow {
        /// Offset of the digit that overflowed.
        at: u64,
    },
    /// A size line longer than [`MAX_LINE`].
    #[error("chunk size line at byte {at} is longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// Offset of the first byte past the limit.
        at: u64,
    },
    /// A chunk extension that does not follow `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
    #[error("chunk extension at byte {at} is malformed ({byte:#04x})")]
    Extension {
        /// Offset of the byte.
        at: u64,
        /// The byte.
        byte: u8,
    },
    /// LF without the CR before it.
    #[error("chunked body has a bare LF at byte {at}")]
    BareLf {
        /// Offset of the LF.
        at: u64,
    },
    /// CR not followed by LF.
    #[error("chunked body has a CR not followed by LF at byte {at}")]
    BareCr {
        /// Offset of the byte after the CR.
        at: u64,
    },
    /// Chunk data not followed by CRLF (the size said less than was sent).
    #[error("chunk data does not end with CRLF at byte {at}")]
    MissingCrlf {
        /// Offset where the CR should be.
        at: u64,
    },
    /// A trailer field line that is not `token ":" value` (whitespace before the colon, obs-fold, a
    /// control byte, ...).
    #[error("trailer field at byte {at} is malformed ({byte:#04x})")]
    Trailer {
        /// Offset of the byte.
        at: u64,
        /// The byte.
        byte: u8,
    },
    /// A trailer field named `Content-Length`, `Transfer-Encoding` or `Host`.
    #[error("trailer field at byte {at} names a framing or routing field")]
    ForbiddenTrailer {
        /// Offset of the colon after the name.
        at: u64,
    },
    /// The trailer section is longer than allowed.
    #[error("trailer section is larger than {max} bytes")]
    TrailerTooLarge {
        /// The limit, bytes.
        max: u32,
    },
}

/// What one feed did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// How many of the bytes fed belong to the body (all of them unless it ended among them).
    pub used: usize,
    /// Whether the body is complete: what follows `used` is the next message.
    pub done: bool,
}

/// Where in the grammar the next byte falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// First byte of a chunk-size line.
    SizeStart,
    /// In the hex digits.
    Size,
    /// Whitespace after the digits: only a `;` may follow.
    SizeWs,
    /// After `;`, before the extension name.
    ExtNameWs,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name: `=` or `;` may follow.
    ExtNameEndWs,
    /// After `=`, before the value.
    ExtValueWs,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// Right after a closing quote.
    ExtValueEnd,
    /// Whitespace after a value: only a `;` may follow.
    ExtValueEndWs,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data (`left` bytes left).
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data's CR.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
    /// The body is complete.
    Done,
    /// The body was refused (every later feed returns the same error).
    Failed(ChunkedError),
}

impl State {
    fn in_size_line(self) -> bool {
        matches!(
            self,
            Self::SizeStart
                | Self::Size
                | Self::SizeWs
                | Self::ExtNameWs
                | Self::ExtName
                | Self::ExtNameEndWs
                | Self::ExtValueWs
                | Self::ExtToken
                | Self::ExtQuoted
                | Self::ExtQuotedPair
                | Self::ExtValueEnd
                | Self::ExtValueEndWs
        )
    }

    fn in_trailers(self) -> bool {
        matches!(self, Self::TrailerStart | Self::TrailerName | Self::TrailerValue | Self::TrailerLf | Self::EndLf)
    }
}

/// Longest forbidden trailer name (`transfer-encoding`); longer names are not kept.
const NAME_KEPT: u8 = 17;

/// The validator of one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedBody {
    state: State,
    /// The size being read, then the data bytes left in the chunk.
    left: u64,
    /// Bytes of the current size line.
    line: u32,
    /// Bytes of the trailer section.
    trailers: u32,
    max_trailers: u32,
    /// Bytes fed so far (error offsets).
    at: u64,
    /// The current trailer name's first bytes, to refuse framing fields; `name_len` > [`NAME_KEPT`]
    /// means longer.
    name: [u8; NAME_KEPT as usize],
    name_len: u8,
}

// constant memory is the point: the state must stay a few words whatever the body
const _: () = assert!(size_of::<ChunkedBody>() <= 80);

impl ChunkedBody {
    /// A validator for a body whose trailer section may be `max_trailers` bytes (final CRLF included;
    /// the engine passes its head limit, as trailers are a head's fields).
    #[must_use]
    pub fn new(max_trailers: usize) -> Self {
        Self {
            state: State::SizeStart,
            left: 0,
            line: 0,
            trailers: 0,
            max_trailers: u32::try_from(max_trailers).unwrap_or(u32::MAX),
            at: 0,
            name: [0; NAME_KEPT as usize],
            name_len: 0,
        }
    }

    /// Whether the body is complete.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Validates the next bytes of the body.
    ///
    /// # Errors
    /// The framing is invalid; the same error is returned for every later call.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, ChunkedError> {
        self.feed_data(input, |_| {})
    }

    /// [`Self::feed`], and `on_data` gets the ranges of `input` that are chunk data, in order (what a
    /// relay to an HTTP/1.0 client writes, without the framing).
    ///
    /// # Errors
    /// The framing is invalid; the same error is returned for every later call.
    pub fn feed_data(&mut self, input: &[u8], mut on_data: impl FnMut(Range<usize>)) -> Result<Progress, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data => {
                    // a whole run of data at once: the hot path costs one comparison per read, not per byte
                    let run = usize::try_from(self.left).unwrap_or(usize::MAX).min(input.len() - i);
                    on_data(i..i + run);
                    i += run;
                    self.at += run as u64;
                    self.left -= run as u64;
                    if self.left == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    if let Err(e) = self.step(input[i]) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    i += 1;
                    self.at += 1;
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            s => Ok(Progress { used: i, done: s == State::Done }),
        }
    }

    /// One byte outside chunk data.
    #[expect(
        clippy::too_many_lines,
        reason = "one match arm per state of the chunked grammar: the transitions read as the grammar, side by side"
    )]
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use State::{
            Data, DataCr, DataLf, Done, EndLf, ExtName, ExtNameEndWs, ExtNameWs, ExtQuoted, ExtQuotedPair, ExtToken,
            ExtValueEnd, ExtValueEndWs, ExtValueWs, Failed, Size, SizeLf, SizeStart, SizeWs, TrailerLf, TrailerName,
            TrailerStart, TrailerValue,
        };
        let at = self.at;
        if self.state.in_size_line() {
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(ChunkedError::LineTooLong { at });
            }
        } else if self.state.in_trailers() {
            self.trailers = self.trailers.saturating_add(1);
            if self.trailers > self.max_trailers {
                return Err(ChunkedError::TrailerTooLarge { max: self.max_trailers });
            }
        }
        let ows = syntax::is_ows(b);
        let tchar = syntax::is_tchar(b);
        let ext = ChunkedError::Extension { at, byte: b };
        if b == b'\n' && !matches!(self.state, SizeLf | DataLf | TrailerLf | EndLf) {
            return Err(ChunkedError::BareLf { at });
        }
        self.state = match self.state {
            SizeStart => {
                self.left = hex(b).ok_or(ChunkedError::SizeNotHex { at, byte: b })?;
                Size
            }
            Size => match b {
                b'\r' => SizeLf,
                b';' => ExtNameWs,
                _ if ows => SizeWs,
                _ => {
                    let digit = hex(b).ok_or(ChunkedError::SizeNotHex { at, byte: b })?;
                    self.left = self
                        .left
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(digit))
                        .ok_or(ChunkedError::SizeOverflow { at })?;
                    Size
                }
            },
            SizeWs | ExtValueEndWs => match b {
                b';' => ExtNameWs,
                _ if ows => self.state,
                _ => return Err(ext),
            },
            ExtNameWs => match b {
                _ if ows => ExtNameWs,
                _ if tchar => ExtName,
                _ => return Err(ext),
            },
            ExtName => match b {
                b'\r' => SizeLf,
                b'=' => ExtValueWs,
                b';' => ExtNameWs,
                _ if tchar => ExtName,
                _ if ows => ExtNameEndWs,
                _ => return Err(ext),
            },
            ExtNameEndWs => match b {
                b'=' => ExtValueWs,
                b';' => ExtNameWs,
                _ if ows => ExtNameEndWs,
                _ => return Err(ext),
            },
            ExtValueWs => match b {
                b'"' => ExtQuoted,
                _ if ows => ExtValueWs,
                _ if tchar => ExtToken,
                _ => return Err(ext),
            },
            ExtToken => match b {
                b'\r' => SizeLf,
                b';' => ExtNameWs,
                _ if tchar => ExtToken,
                _ if ows => ExtValueEndWs,
                _ => return Err(ext),
            },
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            ExtQuoted => match b {
                b'"' => ExtValueEnd,
                b'\\' => ExtQuotedPair,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => return Err(ext),
            },
            ExtQuotedPair => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted,
                _ => return Err(ext),
            },
            ExtValueEnd => match b {
                b'\r' => SizeLf,
                b';' => ExtNameWs,
                _ if ows => ExtValueEndWs,
                _ => return Err(ext),
            },
            SizeLf => match b {
                b'\n' if self.left == 0 => TrailerStart,
                b'\n' => Data,
                _ => return Err(ChunkedError::BareCr { at }),
            },
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err(ChunkedError::MissingCrlf { at }),
            },
            DataLf => match b {
                b'\n' => {
                    self.line = 0;
                    SizeStart
                }
                _ => return Err(ChunkedError::BareCr { at }),
            },
            TrailerStart => match b {
                b'\r' => EndLf,
                _ if tchar => {
                    self.name[0] = b;
                    self.name_len = 1;
                    TrailerName
                }
                // a line starting with whitespace is obs-fold
                _ => return Err(ChunkedError::Trailer { at, byte: b }),
            },
            TrailerName => match b {
                b':' if self.forbidden_name() => return Err(ChunkedError::ForbiddenTrailer { at }),
                b':' => TrailerValue,
                _ if tchar => {
                    if let Some(slot) = self.name.get_mut(usize::from(self.name_len)) {
                        *slot = b;
                    }
                    self.name_len = self.name_len.saturating_add(1).min(NAME_KEPT + 1);
                    TrailerName
                }
                _ => return Err(ChunkedError::Trailer { at, byte: b }),
            },
            TrailerValue => match b {
                b'\r' => TrailerLf,
                _ if syntax::is_field_value_byte(b) => TrailerValue,
                _ => return Err(ChunkedError::Trailer { at, byte: b }),
            },
            TrailerLf => match b {
                b'\n' => TrailerStart,
                _ => return Err(ChunkedError::BareCr { at }),
            },
            EndLf => match b {
                b'\n' => Done,
                _ => return Err(ChunkedError::BareCr { at }),
            },
            // handled by feed_data before a byte is stepped
            Data | Done | Failed(_) => self.state,
        };
        Ok(())
    }

    /// Whether the trailer name read so far is a framing or routing field.
    fn forbidden_name(&self) -> bool {
        let Some(name) = self.name.get(..usize::from(self.name_len)) else { return false };
        [&b"content-length"[..], b"transfer-encoding", b"host"].iter().any(|f| name.eq_ignore_ascii_case(f))
    }
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests;
