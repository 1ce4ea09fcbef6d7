//! The fields of an HTTP/2 exchange rewritten as the HTTP/1 engine rewrites them, with its rules
//! ([`Name::classify`], [`forwarded::write_element`], [`crate::cookie::without`]): towards the
//! backend, hop-by-hop and look-alike fields dropped, the `cookie` fields joined into one (RFC 9113
//! §8.2.3) without sticky's cookie, `Host` from `:authority`, the forwarding fields appended; towards
//! the client, connection-specific fields dropped (RFC 9113 §8.2.2), a backend's own sticky cookie
//! dropped, sticky's `Set-Cookie` and HSTS added.

use http::{
    HeaderMap, HeaderValue,
    header::{COOKIE, FORWARDED, HOST, SET_COOKIE},
};

use crate::proxy::h1::{
    ClientAddr, PriorHops, Proto,
    cookies::set_cookie_name,
    forwarded::{self},
    syntax::Name,
};

/// What the rewrite towards the backend needs beyond the fields.
#[derive(Clone, Copy, Debug)]
pub struct ToBackend<'a> {
    /// The client (the peer of the connection).
    pub client: &'a ClientAddr,
    /// The scheme the client used.
    pub proto: Proto,
    /// Whether earlier hops' forwarding fields are kept.
    pub prior: PriorHops,
    /// Sticky's cookie name, removed from the cookies; `None` for a service without a cookie.
    pub cookie: Option<&'a [u8]>,
    /// The request's authority (`:authority`, else `Host`), if any.
    pub authority: Option<&'a str>,
    /// The backend speaks h2c: `te: trailers` passes (gRPC needs it) and `Host` is not written
    /// (`:authority` carries it).
    pub h2c: bool,
}

/// Rewrites a client's request fields for the backend, in place.
pub fn to_backend(headers: &mut HeaderMap, rw: &ToBackend<'_>) {
    let mut xff: Vec<u8> = Vec::new();
    let mut cookies: Vec<u8> = Vec::new();
    let mut drop: Vec<http::HeaderName> = Vec::new();
    for (name, value) in &*headers {
        match Name::classify(name.as_str().as_bytes()) {
            Name::Te if rw.h2c && value.as_bytes().eq_ignore_ascii_case(b"trailers") => {}
            Name::XForwardedFor => {
                if rw.prior == PriorHops::Keep && !value.is_empty() {
                    xff.extend_from_slice(value.as_bytes());
                    xff.extend_from_slice(b", ");
                }
                drop.push(name.clone());
            }
            Name::Cookie => {
                if !cookies.is_empty() {
                    cookies.extend_from_slice(b"; ");
                }
                cookies.extend_from_slice(value.as_bytes());
                drop.push(name.clone());
            }
            Name::Forwarded if rw.prior == PriorHops::Keep => {}
            Name::Forwarded | Name::XForwardedProto | Name::XForwardedHost | Name::Host | Name::Lookalike => {
                drop.push(name.clone());
            }
            k if k.is_hop_by_hop() => drop.push(name.clone()),
            _ => {}
        }
    }
    for name in drop {
        headers.remove(name);
    }
    if !cookies.is_empty() {
        let kept = match rw.cookie {
            Some(name) => crate::cookie::without(&cookies, name),
            None => Some(cookies),
        };
        if let Some(v) = kept.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
            headers.insert(COOKIE, v);
        }
    }
    let host = rw.authority.filter(|a| !a.is_empty());
    if !rw.h2c
        && let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(HOST, h);
    }
    xff.extend_from_slice(&rw.client.ip());
    insert(headers, "x-forwarded-for", &xff);
    insert(headers, "x-forwarded-proto", rw.proto.as_bytes());
    if let Some(h) = host {
        insert(headers, "x-forwarded-host", h.as_bytes());
    }
    let mut element = Vec::with_capacity(64);
    forwarded::write_element(rw.client, host.map(str::as_bytes), rw.proto, &mut element);
    if let Ok(v) = HeaderValue::from_bytes(&element) {
        headers.append(FORWARDED, v);
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(name, v);
    }
}

/// What the rewrite towards the client adds.
#[derive(Clone, Copy, Debug)]
pub struct ToClient<'a> {
    /// Sticky's cookie name: a backend's `Set-Cookie` of that name is dropped.
    pub cookie: Option<&'a [u8]>,
    /// Sticky's `Set-Cookie` value (`name=value; attributes`), if the answer sets one.
    pub set_cookie: Option<&'a [u8]>,
    /// The `Strict-Transport-Security` field line (with its CRLF), over TLS.
    pub hsts: Option<&'a [u8]>,
}

/// Rewrites a backend's response fields for an HTTP/2 client, in place; returns how many of the
/// backend's `Set-Cookie` fields were dropped (they named sticky's cookie).
pub fn to_client(headers: &mut HeaderMap, rw: &ToClient<'_>) -> u32 {
    // the fields an HTTP/1.1 `Connection` names are hop-by-hop too (RFC 9110 §7.6.1)
    let mut drop: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|token| http::HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect();
    for (name, _) in &*headers {
        let kind = Name::classify(name.as_str().as_bytes());
        // RFC 9113 §8.2.2: no connection-specific field in HTTP/2, framing included
        if kind.is_hop_by_hop() || kind == Name::TransferEncoding {
            drop.push(name.clone());
        }
    }
    for name in drop {
        headers.remove(name);
    }
    let mut dropped = 0;
    if let Some(name) = rw.cookie
        && headers.get_all(SET_COOKIE).iter().any(|v| set_cookie_name(v.as_bytes()) == Some(name))
    {
        let kept: Vec<HeaderValue> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter(|v| set_cookie_name(v.as_bytes()) != Some(name))
            .cloned()
            .collect();
        let before = headers.get_all(SET_COOKIE).iter().count();
        dropped = u32::try_from(before - kept.len()).unwrap_or(u32::MAX);
        headers.remove(SET_COOKIE);
        for v in kept {
            headers.append(SET_COOKIE, v);
        }
    }
    if let Some(v) = rw.set_cookie.and_then(|c| HeaderValue::from_bytes(c).ok()) {
        headers.append(SET_COOKIE, v);
    }
    if let Some(line) = rw.hsts
        && let Some(value) = line.strip_prefix(b"Strict-Transport-Security: ")
        && let Ok(v) = HeaderValue::from_bytes(value.trim_ascii_end())
    {
        headers.insert(http::header::STRICT_TRANSPORT_SECURITY, v);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_backend_sees_the_http1_rewrite() {
        let client = ClientAddr::new([192, 0, 2, 7].into());
        let mut h = map(&[
            ("cookie", "sticky=x"),
            ("cookie", "b=1"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_for", "7.7.7.7"),
            ("te", "trailers"),
            ("forwarded", "for=6.6.6.6"),
            ("accept", "*/*"),
        ]);
        let rw = ToBackend {
            client: &client,
            proto: Proto::Https,
            prior: PriorHops::Keep,
            cookie: Some(b"sticky"),
            authority: Some("a.example"),
            h2c: false,
        };
        to_backend(&mut h, &rw);
        assert_eq!(h.get("cookie").map(HeaderValue::as_bytes), Some(&b"b=1"[..]));
        assert_eq!(h.get("host").map(HeaderValue::as_bytes), Some(&b"a.example"[..]));
        assert_eq!(h.get("x-forwarded-for").map(HeaderValue::as_bytes), Some(&b"6.6.6.6, 192.0.2.7"[..]));
        assert_eq!(h.get("x-forwarded-proto").map(HeaderValue::as_bytes), Some(&b"https"[..]));
        assert_eq!(h.get("x-forwarded-host").map(HeaderValue::as_bytes), Some(&b"a.example"[..]));
        let fwd: Vec<&[u8]> = h.get_all("forwarded").iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(fwd, [&b"for=6.6.6.6"[..], b"for=192.0.2.7;host=\"a.example\";proto=https"]);
        assert!(h.get("te").is_none() && h.get("x_forwarded_for").is_none() && h.get("accept").is_some());
    }

    #[test]
    fn an_h2c_backend_keeps_te_trailers_and_gets_no_host() {
        let client = ClientAddr::new([192, 0, 2, 7].into());
        let mut h = map(&[("te", "trailers"), ("cookie", "sticky=x")]);
        let rw = ToBackend {
            client: &client,
            proto: Proto::Http,
            prior: PriorHops::Keep,
            cookie: Some(b"sticky"),
            authority: Some("g"),
            h2c: true,
        };
        to_backend(&mut h, &rw);
        assert!(h.get("te").is_some() && h.get("host").is_none() && h.get("cookie").is_none());
    }

    #[test]
    fn the_client_gets_sticky_cookie_only_from_sticky() {
        let mut h = map(&[
            ("set-cookie", "sticky=forged"),
            ("set-cookie", "app=1"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
        ]);
        let rw = ToClient { cookie: Some(b"sticky"), set_cookie: Some(b"sticky=v; Path=/"), hsts: None };
        assert_eq!(to_client(&mut h, &rw), 1);
        let set: Vec<&[u8]> = h.get_all("set-cookie").iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(set, [&b"app=1"[..], b"sticky=v; Path=/"]);
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none() && h.get("x-hop").is_none());
    }
}
