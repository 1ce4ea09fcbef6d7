//! A message head (request or response) as offsets into the caller's buffer: the start line, each field's
//! name, value and line, the head's length. httparse finds the fields; this file adds what httparse lets
//! through (bare LF line endings) and names what it refused.
//!
//! Offsets, not borrows: the engine keeps reading into its buffer (or moves it back to a pool) and
//! re-borrows any span later with [`Span::of`]. Offsets are `u32`: a head is at most
//! `--max-header-size` (1 MiB) long.

use std::{mem::MaybeUninit, ops::Range};

use super::syntax::{self, Name};

/// Header slots offered to httparse: the top of `--max-headers`' range (config checks `1..=1000`).
/// They are uninitialised stack memory, so a head of 10 fields costs nothing for the 990 others.
pub const MAX_FIELDS: usize = 1000;

/// What one head may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head, bytes, start line and final CRLF included (`--max-header-size`).
    pub max_head: usize,
    /// Most fields (`--max-headers`, at most [`MAX_FIELDS`]).
    pub max_fields: usize,
}

impl From<crate::config::Limits> for Limits {
    /// The head limits of the configuration (`--max-header-size`, `--max-headers`).
    fn from(l: crate::config::Limits) -> Self {
        Self { max_head: l.max_header_size, max_fields: l.max_headers }
    }
}

/// Whether a buffer held a whole head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed (and the limits allow them).
    Incomplete,
    /// The head is the first `len` bytes; the body (if any) starts at `len`.
    Complete {
        /// Length of the head, final CRLF included.
        len: usize,
    },
}

/// A malformed or oversized head; which side sent it decides the answer (see the module doc of
/// [`super`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head did not end within the limit.
    #[error("head is larger than {max} bytes")]
    TooLarge {
        /// The limit, bytes.
        max: usize,
    },
    /// More fields than the limit.
    #[error("head has more than {max} fields")]
    TooManyFields {
        /// The limit.
        max: usize,
    },
    /// The start line does not have its three parts separated by single spaces.
    #[error("start line of the head is malformed")]
    StartLine,
    /// The method is not a token.
    #[error("method of the request line is not a token")]
    Method,
    /// The request target has a byte outside the allowed set (control, space, `#`, `<`, ...).
    #[error("request target has a byte outside the allowed set")]
    Target,
    /// Not `HTTP/1.0` nor `HTTP/1.1`.
    #[error("version of the start line is not HTTP/1.0 or HTTP/1.1")]
    Version,
    /// The status code is not three digits from 100.
    #[error("status code of the status line is not three digits from 100 to 999")]
    Status,
    /// A field name is empty or has a byte outside `tchar`.
    #[error("field name has a byte outside tchar")]
    FieldName,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1: must be refused).
    #[error("field name is followed by whitespace before the colon")]
    WhitespaceBeforeColon,
    /// A field line starting with whitespace: obs-fold (RFC 9112 §5.2), or whitespace before the first
    /// field (§2.2). Both must be refused or rewritten; sticky refuses.
    #[error("field line starts with whitespace (obs-fold)")]
    ObsFold,
    /// A field value with a control byte (other than HTAB) or DEL.
    #[error("field value has a control byte")]
    FieldValue,
    /// A NUL byte anywhere in the head.
    #[error("head has a NUL byte")]
    Nul,
    /// A line ending in LF alone (RFC 9112 §2.2 lets a recipient accept it; sticky does not, so
    /// nothing downstream can read the lines differently).
    #[error("head has a bare LF where CRLF is required")]
    BareLf,
    /// A CR not followed by LF.
    #[error("head has a CR not followed by LF")]
    BareCr,
    /// Refused by httparse for a reason the diagnosis could not place.
    #[error("head is malformed")]
    Malformed,
}

/// A byte range of the caller's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub(super) fn new(range: Range<usize>) -> Self {
        // heads are bounded by Limits::max_head (config: at most 1 MiB), far below u32::MAX
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self { start: clamp(range.start), end: clamp(range.end) }
    }

    /// The bytes of this span in `buf`; empty if `buf` is not the buffer the head was parsed from.
    #[must_use]
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.range()).unwrap_or_default()
    }

    /// The span as a range of indices.
    #[must_use]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// First byte.
    #[must_use]
    pub fn start(self) -> usize {
        self.start as usize
    }

    /// One past the last byte.
    #[must_use]
    pub fn end(self) -> usize {
        self.end as usize
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(self) -> usize {
        self.range().len()
    }

    /// Whether the span is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }
}

/// One field line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name as received.
    pub name: Span,
    /// The value without leading and trailing whitespace.
    pub value: Span,
    /// The whole line, name to CRLF included: what a rewrite copies when it keeps the field.
    pub line: Span,
    /// The name's class.
    pub kind: Name,
}

/// The parts of a head both directions share. Reused across messages: parsing clears it and refills
/// it, so a connection's head costs no allocation once its field list has grown.
#[derive(Clone, Debug, Default)]
pub struct Head {
    start_line: Span,
    fields: Vec<Field>,
    len: u32,
}

impl Head {
    /// Length of the head, final CRLF included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was parsed yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start line without its CRLF.
    #[must_use]
    pub fn start_line(&self) -> Span {
        self.start_line
    }

    /// The fields in order.
    #[must_use]
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The values of every field of class `kind`, in order (for [`Name::Other`], of every unknown field).
    pub fn values<'a>(&'a self, buf: &'a [u8], kind: Name) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields.iter().filter(move |f| f.kind == kind).map(move |f| f.value.of(buf))
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    #[must_use]
    pub fn get<'a>(&self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.name.of(buf).eq_ignore_ascii_case(name)).map(|f| f.value.of(buf))
    }

    pub(super) fn clear(&mut self) {
        self.start_line = Span::default();
        self.fields.clear();
        self.len = 0;
    }

    /// Records the spans of a head httparse accepted as the first `len` bytes of `buf`, and checks that
    /// every line ends in CRLF.
    ///
    /// Why this finds every bare LF: httparse ends a line at LF (CRLF or LF alone) and refuses LF
    /// anywhere else, so the head's LFs are exactly those before each line start: after the leading
    /// empty lines, before each field name, before the final empty line, and the last byte.
    pub(super) fn record(&mut self, buf: &[u8], fields: &[httparse::Header<'_>], len: usize) -> Result<(), HeadError> {
        let head = buf.get(..len).ok_or(HeadError::Malformed)?;
        let lead = head.iter().position(|&b| b != b'\r' && b != b'\n').ok_or(HeadError::Malformed)?;
        if lead % 2 != 0 || !head[..lead].chunks(2).all(|pair| pair == b"\r\n") {
            return Err(HeadError::BareLf);
        }
        if !head.ends_with(b"\r\n") {
            return Err(HeadError::BareLf);
        }
        let final_line = len - 2;
        let crlf_before = |at: usize| at >= 2 && head.get(at - 2..at) == Some(b"\r\n");
        self.fields.reserve(fields.len());
        for f in fields {
            let name = offset(head, f.name.as_bytes()).ok_or(HeadError::Malformed)?;
            let value = offset(head, f.value).ok_or(HeadError::Malformed)?;
            if !crlf_before(name.start) {
                return Err(HeadError::BareLf);
            }
            // a line ends where the next one starts
            if let Some(previous) = self.fields.last_mut() {
                previous.line = Span::new(previous.line.start()..name.start);
            }
            self.fields.push(Field {
                name: Span::new(name.clone()),
                value: Span::new(value),
                line: Span::new(name.start..final_line),
                kind: Name::classify(f.name.as_bytes()),
            });
        }
        if !crlf_before(final_line) {
            return Err(HeadError::BareLf);
        }
        let first_line_end = self.fields.first().map_or(final_line, |f| f.line.start()) - 2;
        self.start_line = Span::new(lead..first_line_end);
        self.len = u32::try_from(len).map_err(|_| HeadError::TooLarge { max: len })?;
        Ok(())
    }
}

/// Where `part` sits inside `whole`, if it does.
pub(super) fn offset(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = part.as_ptr().addr().checked_sub(whole.as_ptr().addr())?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The httparse settings: every leniency off (they are off by default; set here so that a default
/// changing upstream cannot loosen sticky).
pub(super) fn parser() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(false)
        .allow_obsolete_multiline_headers_in_responses(false)
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .allow_multiple_spaces_in_response_status_delimiters(false)
        .allow_space_before_first_header_name(false)
        .ignore_invalid_headers_in_requests(false)
        .ignore_invalid_headers_in_responses(false);
    c
}

/// Uninitialised header slots for httparse (the caller offers it the first `max_fields`).
#[expect(
    clippy::large_stack_arrays,
    reason = "uninitialised, the slots cost a stack-pointer move, not a fill, where a heap array would be an allocation per head; 32 KiB fits the 2 MiB thread stacks"
)]
pub(super) fn slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_FIELDS] {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// The error for what httparse refused: `TooManyHeaders` directly, anything else placed by
/// [`diagnose`] (only on this error path, so its cost does not matter).
pub(super) fn refused(buf: &[u8], e: httparse::Error, limits: Limits, request: bool) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyFields { max: limits.max_fields.min(MAX_FIELDS) },
        _ => diagnose(buf, request),
    }
}

/// Names the first defect of a head httparse refused, reading it line by line.
fn diagnose(buf: &[u8], request: bool) -> HeadError {
    let mut rest = buf;
    let mut line_no = 0usize;
    loop {
        let (line, terminated, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&rest[..lf], true, &rest[lf + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if terminated && content.len() == line.len() {
            return HeadError::BareLf;
        }
        if content.contains(&b'\r') {
            return HeadError::BareCr;
        }
        if content.contains(&0) {
            return HeadError::Nul;
        }
        if !(line_no == 0 && content.is_empty()) {
            let found = if line_no == 0 {
                if request { request_line(content, terminated) } else { status_line(content) }
            } else if content.is_empty() {
                None
            } else {
                field_line(content)
            };
            if let Some(e) = found {
                return e;
            }
            line_no += 1;
        }
        if !terminated || (line_no > 1 && content.is_empty()) {
            return HeadError::Malformed;
        }
        rest = next;
    }
}

/// The defect of a request line; `complete` is false for a line still being received, whose missing
/// parts are not defects.
fn request_line(line: &[u8], complete: bool) -> Option<HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() {
        return Some(HeadError::StartLine);
    }
    if !syntax::is_token(method) {
        return Some(HeadError::Method);
    }
    let Some(target) = parts.next() else { return complete.then_some(HeadError::StartLine) };
    if target.is_empty() {
        return Some(HeadError::StartLine);
    }
    // httparse's own target set: visible ASCII and UTF-8 (the stricter sets are checked later)
    if !target.iter().all(|&b| (0x21..=0x7e).contains(&b) || b >= 0x80) || std::str::from_utf8(target).is_err() {
        return Some(HeadError::Target);
    }
    let Some(version) = parts.next() else { return complete.then_some(HeadError::StartLine) };
    if parts.next().is_some() {
        return Some(HeadError::StartLine);
    }
    let known = version == b"HTTP/1.1" || version == b"HTTP/1.0";
    let prefix = !complete && (b"HTTP/1.1".starts_with(version) || b"HTTP/1.0".starts_with(version));
    (!known && !prefix).then_some(HeadError::Version)
}

fn status_line(line: &[u8]) -> Option<HeadError> {
    let (version, rest) = line.split_at(line.len().min(8));
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Some(HeadError::Version);
    }
    match rest {
        [b' ', a, b, c, tail @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let reason_ok = match tail.split_first() {
                None => true,
                Some((b' ', reason)) => syntax::is_field_value(reason),
                Some(_) => false,
            };
            (!reason_ok).then_some(HeadError::Status)
        }
        _ => Some(HeadError::Status),
    }
}

fn field_line(line: &[u8]) -> Option<HeadError> {
    if line.first().is_some_and(|&b| syntax::is_ows(b)) {
        return Some(HeadError::ObsFold);
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else { return Some(HeadError::FieldName) };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.last().is_some_and(|&b| syntax::is_ows(b)) {
        return Some(HeadError::WhitespaceBeforeColon);
    }
    if !syntax::is_token(name) {
        return Some(HeadError::FieldName);
    }
    (!syntax::is_field_value(value)).then_some(HeadError::FieldValue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(raw: &[u8]) -> HeadError {
        diagnose(raw, true)
    }

    #[test]
    fn diagnosis_names_the_first_defect() {
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n"), HeadError::BareLf);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), HeadError::BareCr);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), HeadError::ObsFold);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA : b\r\n\r\n"), HeadError::WhitespaceBeforeColon);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA\tB: b\r\n\r\n"), HeadError::FieldName);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA: b\0\r\n\r\n"), HeadError::Nul);
        assert_eq!(diag(b"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"), HeadError::FieldValue);
        assert_eq!(diag(b"GET  / HTTP/1.1\r\n\r\n"), HeadError::StartLine);
        assert_eq!(diag(b"G(T / HTTP/1.1\r\n\r\n"), HeadError::Method);
        assert_eq!(diag(b"GET / HTTP/2.0\r\n\r\n"), HeadError::Version);
        assert_eq!(diag(b"GET /\x7f"), HeadError::Target, "a line still arriving is judged on what it has");
        assert_eq!(diag(b"GET / HTTP/1.1 x\r\n\r\n"), HeadError::StartLine);
        assert_eq!(diagnose(b"HTTP/1.1 2000 OK\r\n\r\n", false), HeadError::Status);
        assert_eq!(diagnose(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n", false), HeadError::Malformed, "nothing to name");
    }

    #[test]
    fn spans_reborrow_the_buffer_and_tolerate_another_one() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\nbody";
        let mut slots = slots();
        let mut req = httparse::Request::new(&mut []);
        let len = match parser().parse_request_with_uninit_headers(&mut req, raw, &mut slots[..10]) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("the head must parse: {other:?}"),
        };
        let mut head = Head::default();
        head.record(raw, req.headers, len).expect("a CRLF head must be recorded");
        assert_eq!(head.len(), raw.len() - 4);
        assert_eq!(head.start_line().of(raw), b"GET / HTTP/1.1");
        let f = head.fields()[1];
        assert_eq!((f.name.of(raw), f.value.of(raw), f.line.of(raw)), (&b"X-Y"[..], &b"z"[..], &b"X-Y:  z \r\n"[..]));
        assert_eq!(head.get(raw, b"host"), Some(&b"a"[..]));
        assert_eq!(f.value.of(b"short"), b"", "a span must not panic on another buffer");
    }
}
