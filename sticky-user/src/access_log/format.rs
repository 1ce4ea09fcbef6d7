//! One access log line as text (logfmt: `key=value`, quoted where needed) or as one JSON object:
//! pure functions of a [`Line`], so the escaping of what a client controls (the method, the path) is
//! tested here without a socket.

use std::{fmt::Write as _, time::Duration};

use crate::{config::ops::Format, policy::RepinReason};

/// Longest path written, in bytes; a longer one is cut and ends with `...` (a client must not make a
/// line as long as its head).
pub const MAX_PATH: usize = 256;

/// Longest method written, in bytes (the codec bounds it already; this keeps a line bounded anyway).
pub const MAX_METHOD: usize = 16;

/// How the backend of a request was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// A valid cookie named an available backend: kept.
    Pinned,
    /// No (usable) cookie and no earlier pin to leave: a new session.
    New,
    /// The cookie's backend could not take it: a new backend, for this reason.
    Repinned(RepinReason),
    /// Refused with 503: a strict service's pinned backend is unavailable for this reason.
    Strict(RepinReason),
    /// Refused with 503: no backend available.
    NoBackend,
    /// tcp mode: a client-affinity entry of a live backend.
    Affinity,
    /// tcp mode: a pick through the Maglev table.
    Maglev,
    /// Answered 404 by sticky: no service's rule matched (the line's service is `-`).
    NoRoute,
    /// Answered 308 by sticky: the service sends plain HTTP to HTTPS.
    Redirect,
}

impl Pick {
    /// The `pick` field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::New => "new",
            Self::Repinned(_) => "repinned",
            Self::Strict(_) => "strict",
            Self::NoBackend => "no_backend",
            Self::Affinity => "affinity",
            Self::Maglev => "maglev",
            Self::NoRoute => "no_route",
            Self::Redirect => "redirect",
        }
    }

    /// The `reason` field: why a session left (or could not keep) its backend.
    #[must_use]
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Repinned(r) | Self::Strict(r) => Some(r.as_str()),
            _ => None,
        }
    }
}

/// Everything one line says.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// When the request arrived (its head was read).
    pub time: std::time::SystemTime,
    /// The client's address as sticky resolved it (PROXY protocol, trusted forwarding fields).
    pub client: &'a str,
    /// `http/1.1`, `h2`, `tcp`.
    pub proto: &'static str,
    /// The service's name.
    pub service: &'a str,
    /// The backend's id, if one was chosen.
    pub backend: Option<&'a str>,
    /// How it was chosen.
    pub pick: Pick,
    /// The status sent (sticky's own or the backend's); `None`: no answer (the client left).
    pub status: Option<u16>,
    /// Bytes the client sent for the request (head and body), if known.
    pub bytes_in: Option<u64>,
    /// Bytes sent to the client (head and body), if known.
    pub bytes_out: Option<u64>,
    /// From the head read to the answer's end (HTTP/2: to the response head; tcp: the connection's life).
    pub duration: Duration,
    /// The request method (empty in tcp mode).
    pub method: &'a [u8],
    /// The request path without its query (empty in tcp mode).
    pub path: &'a [u8],
}

/// Appends the line for `l` (with its newline) to `out`.
pub fn write(l: &Line<'_>, format: Format, out: &mut String) {
    match format {
        Format::Text => text(l, out),
        Format::Json => json(l, out),
    }
    out.push('\n');
}

fn text(l: &Line<'_>, out: &mut String) {
    let _ = write!(out, "time={}", humantime::format_rfc3339_millis(l.time));
    let _ = write!(out, " client={} proto={} service=", l.client, l.proto);
    text_value(l.service.as_bytes(), usize::MAX, out);
    out.push_str(" backend=");
    text_value(l.backend.unwrap_or("-").as_bytes(), usize::MAX, out);
    let _ = write!(out, " pick={} reason={}", l.pick.as_str(), l.pick.reason().unwrap_or("-"));
    out.push_str(" status=");
    opt(l.status.map(u64::from), out);
    out.push_str(" bytes_in=");
    opt(l.bytes_in, out);
    out.push_str(" bytes_out=");
    opt(l.bytes_out, out);
    let _ = write!(out, " duration_ms={:.3}", l.duration.as_secs_f64() * 1000.0);
    if !l.method.is_empty() {
        out.push_str(" method=");
        text_value(l.method, MAX_METHOD, out);
        out.push_str(" path=");
        text_value(l.path, MAX_PATH, out);
    }
}

fn opt(v: Option<u64>, out: &mut String) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push('-'),
    }
}

/// A logfmt value: bare if it is visible ASCII without `"`, `\` or `=`, else quoted with those
/// escaped; bytes outside visible ASCII as `\xHH` (a line never holds a control character a terminal
/// would act on, nor a newline that would forge a second line).
fn text_value(v: &[u8], max: usize, out: &mut String) {
    let (v, cut) = bounded(v, max);
    let bare = !v.is_empty() && v.iter().all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='));
    if bare {
        for &b in v {
            out.push(char::from(b));
        }
    } else {
        out.push('"');
        for &b in v {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b' ' => out.push(' '),
                b if b.is_ascii_graphic() => out.push(char::from(b)),
                b => {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
        out.push('"');
    }
    if cut {
        // outside the quotes: the value as written is whole, the request's was longer
        out.push_str("...");
    }
}

fn bounded(v: &[u8], max: usize) -> (&[u8], bool) {
    if v.len() > max { (v.get(..max).unwrap_or(v), true) } else { (v, false) }
}

fn json(l: &Line<'_>, out: &mut String) {
    let _ = write!(out, "{{\"time\":\"{}\"", humantime::format_rfc3339_millis(l.time));
    out.push_str(",\"client\":");
    json_str(l.client.as_bytes(), usize::MAX, out);
    let _ = write!(out, ",\"proto\":\"{}\",\"service\":", l.proto);
    json_str(l.service.as_bytes(), usize::MAX, out);
    out.push_str(",\"backend\":");
    match l.backend {
        Some(b) => json_str(b.as_bytes(), usize::MAX, out),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"pick\":\"{}\",\"reason\":", l.pick.as_str());
    match l.pick.reason() {
        Some(r) => {
            let _ = write!(out, "\"{r}\"");
        }
        None => out.push_str("null"),
    }
    for (key, v) in [("status", l.status.map(u64::from)), ("bytes_in", l.bytes_in), ("bytes_out", l.bytes_out)] {
        let _ = write!(out, ",\"{key}\":");
        match v {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => out.push_str("null"),
        }
    }
    let _ = write!(out, ",\"duration_ms\":{:.3}", l.duration.as_secs_f64() * 1000.0);
    if !l.method.is_empty() {
        out.push_str(",\"method\":");
        json_str(l.method, MAX_METHOD, out);
        out.push_str(",\"path\":");
        json_str(l.path, MAX_PATH, out);
        if l.path.len() > MAX_PATH {
            out.push_str(",\"path_truncated\":true");
        }
    }
    out.push('}');
}

/// A JSON string of `v` (cut at `max` bytes): `"` and `\` escaped, control characters as `\u00XX`,
/// and bytes that are not UTF-8 as U+FFFD (the line stays valid JSON whatever the client sent).
fn json_str(v: &[u8], max: usize, out: &mut String) {
    let (v, _) = bounded(v, max);
    out.push('"');
    for c in String::from_utf8_lossy(v).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn line(path: &[u8], pick: Pick) -> Line<'_> {
        Line {
            time: UNIX_EPOCH + Duration::from_millis(1_764_882_000_123),
            client: "192.0.2.7",
            proto: "http/1.1",
            service: "web",
            backend: Some("web.1"),
            pick,
            status: Some(200),
            bytes_in: Some(78),
            bytes_out: Some(1234),
            duration: Duration::from_micros(1500),
            method: b"GET",
            path,
        }
    }

    fn text_of(l: &Line<'_>) -> String {
        let mut s = String::new();
        write(l, Format::Text, &mut s);
        s
    }

    fn json_of(l: &Line<'_>) -> serde_json::Value {
        let mut s = String::new();
        write(l, Format::Json, &mut s);
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1, "one line: {s:?}");
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    #[test]
    fn text_line_has_every_field() {
        let s = text_of(&line(b"/cart", Pick::Repinned(RepinReason::BackendGone)));
        assert_eq!(
            s,
            "time=2025-12-04T21:00:00.123Z client=192.0.2.7 proto=http/1.1 service=web backend=web.1 pick=repinned \
             reason=backend_gone status=200 bytes_in=78 bytes_out=1234 duration_ms=1.500 method=GET path=/cart\n"
        );
    }

    #[test]
    fn json_line_has_every_field() {
        let v = json_of(&line(b"/cart", Pick::Pinned));
        assert_eq!(v["time"], "2025-12-04T21:00:00.123Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["service"], "web");
        assert_eq!(v["backend"], "web.1");
        assert_eq!(v["pick"], "pinned");
        assert!(v["reason"].is_null());
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_in"], 78);
        assert_eq!(v["bytes_out"], 1234);
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/cart");
    }

    #[test]
    fn hostile_path_stays_one_valid_json_line() {
        let hostile = b"/a\"b\\c\n{\"status\":999}\r\x1b[31m\xff\xfe";
        let v = json_of(&line(hostile, Pick::New));
        assert_eq!(v["path"], "/a\"b\\c\n{\"status\":999}\r\u{1b}[31m\u{fffd}\u{fffd}");
        assert_eq!(v["status"], 200, "the path cannot forge a field");
        assert!(v.get("path_truncated").is_none());
    }

    #[test]
    fn hostile_path_stays_one_text_line() {
        let s = text_of(&line(b"/x y\"\\\n status=999 \x1b", Pick::New));
        assert_eq!(s.matches('\n').count(), 1);
        assert!(!s.contains('\x1b'));
        assert!(s.ends_with(" path=\"/x y\\\"\\\\\\x0a status=999 \\x1b\"\n"), "{s}");
        assert_eq!(s.matches("status=").count(), 2, "the forged field is inside the quotes: {s}");
    }

    #[test]
    fn long_path_is_cut() {
        let long = vec![b'a'; MAX_PATH * 4];
        let s = text_of(&line(&long, Pick::New));
        assert!(s.ends_with(&format!(" path={}...\n", "a".repeat(MAX_PATH))), "{s}");
        let v = json_of(&line(&long, Pick::New));
        assert_eq!(v["path"].as_str().map(str::len), Some(MAX_PATH));
        assert_eq!(v["path_truncated"], true);
    }

    #[test]
    fn unknown_values_are_dashes_and_nulls() {
        let mut l = line(b"/", Pick::NoBackend);
        l.backend = None;
        l.status = None;
        l.bytes_out = None;
        let s = text_of(&l);
        assert!(s.contains(" backend=- pick=no_backend reason=- status=- bytes_in=78 bytes_out=- "), "{s}");
        let v = json_of(&l);
        assert!(v["backend"].is_null() && v["status"].is_null() && v["bytes_out"].is_null());
    }

    #[test]
    fn stickys_own_answers_name_no_backend() {
        let mut l = line(b"/nowhere", Pick::NoRoute);
        (l.service, l.backend, l.status) = ("-", None, Some(404));
        let s = text_of(&l);
        assert!(s.contains(" service=- backend=- pick=no_route reason=- status=404 "), "{s}");
        let mut l = line(b"/x", Pick::Redirect);
        (l.backend, l.status) = (None, Some(308));
        let v = json_of(&l);
        assert_eq!(
            (v["pick"].as_str(), v["status"].as_u64(), v["service"].as_str()),
            (Some("redirect"), Some(308), Some("web"))
        );
        assert!(v["backend"].is_null() && v["reason"].is_null(), "{v}");
    }

    #[test]
    fn tcp_lines_have_no_method_or_path() {
        let mut l = line(b"", Pick::Affinity);
        l.method = b"";
        l.proto = "tcp";
        let s = text_of(&l);
        assert!(!s.contains("method=") && !s.contains("path="), "{s}");
        assert!(s.contains(" pick=affinity "), "{s}");
        assert!(json_of(&l).get("method").is_none());
    }
}
