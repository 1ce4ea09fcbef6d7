//! The byte-level grammar the codec shares: character classes (RFC 9110 §5.6, RFC 3986), comma-separated
//! lists, known field names, authorities and decimal numbers. Pure functions over bytes, no allocation.

/// Builds a 256-entry membership table at compile time (one load per byte on the hot path).
macro_rules! byte_table {
    ($($p:pat_param)|+) => {{
        let mut t = [false; 256];
        // every byte value, counted as a byte: no narrowing cast
        let mut b: u8 = 0;
        loop {
            t[b as usize] = matches!(b, $($p)|+);
            if b == u8::MAX {
                break t;
            }
            b += 1;
        }
    }};
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of methods, field names, codings and connection options.
static TCHAR: [bool; 256] = byte_table!(
    b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z'
);

/// Bytes of a field value (RFC 9110 §5.5): `field-vchar` (VCHAR, obs-text) and the SP/HTAB between them.
static FIELD_VALUE: [bool; 256] = byte_table!(b'\t' | b' '..=0x7e | 0x80..=0xff);

/// Bytes of the path of a request target. The same set as the `http` crate's parser (WHATWG's path
/// state), which is what sticky accepted before this codec: `"`, `{` and `}` pass for clients that send
/// JSON in paths unescaped. `#` is refused (see [`QUERY`]); bytes >= 0x80 must form UTF-8 (checked by
/// httparse).
static PATH: [bool; 256] = byte_table!(
    0x21 | 0x24..=0x3b | 0x3d | 0x40..=0x5f | 0x61..=0x7a | 0x7c | 0x7e | b'"' | b'{' | b'}' | 0x80..=0xff
);

/// Bytes of the query of a request target (after `?`), as the `http` crate accepts them. `#` is in
/// neither set: a fragment is not part of a request target (RFC 9112 §3.2), and HAProxy refuses it by
/// default (a proxy that cuts it off and a backend that does not see two different paths).
static QUERY: [bool; 256] = byte_table!(0x21 | 0x24..=0x3b | 0x3d | 0x3f..=0x7e | 0x80..=0xff);

/// Bytes of a `reg-name` host (RFC 3986 §3.2.2: unreserved, sub-delims, and `%` of pct-encoded).
static REG_NAME: [bool; 256] = byte_table!(
    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'('
        | b')' | b'*' | b'+' | b',' | b';' | b'=' | b'%'
);

/// Whether `b` is a `tchar`.
#[must_use]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether `s` is a non-empty `token`.
#[must_use]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Whether `b` may appear in a field value (`field-vchar`, SP, HTAB).
#[must_use]
pub fn is_field_value_byte(b: u8) -> bool {
    FIELD_VALUE[usize::from(b)]
}

/// Whether `s` is a valid field value (no CTL, no CR/LF/NUL, no DEL).
#[must_use]
pub fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|&b| is_field_value_byte(b))
}

/// Optional whitespace (RFC 9110 §5.6.3).
#[must_use]
pub fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing SP/HTAB.
#[must_use]
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// The elements of a comma-separated list field value (RFC 9110 §5.6.1), OWS-trimmed, in order. Empty
/// elements are yielded too: each caller decides whether they are an error.
pub fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Whether the list `value` holds `token` (case-insensitive, as connection options, codings and
/// upgrade protocols are).
#[must_use]
pub fn list_has(value: &[u8], token: &[u8]) -> bool {
    list(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// Whether `target` (path and optional query, without the leading part of an absolute-form target)
/// holds only bytes a request target may hold.
#[must_use]
pub fn is_path_and_query(target: &[u8]) -> bool {
    match target.iter().position(|&b| b == b'?') {
        Some(q) => {
            let (path, query) = target.split_at(q);
            path.iter().all(|&b| PATH[usize::from(b)]) && query.iter().skip(1).all(|&b| QUERY[usize::from(b)])
        }
        None => target.iter().all(|&b| PATH[usize::from(b)]),
    }
}

/// Whether `s` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in brackets
/// or a reg-name (with well-formed `%HH`), then an optional port of digits. No userinfo: `@` is refused,
/// as RFC 9110 §4.2.4 forbids it in http(s) URIs. An empty string is not an authority.
#[must_use]
pub fn is_authority(s: &[u8]) -> bool {
    authority_port(s).is_some()
}

/// The port of a valid authority: `Some(None)` without one, `Some(Some(b""))` for `host:`, `None` if
/// `s` is not an authority.
#[must_use]
pub fn authority_port(s: &[u8]) -> Option<Option<&[u8]>> {
    let port = if let Some(rest) = s.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let (literal, after) = rest.split_at(close);
        if literal.is_empty() || !literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        after.get(1..).unwrap_or_default()
    } else {
        let end = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        let (host, port) = s.split_at(end);
        if host.is_empty() || !host.iter().all(|&b| REG_NAME[usize::from(b)]) || !pct_encoded_ok(host) {
            return None;
        }
        port
    };
    match port.split_first() {
        None => Some(None),
        Some((b':', digits)) if digits.iter().all(u8::is_ascii_digit) => Some(Some(digits)),
        Some(_) => None,
    }
}

/// Every `%` of `s` is followed by two hex digits.
fn pct_encoded_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = s.get(i..).and_then(|rest| rest.iter().position(|&b| b == b'%')) {
        let at = i + p;
        match s.get(at + 1..at + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i = at + 3,
            _ => return false,
        }
    }
    true
}

/// `1*DIGIT` as a u64; `None` for anything else (sign, hex prefix, space, empty) or an overflow.
/// Not `str::parse`, which accepts a leading `+`.
#[must_use]
pub fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(
        0u64,
        |n, &b| {
            if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
        },
    )
}

/// The field names the codec acts on, classified once per field at parse time so that later steps
/// compare a byte, not a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection` (never standard, still sent by old clients).
    ProxyConnection,
    /// `TE`.
    Te,
    /// `Trailer`.
    Trailer,
    /// `Upgrade`.
    Upgrade,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// `Cookie`.
    Cookie,
    /// `Set-Cookie`.
    SetCookie,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// `Expect`.
    Expect,
    /// `Sec-WebSocket-Key`.
    SecWebSocketKey,
    /// `Sec-WebSocket-Accept`.
    SecWebSocketAccept,
    /// A name that reads as `Content-Length`, `Transfer-Encoding` or an `X-Forwarded-*` field once `_`
    /// is taken for `-`, as CGI-style servers do (`HTTP_X_FORWARDED_FOR`): never forwarded, so that a
    /// backend cannot see a second framing or a client-chosen address under sticky's own (nginx drops
    /// every name with `_` by default; sticky drops only these).
    Lookalike,
    /// Any other name: end to end unless `Connection` names it.
    Other,
}

impl Name {
    /// The class of a field name (ASCII case-insensitive).
    #[must_use]
    pub fn classify(name: &[u8]) -> Self {
        // length and first letter leave one candidate: a field costs one compare at most
        let (class, known): (Self, &[u8]) = match (name.len(), name.first().map(u8::to_ascii_lowercase)) {
            (2, Some(b't')) => (Self::Te, b"te"),
            (4, Some(b'h')) => (Self::Host, b"host"),
            (6, Some(b'c')) => (Self::Cookie, b"cookie"),
            (6, Some(b'e')) => (Self::Expect, b"expect"),
            (7, Some(b'u')) => (Self::Upgrade, b"upgrade"),
            (7, Some(b't')) => (Self::Trailer, b"trailer"),
            (9, Some(b'f')) => (Self::Forwarded, b"forwarded"),
            (10, Some(b'c')) => (Self::Connection, b"connection"),
            (10, Some(b'k')) => (Self::KeepAlive, b"keep-alive"),
            (10, Some(b's')) => (Self::SetCookie, b"set-cookie"),
            (14, Some(b'c')) => (Self::ContentLength, b"content-length"),
            (15, Some(b'x')) => (Self::XForwardedFor, b"x-forwarded-for"),
            (16, Some(b'p')) => (Self::ProxyConnection, b"proxy-connection"),
            (16, Some(b'x')) => (Self::XForwardedHost, b"x-forwarded-host"),
            (17, Some(b't')) => (Self::TransferEncoding, b"transfer-encoding"),
            (17, Some(b'x')) => (Self::XForwardedProto, b"x-forwarded-proto"),
            (17, Some(b's')) => (Self::SecWebSocketKey, b"sec-websocket-key"),
            (19, Some(b'p')) => (Self::ProxyAuthorization, b"proxy-authorization"),
            (20, Some(b's')) => (Self::SecWebSocketAccept, b"sec-websocket-accept"),
            _ => (Self::Other, b""),
        };
        if class != Self::Other && name.eq_ignore_ascii_case(known) {
            class
        } else if name.contains(&b'_') && Self::reads_as_managed(name) {
            Self::Lookalike
        } else {
            Self::Other
        }
    }

    /// Whether `name` (which has a `_`) equals a framing or forwarding name with `_` read as `-`.
    fn reads_as_managed(name: &[u8]) -> bool {
        const MANAGED: [&[u8]; 5] =
            [b"content-length", b"transfer-encoding", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"];
        let same = |a: u8, b: u8| a.eq_ignore_ascii_case(&b) || (a == b'_' && b == b'-');
        MANAGED.iter().any(|m| m.len() == name.len() && name.iter().zip(m.iter()).all(|(&a, &b)| same(a, b)))
    }

    /// Hop-by-hop by definition (RFC 9110 §7.6.1, plus `Proxy-Connection`, `Proxy-Authorization`): never
    /// forwarded as received. `Upgrade` and `Connection` of a relayed WebSocket handshake are written
    /// anew by the rewrite.
    #[must_use]
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Self::Connection
                | Self::KeepAlive
                | Self::ProxyConnection
                | Self::Te
                | Self::Trailer
                | Self::Upgrade
                | Self::ProxyAuthorization
        )
    }

    /// Fields a `Connection` option cannot remove: framing and routing. A client that lists
    /// `Content-Length` in `Connection` would otherwise have sticky check one framing and the backend
    /// see another (or no Host at all).
    #[must_use]
    pub fn is_protected(self) -> bool {
        matches!(self, Self::Host | Self::ContentLength | Self::TransferEncoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_case_insensitively() {
        assert_eq!(Name::classify(b"HoSt"), Name::Host);
        assert_eq!(Name::classify(b"transfer-encoding"), Name::TransferEncoding);
        assert_eq!(Name::classify(b"Transfer-Encodinx"), Name::Other);
        assert_eq!(Name::classify(b"x-forwarded-for"), Name::XForwardedFor);
        assert_eq!(Name::classify(b"SEC-WEBSOCKET-ACCEPT"), Name::SecWebSocketAccept);
        assert_eq!(Name::classify(b"Hosts"), Name::Other);
        assert_eq!(Name::classify(b""), Name::Other);
        assert_eq!(Name::classify(b"Transfer_Encoding"), Name::Lookalike);
        assert_eq!(Name::classify(b"X_Forwarded_For"), Name::Lookalike);
        assert_eq!(Name::classify(b"content_length"), Name::Lookalike);
        assert_eq!(Name::classify(b"X_Request_Id"), Name::Other);
        let every = [
            "te",
            "host",
            "cookie",
            "expect",
            "upgrade",
            "trailer",
            "forwarded",
            "connection",
            "keep-alive",
            "set-cookie",
            "content-length",
            "x-forwarded-for",
            "proxy-connection",
            "x-forwarded-host",
            "transfer-encoding",
            "x-forwarded-proto",
            "sec-websocket-key",
            "proxy-authorization",
            "sec-websocket-accept",
        ];
        for name in every {
            let class = Name::classify(name.to_ascii_uppercase().as_bytes());
            assert!(!matches!(class, Name::Other | Name::Lookalike), "{name} must be known");
            // a name of the same length and first letter is not mistaken for it
            let mut other = name.as_bytes().to_vec();
            other[1] = b'#';
            assert_eq!(Name::classify(&other), Name::Other, "{name} must be compared whole");
        }
    }

    #[test]
    fn lists_are_split_and_trimmed_keeping_empty_elements() {
        let v: Vec<&[u8]> = list(b" a ,\tb,, c\t").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"", b"c"]);
        assert!(list_has(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!list_has(b"keep-alive, upgrades", b"upgrade"));
    }

    #[test]
    fn decimals_are_digits_only() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"00042"), Some(42));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None, "an overflow must be refused");
        for bad in [&b""[..], b"+5", b"-5", b"0x5", b"5 ", b" 5", b"5a", b"1_000"] {
            assert_eq!(decimal(bad), None, "{:?} must not be a decimal", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn authorities_are_host_and_optional_port() {
        for good in
            [&b"example.com"[..], b"example.com:8080", b"[::1]:80", b"[2001:db8::1]", b"a_b.example", b"h:", b"x%41y"]
        {
            assert!(is_authority(good), "{} must be an authority", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"user@example.com",
            b"example.com:80a",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"exa mple",
            b"a\"b",
            b"x%4",
            b"x%zz",
            b":80",
            b"a/b",
        ] {
            assert!(!is_authority(bad), "{} must not be an authority", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ports_are_found_after_ip_literals() {
        assert_eq!(authority_port(b"[::1]:443"), Some(Some(&b"443"[..])));
        assert_eq!(authority_port(b"[::1]"), Some(None));
        assert_eq!(authority_port(b"a:"), Some(Some(&b""[..])));
        assert_eq!(authority_port(b"a@b:1"), None);
    }

    #[test]
    fn targets_use_the_http_crate_byte_sets_without_fragments() {
        assert!(is_path_and_query(b"/a/b?c=d&e=%20"));
        assert!(is_path_and_query(b"/{\"json\":1}"));
        assert!(is_path_and_query(b"/?q=`x`"));
        assert!(!is_path_and_query(b"/a#frag"));
        assert!(!is_path_and_query(b"/a b"));
        assert!(!is_path_and_query(b"/<script>"));
        assert!(!is_path_and_query(b"/?q=\"x\""), "a quote is accepted in the path only");
    }

    #[test]
    fn ows_is_trimmed_on_both_sides() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert!(is_token(b"chunked") && !is_token(b"chun ked") && !is_token(b""));
        assert!(is_field_value(b"a\tb c\x80") && !is_field_value(b"a\0b") && !is_field_value(b"a\x7f"));
    }
}
