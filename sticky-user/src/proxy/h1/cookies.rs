//! Cookie names in field values: sticky's cookie removed from a `Cookie` value straight into the
//! output (the rule of [`crate::cookie::without`], without its allocation; a property test holds the
//! two equal), and the cookie name a `Set-Cookie` value sets.

use bytes::BufMut;

use super::syntax;

/// The pairs of a Cookie value as `cookie::without` sees them: trimmed, non-empty, with their key
/// (the part before `=`, trimmed, or the whole pair without one).
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|&b| b == b';').map(<[u8]>::trim_ascii).filter(|p| !p.is_empty()).map(|pair| {
        let key = pair.iter().position(|&b| b == b'=').map_or(pair, |eq| pair[..eq].trim_ascii());
        (key, pair)
    })
}

/// Whether a Cookie value holds a cookie named `name` (exact bytes: cookie names are case-sensitive).
#[must_use]
pub fn holds(value: &[u8], name: &[u8]) -> bool {
    pairs(value).any(|(key, _)| key == name)
}

/// Writes `Cookie: <value without name>\r\n`, or nothing if no other cookie remains. Returns whether
/// a line was written.
pub fn write_without(value: &[u8], name: &[u8], out: &mut impl BufMut) -> bool {
    let mut kept = pairs(value).filter(|(key, _)| *key != name).map(|(_, pair)| pair).peekable();
    if kept.peek().is_none() {
        return false;
    }
    out.put_slice(b"Cookie: ");
    let mut first = true;
    for pair in kept {
        if !first {
            out.put_slice(b"; ");
        }
        out.put_slice(pair);
        first = false;
    }
    out.put_slice(b"\r\n");
    true
}

/// The name a `Set-Cookie` value sets (RFC 6265 §5.2: up to the first `=`, whitespace trimmed); `None`
/// without `=`, which a browser ignores.
#[must_use]
pub fn set_cookie_name(value: &[u8]) -> Option<&[u8]> {
    let pair = &value[..value.iter().position(|&b| b == b';').unwrap_or(value.len())];
    pair.iter().position(|&b| b == b'=').map(|eq| syntax::trim_ows(&pair[..eq]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn without(value: &[u8], name: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        write_without(value, name, &mut out).then(|| {
            let line = out.strip_prefix(b"Cookie: ").expect("the line must start with the field name");
            line.strip_suffix(b"\r\n").expect("the line must end with CRLF").to_vec()
        })
    }

    #[test]
    fn sticky_cookie_is_removed_and_the_joins_fixed() {
        assert_eq!(without(b"a=1; sticky=x; b=2", b"sticky"), Some(b"a=1; b=2".to_vec()));
        assert_eq!(without(b"sticky=x;a=1;;b=2 ", b"sticky"), Some(b"a=1; b=2".to_vec()));
        assert_eq!(without(b"sticky=x", b"sticky"), None);
        assert_eq!(without(b" sticky = x ; sticky=y", b"sticky"), None);
        assert_eq!(without(b"Sticky=x", b"sticky"), Some(b"Sticky=x".to_vec()), "names are case-sensitive");
        assert!(holds(b"a=1; sticky=x", b"sticky") && !holds(b"a=1; stickyx=1", b"sticky"));
    }

    #[test]
    fn set_cookie_names_are_read_up_to_the_first_equals() {
        assert_eq!(set_cookie_name(b"sticky=abc; Path=/"), Some(&b"sticky"[..]));
        assert_eq!(set_cookie_name(b" sticky =abc"), Some(&b"sticky"[..]));
        assert_eq!(set_cookie_name(b"=abc"), Some(&b""[..]));
        assert_eq!(set_cookie_name(b"noequals; Path=/"), None);
        assert_eq!(set_cookie_name(b"a=b=c"), Some(&b"a"[..]));
    }

    proptest! {
        #[test]
        fn the_same_rule_as_cookie_without(
            pairs in proptest::collection::vec(
                ("(sticky|a|b|sticky2| sticky|)", proptest::option::of("[ =a-z0-9]{0,5}"), "[ ;]{0,3}"),
                0..6,
            ),
        ) {
            let pair = |(k, v, sep): &(String, Option<String>, String)| match v {
                Some(v) => format!("{k}={v}{sep};"),
                None => format!("{k}{sep};"),
            };
            let value: Vec<u8> = pairs.iter().flat_map(|p| pair(p).into_bytes()).collect();
            let value = value.trim_ascii();
            prop_assert_eq!(without(value, b"sticky"), crate::cookie::without(value, b"sticky"));
            // holding the name is exactly "removing it changes the value" (against a name that never matches)
            let changed = crate::cookie::without(value, b"sticky") != crate::cookie::without(value, b"\0");
            prop_assert_eq!(holds(value, b"sticky"), changed);
        }
    }
}
