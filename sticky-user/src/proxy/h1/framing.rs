//! The framing fields of either direction, read one field line at a time while a head is parsed:
//! `Content-Length` (HAProxy's rule for repeats), `Transfer-Encoding` codings, `Connection` options.
//! Each decides nothing alone; the request and response files turn them into a framing.

use super::{
    head::{Field, Head},
    syntax::{self, Name},
};

/// Largest accepted `Content-Length`: what a signed 64-bit integer holds, the type many backends
/// parse it into. A larger value is refused rather than read differently downstream.
pub const MAX_CONTENT_LENGTH: u64 = i64::MAX as u64;

/// A framing field that cannot be read one way only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Not a list of decimal numbers (`+5`, `0x5`, `5 5`, empty, an empty element, ...).
    #[error("Content-Length is not a decimal number")]
    ContentLength,
    /// Two different values, in one line (`5, 6`) or in two.
    #[error("Content-Length has different values")]
    ContentLengthMismatch,
    /// Above [`MAX_CONTENT_LENGTH`].
    #[error("Content-Length is larger than {MAX_CONTENT_LENGTH}")]
    ContentLengthTooLarge,
    /// An empty coding, a coding that is not a token, or `chunked` with parameters.
    #[error("Transfer-Encoding has an empty or malformed coding")]
    TransferCoding,
    /// `chunked` applied twice (RFC 9112 §7: a sender must not; HAProxy refuses it).
    #[error("Transfer-Encoding applies chunked more than once")]
    ChunkedTwice,
}

/// `Content-Length` lines so far. Identical repeats, in a list (`5, 5`) or in several lines, are one
/// length (RFC 9110 §8.6 allows a recipient to read them so, HAProxy does); any difference is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentLength {
    value: Option<u64>,
    lines: u32,
    listed: bool,
}

impl ContentLength {
    /// Adds one field value.
    ///
    /// # Errors
    /// A malformed, differing or oversized value.
    pub fn add(&mut self, value: &[u8]) -> Result<(), FramingError> {
        self.lines = self.lines.saturating_add(1);
        let mut elements = 0u32;
        for element in syntax::list(value) {
            let n = syntax::decimal(element).ok_or(FramingError::ContentLength)?;
            if n > MAX_CONTENT_LENGTH {
                return Err(FramingError::ContentLengthTooLarge);
            }
            match self.value {
                Some(v) if v != n => return Err(FramingError::ContentLengthMismatch),
                _ => self.value = Some(n),
            }
            elements += 1;
        }
        self.listed |= elements > 1;
        Ok(())
    }

    /// The length, if any line was seen.
    #[must_use]
    pub fn value(&self) -> Option<u64> {
        self.value
    }

    /// Whether the lines must be forwarded as one plain `Content-Length: n` (several lines, or a list):
    /// the backend then sees one value, whatever its own rule for repeats.
    #[must_use]
    pub fn needs_rewrite(&self) -> bool {
        self.lines > 1 || self.listed
    }
}

/// `Transfer-Encoding` codings so far (several lines are one list, in order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferCodings {
    codings: u32,
    chunked_last: bool,
    chunked_seen: bool,
}

impl TransferCodings {
    /// Adds one field value.
    ///
    /// # Errors
    /// An empty or malformed coding, or `chunked` twice.
    pub fn add(&mut self, value: &[u8]) -> Result<(), FramingError> {
        for element in syntax::list(value) {
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let name = syntax::trim_ows(element.split(|&b| b == b';').next().unwrap_or_default());
            if !syntax::is_token(name) {
                return Err(FramingError::TransferCoding);
            }
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            if chunked && name.len() != element.len() {
                // chunked takes no parameters: a parser that ignores them and one that does not disagree
                return Err(FramingError::TransferCoding);
            }
            if chunked && self.chunked_seen {
                return Err(FramingError::ChunkedTwice);
            }
            self.chunked_seen |= chunked;
            self.chunked_last = chunked;
            self.codings = self.codings.saturating_add(1);
        }
        Ok(())
    }

    /// Whether any coding was seen.
    #[must_use]
    pub fn is_present(&self) -> bool {
        self.codings > 0
    }

    /// Whether `chunked` is the final coding (the body is then chunked, RFC 9112 §6.3).
    #[must_use]
    pub fn is_chunked(&self) -> bool {
        self.chunked_last
    }

    /// Whether `chunked` is the only coding.
    #[must_use]
    pub fn is_only_chunked(&self) -> bool {
        self.codings == 1 && self.chunked_last
    }
}

/// `Connection` options so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one independent flag per option a list may name, in any combination: not states of one machine"
)]
pub struct ConnectionOptions {
    /// `close` was listed.
    pub close: bool,
    /// `keep-alive` was listed.
    pub keep_alive: bool,
    /// `upgrade` was listed.
    pub upgrade: bool,
    /// Some other option was listed: a field name to remove (RFC 9110 §7.6.1). Rewrites only look for
    /// such names when this is set, which almost no message needs.
    pub names_fields: bool,
}

impl ConnectionOptions {
    /// Adds one field value.
    pub fn add(&mut self, value: &[u8]) {
        for option in syntax::list(value) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if !option.is_empty() {
                self.names_fields = true;
            }
        }
    }

    /// Whether `field` is removed because a `Connection` option names it. Framing and routing fields
    /// ([`Name::is_protected`]) never are.
    #[must_use]
    pub fn drops(&self, head: &Head, buf: &[u8], field: &Field) -> bool {
        if !self.names_fields || field.kind.is_protected() {
            return false;
        }
        let name = field.name.of(buf);
        head.values(buf, Name::Connection).any(|v| syntax::list_has(v, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(values: &[&[u8]]) -> Result<ContentLength, FramingError> {
        let mut cl = ContentLength::default();
        for v in values {
            cl.add(v)?;
        }
        Ok(cl)
    }

    fn codings(values: &[&[u8]]) -> Result<TransferCodings, FramingError> {
        let mut te = TransferCodings::default();
        for v in values {
            te.add(v)?;
        }
        Ok(te)
    }

    #[test]
    fn identical_content_lengths_merge_and_different_ones_are_refused() {
        let one = length(&[b"5"]).expect("a plain length must be accepted");
        assert_eq!((one.value(), one.needs_rewrite()), (Some(5), false));
        let listed = length(&[b"5, 5"]).expect("a list of one value must be accepted");
        assert_eq!((listed.value(), listed.needs_rewrite()), (Some(5), true));
        let repeated = length(&[b"5", b"5"]).expect("repeated lines of one value must be accepted");
        assert_eq!((repeated.value(), repeated.needs_rewrite()), (Some(5), true));
        assert_eq!(length(&[b"5", b"6"]), Err(FramingError::ContentLengthMismatch));
        assert_eq!(length(&[b"5,6"]), Err(FramingError::ContentLengthMismatch));
        assert_eq!(length(&[b"5,"]), Err(FramingError::ContentLength), "an empty element must be refused");
        assert_eq!(length(&[b"+5"]), Err(FramingError::ContentLength));
        assert_eq!(length(&[b"9223372036854775808"]), Err(FramingError::ContentLengthTooLarge));
        assert_eq!(length(&[b"9223372036854775807"]).map(|c| c.value()), Ok(Some(MAX_CONTENT_LENGTH)));
    }

    #[test]
    fn codings_track_the_final_one() {
        assert!(codings(&[b"chunked"]).expect("chunked must be accepted").is_only_chunked());
        assert!(codings(&[b"CHUNKED"]).expect("codings must be case-insensitive").is_only_chunked());
        let gzip_chunked = codings(&[b"gzip", b"chunked"]).expect("two lines must be one list");
        assert!(gzip_chunked.is_chunked() && !gzip_chunked.is_only_chunked());
        assert!(!codings(&[b"chunked, gzip"]).expect("chunked first must be allowed").is_chunked());
        assert_eq!(codings(&[b"chunked", b"chunked"]), Err(FramingError::ChunkedTwice));
        assert_eq!(codings(&[b"chunked,"]), Err(FramingError::TransferCoding));
        assert_eq!(codings(&[b""]), Err(FramingError::TransferCoding));
        assert_eq!(codings(&[b"chunked;q=1"]), Err(FramingError::TransferCoding));
        assert_eq!(codings(&[b"\"chunked\""]), Err(FramingError::TransferCoding));
        assert!(codings(&[b"gzip;level=1, chunked"]).expect("parameters of other codings must pass").is_chunked());
    }

    #[test]
    fn connection_options_are_read_case_insensitively() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, UPGRADE");
        assert!(c.keep_alive && c.upgrade && !c.close && !c.names_fields);
        c.add(b"close, X-Secret");
        assert!(c.close && c.names_fields);
    }
}
