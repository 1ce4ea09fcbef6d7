//! The sticky cookie: an opaque, HMAC-signed, versioned token naming a (service, backend) pair.
//!
//! Layout of version 2, written since key rotation (34 bytes, then base64url without padding: 46
//! characters):
//!
//! | bytes  | field   | meaning                                                                     |
//! |--------|---------|-----------------------------------------------------------------------------|
//! | 0      | version | `2`                                                                         |
//! | 1      | key id  | which key of the ring signed it: `HMAC(secret, label)[0]`, not secret       |
//! | 2..6   | issued  | when the session was pinned, seconds since the UNIX epoch, big-endian        |
//! | 6..10  | seen    | when the cookie was last (re-)issued for it, same unit ([`Lifetimes`])      |
//! | 10..18 | tag     | `HMAC(tag key, service id ‖ 0 ‖ backend id)[..8]`: the backend, keyed       |
//! | 18..34 | mac     | `HMAC-SHA256(mac key, bytes 0..18)[..16]`, checked in constant time         |
//!
//! Version 1 (29 bytes, 39 characters: version, issued, tag, mac; no key id) is still read, with
//! every key of the ring, so sessions pinned before an upgrade keep their backend.
//!
//! The cookie holds no address, port, host name or URL in any encoding: the tag is a keyed digest of
//! identities (task id or backend name), so without the key it cannot even be linked to a backend
//! name, and it does not change when a backend's address does. Every key derives from one secret
//! (`--cookie-key-file`), so every sticky process with the same secrets reads every other's cookies.
//!
//! **Key rotation** ([`Keys::from_secrets`], newest first): the newest key signs, every key of the
//! ring verifies, and a cookie verified with an older key is re-issued with the newest
//! ([`Pin::key`] > 0). A tag is per key, so the routing table keeps each backend's tag under every
//! key of the ring (see `state::table`). Anything that does not verify is a [`Fault`]; the proxy
//! treats it exactly like a missing cookie.

use std::fmt::Write as _;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::model::{BackendId, CookieSpec, SameSite, ServiceId};

type HmacSha256 = Hmac<Sha256>;

/// The format version written into byte 0.
pub const VERSION: u8 = 2;
const RAW_LEN: usize = 34;
const SIGNED_LEN: usize = 18;
/// Length of an encoded cookie value, in characters, as written. Values of another length than
/// this or [`V1_ENCODED_LEN`] are rejected unread.
pub const ENCODED_LEN: usize = 46;
/// Version 1, still read.
const V1_VERSION: u8 = 1;
const V1_RAW_LEN: usize = 29;
const V1_SIGNED_LEN: usize = 13;
/// Length of a version-1 value, in characters.
pub const V1_ENCODED_LEN: usize = 39;
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Most keys in a ring: the newest and the ones still accepted during rotations.
pub const MAX_KEYS: usize = 8;

/// A backend's name inside cookies: a keyed 64-bit digest of (service id, backend id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag(pub u64);

/// Why a cookie value was not accepted. Every variant means "treat as absent".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Wrong length or not base64url.
    #[error("cookie is not a well-formed sticky cookie")]
    Malformed,
    /// A version this build does not read.
    #[error("cookie has unknown version {version}")]
    Version {
        /// Byte 0 of the value.
        version: u8,
    },
    /// The MAC does not match: forged, tampered, or signed with a key not in the ring.
    #[error("cookie signature does not verify")]
    Signature,
    /// Older than the service's Max-Age.
    #[error("cookie expired")]
    Expired,
    /// Not seen (re-issued) for longer than the service's idle timeout.
    #[error("session idle for longer than the idle timeout")]
    Idle,
    /// The session is older than the service's absolute timeout.
    #[error("session older than the absolute timeout")]
    Lifetime,
}

/// A service's server-side session lifetimes, in seconds, checked against the times the signed
/// cookie carries, so every instance gives the same answer with no shared state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetimes {
    /// `Max-Age`: the browser drops the cookie this long after its last `Set-Cookie`; sticky too.
    pub max_age: Option<u32>,
    /// Idle timeout: a session not seen for this long is re-balanced.
    pub idle: Option<u32>,
    /// Absolute timeout: a session older than this (since its first pin) is re-balanced.
    pub absolute: Option<u32>,
}

impl Lifetimes {
    /// Whether any lifetime is set (else the clock need not be read).
    #[must_use]
    pub fn any(&self) -> bool {
        self.max_age.is_some() || self.idle.is_some() || self.absolute.is_some()
    }

    /// Whether a verified cookie is still within its lifetimes at `now`: the absolute timeout
    /// counts from the first pin (`issued`), Max-Age and the idle timeout from the last re-issue
    /// (`seen`). The edges are inside: exactly T old is still valid.
    ///
    /// # Errors
    /// [`Fault::Lifetime`], [`Fault::Expired`] or [`Fault::Idle`], checked in that order.
    pub fn check(&self, pin: &Pin, now: u32) -> Result<(), Fault> {
        let since = |t: u32| now.saturating_sub(t);
        if self.absolute.is_some_and(|t| since(pin.issued) > t) {
            return Err(Fault::Lifetime);
        }
        if self.max_age.is_some_and(|t| since(pin.seen) > t) {
            return Err(Fault::Expired);
        }
        if self.idle.is_some_and(|t| since(pin.seen) > t) {
            return Err(Fault::Idle);
        }
        Ok(())
    }

    /// Whether a valid cookie last re-issued at `seen` should be re-issued now (same backend, same
    /// first-pin time, `seen` now): once half of Max-Age or of the idle timeout has passed, so an
    /// active session expires neither in the browser nor on the server.
    #[must_use]
    pub fn needs_refresh(&self, seen: u32, now: u32) -> bool {
        let since = now.saturating_sub(seen);
        self.max_age.is_some_and(|t| since > t / 2) || self.idle.is_some_and(|t| since > t / 2)
    }
}

/// Errors building keys.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The secret is too short to sign anything.
    #[error("cookie key is {len} bytes long; at least {MIN_SECRET_LEN} are needed")]
    ShortSecret {
        /// Length of the given secret.
        len: usize,
    },
    /// No secret, or more than [`MAX_KEYS`].
    #[error("{count} cookie keys given; between 1 and {MAX_KEYS} are accepted (newest first)")]
    KeyCount {
        /// How many were given.
        count: usize,
    },
    /// The same secret twice in the ring.
    #[error("cookie key {index} repeats an earlier one")]
    Repeated {
        /// Its position (0: newest).
        index: usize,
    },
}

/// A verified cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The backend it names, under the key that verified it.
    pub tag: Tag,
    /// When the session was pinned, seconds since the UNIX epoch.
    pub issued: u32,
    /// When the cookie was last (re-)issued, same unit (version 1: `issued`).
    pub seen: u32,
    /// Which key of the ring verified it: 0 the newest; more means "re-issue with the newest".
    pub key: usize,
}

/// The keys derived from one secret.
#[derive(Clone)]
struct KeySet {
    id: u8,
    mac: HmacSha256,
    tag: HmacSha256,
    name: HmacSha256,
}

/// The key ring derived from the secrets, newest first; cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct Keys {
    ring: std::sync::Arc<[KeySet]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} in the ring)", self.ring.len())
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn derive(secret: &[u8], label: &[u8]) -> HmacSha256 {
    let mut m = keyed(secret);
    m.update(label);
    keyed(&m.finalize().into_bytes())
}

impl KeySet {
    fn new(secret: &[u8]) -> Result<Self, CookieError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(CookieError::ShortSecret { len: secret.len() });
        }
        let mut id = keyed(secret);
        id.update(b"sticky/v2/key-id");
        Ok(Self {
            id: id.finalize().into_bytes()[0],
            // the labels say v1: the derivations are the same in both formats, so a secret's tags
            // and names do not change with the cookie's version
            mac: derive(secret, b"sticky/v1/cookie-mac"),
            tag: derive(secret, b"sticky/v1/backend-tag"),
            name: derive(secret, b"sticky/v1/backend-name"),
        })
    }

    fn tag(&self, service: &ServiceId, backend: &BackendId) -> Tag {
        let mut m = self.tag.clone();
        m.update(service.0.as_bytes());
        m.update(&[0]);
        m.update(backend.0.as_bytes());
        let out = m.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        Tag(u64::from_be_bytes(first))
    }
}

impl Keys {
    /// Derives the keys from a secret (the content of `--cookie-key-file`).
    ///
    /// # Errors
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    pub fn from_secret(secret: &[u8]) -> Result<Self, CookieError> {
        Self::from_secrets(&[secret])
    }

    /// A ring from several secrets, newest first: the first signs, all verify.
    ///
    /// # Errors
    /// A secret is too short, repeats an earlier one, or there are none or more than [`MAX_KEYS`].
    pub fn from_secrets(secrets: &[&[u8]]) -> Result<Self, CookieError> {
        if secrets.is_empty() || secrets.len() > MAX_KEYS {
            return Err(CookieError::KeyCount { count: secrets.len() });
        }
        for (i, s) in secrets.iter().enumerate() {
            if secrets[..i].contains(s) {
                return Err(CookieError::Repeated { index: i });
            }
        }
        let ring = secrets.iter().map(|s| KeySet::new(s)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ring: ring.into() })
    }

    /// Keys from 32 random bytes: cookies then survive neither a restart nor a second instance.
    #[must_use]
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::from_secret(&secret).unwrap_or_else(|_| unreachable!("32 bytes is long enough"))
    }

    /// How many keys the ring has (at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring has one key only (never empty).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The cookie tag of a backend of a service, under the newest key (the one that signs).
    #[must_use]
    pub fn tag(&self, service: &ServiceId, backend: &BackendId) -> Tag {
        self.ring[0].tag(service, backend)
    }

    /// The backend's tags under the older keys of the ring (index `k - 1` for key `k`).
    #[must_use]
    pub fn older_tags(&self, service: &ServiceId, backend: &BackendId) -> Box<[Tag]> {
        self.ring[1..].iter().map(|k| k.tag(service, backend)).collect()
    }

    /// A stable name for a backend the user did not name, which does not reveal `seed` (its address).
    ///
    /// Keyed (with the newest key), so the name cannot be reversed by hashing candidate addresses;
    /// stable for a given secret. Rotating the newest key renames such backends: name them
    /// (`NAME=URL`) to keep sessions through a rotation.
    #[must_use]
    pub fn derive_name(&self, seed: &str) -> String {
        let mut m = self.ring[0].name.clone();
        m.update(seed.as_bytes());
        let out = m.finalize().into_bytes();
        let mut name = String::with_capacity(12);
        name.push_str("b-");
        for b in &out[..5] {
            name.push(char::from(HEX[usize::from(b >> 4)]));
            name.push(char::from(HEX[usize::from(b & 15)]));
        }
        name
    }

    /// Encodes and signs a new session's cookie value naming `tag`, issued (and seen) at `issued`
    /// (seconds since the UNIX epoch).
    #[must_use]
    pub fn encode(&self, tag: Tag, issued: u32) -> String {
        let mut out = [0u8; ENCODED_LEN];
        self.encode_into(tag, issued, issued, &mut out);
        // base64url is ASCII
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A cookie value into a caller's buffer, without allocating; signed with the newest key:
    /// `issued` the session's first pin, `seen` this (re-)issue.
    pub fn encode_into(&self, tag: Tag, issued: u32, seen: u32, out: &mut [u8; ENCODED_LEN]) {
        let key = &self.ring[0];
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1] = key.id;
        raw[2..6].copy_from_slice(&issued.to_be_bytes());
        raw[6..10].copy_from_slice(&seen.to_be_bytes());
        raw[10..18].copy_from_slice(&tag.0.to_be_bytes());
        let mut m = key.mac.clone();
        m.update(&raw[..SIGNED_LEN]);
        raw[SIGNED_LEN..].copy_from_slice(&m.finalize().into_bytes()[..RAW_LEN - SIGNED_LEN]);
        // 34 bytes always encode to exactly 46 characters, so this cannot fail
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, out);
    }

    /// Verifies a cookie value (version 2, or version 1 with any key of the ring). `max_age`
    /// (seconds) makes cookies issued longer ago than it [`Fault::Expired`].
    ///
    /// Allocation-free; the MAC is compared in constant time.
    ///
    /// # Errors
    /// Any [`Fault`]: the caller treats the cookie as absent.
    pub fn decode(&self, value: &[u8], now: u32, max_age: Option<u32>) -> Result<Pin, Fault> {
        self.decode_within(value, now, &Lifetimes { max_age, ..Lifetimes::default() })
    }

    /// [`Keys::decode`] with every lifetime of the service ([`Lifetimes::check`]).
    ///
    /// # Errors
    /// Any [`Fault`]: the caller treats the cookie as absent (and re-pins for its reason).
    pub fn decode_within(&self, value: &[u8], now: u32, lifetimes: &Lifetimes) -> Result<Pin, Fault> {
        let pin = match value.len() {
            ENCODED_LEN => self.decode_v2(value)?,
            V1_ENCODED_LEN => self.decode_v1(value)?,
            _ => return Err(Fault::Malformed),
        };
        lifetimes.check(&pin, now)?;
        Ok(pin)
    }

    fn decode_v2(&self, value: &[u8]) -> Result<Pin, Fault> {
        let mut raw = [0u8; RAW_LEN + 3];
        let n = URL_SAFE_NO_PAD.decode_slice(value, &mut raw).map_err(|_| Fault::Malformed)?;
        if n != RAW_LEN {
            return Err(Fault::Malformed);
        }
        // the key id only narrows which keys to try; the MAC decides
        let key = self
            .ring
            .iter()
            .enumerate()
            .filter(|(_, k)| k.id == raw[1])
            .find(|(_, k)| {
                let mut m = k.mac.clone();
                m.update(&raw[..SIGNED_LEN]);
                m.verify_truncated_left(&raw[SIGNED_LEN..RAW_LEN]).is_ok()
            })
            .map(|(i, _)| i)
            .ok_or(Fault::Signature)?;
        // The version is signed too: check it after the MAC, so nobody learns anything from unsigned bytes.
        if raw[0] != VERSION {
            return Err(Fault::Version { version: raw[0] });
        }
        let issued = u32::from_be_bytes([raw[2], raw[3], raw[4], raw[5]]);
        let seen = u32::from_be_bytes([raw[6], raw[7], raw[8], raw[9]]);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&raw[10..18]);
        Ok(Pin { tag: Tag(u64::from_be_bytes(tag)), issued, seen, key })
    }

    fn decode_v1(&self, value: &[u8]) -> Result<Pin, Fault> {
        let mut raw = [0u8; V1_RAW_LEN + 3];
        let n = URL_SAFE_NO_PAD.decode_slice(value, &mut raw).map_err(|_| Fault::Malformed)?;
        if n != V1_RAW_LEN {
            return Err(Fault::Malformed);
        }
        let key = (0..self.ring.len())
            .find(|&i| {
                let mut m = self.ring[i].mac.clone();
                m.update(&raw[..V1_SIGNED_LEN]);
                m.verify_truncated_left(&raw[V1_SIGNED_LEN..V1_RAW_LEN]).is_ok()
            })
            .ok_or(Fault::Signature)?;
        if raw[0] != V1_VERSION {
            return Err(Fault::Version { version: raw[0] });
        }
        let issued = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&raw[5..13]);
        Ok(Pin { tag: Tag(u64::from_be_bytes(tag)), issued, seen: issued, key })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The backend address in a Traefik v1/v2 sticky cookie value: `http://10.0.0.5:8000` (Traefik writes
/// the server URL as is; a client or proxy may have percent-encoded it). `None` for anything else.
///
/// The proxy honours such a value only for services that came from Traefik labels, and only if it
/// names one of the service's current backends (see `proxy::pin::answered`); it then answers with sticky's
/// own cookie, so the address-bearing value is used once per client.
#[must_use]
pub fn legacy_traefik_addr(value: &[u8]) -> Option<std::net::SocketAddr> {
    // an URL of an IPv6 backend is at most ~60 characters; refuse long values unread
    if value.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim_matches('"');
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        decoded.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3)?;
        decoded.push(char::from(u8::from_str_radix(hex, 16).ok()?));
        rest = &rest[i + 3..];
    }
    decoded.push_str(rest);
    let authority = decoded.strip_prefix("http://")?.trim_end_matches('/');
    authority.parse().ok()
}

/// The `Set-Cookie` attributes after `name=value`, e.g. `; Path=/; HttpOnly`, for a connection over
/// TLS (`tls`: `Secure` unless the spec turns it off) or plain HTTP (`Secure` only if the spec asks).
#[must_use]
pub fn attributes(spec: &CookieSpec, tls: bool) -> String {
    let mut s = format!("; Path={}", spec.path);
    if let Some(domain) = &spec.domain {
        s.push_str("; Domain=");
        s.push_str(domain);
    }
    if let Some(age) = spec.max_age {
        let _ = write!(s, "; Max-Age={}", age.as_secs());
    }
    let secure = spec.secure.unwrap_or(tls);
    if secure {
        s.push_str("; Secure");
    }
    // CHIPS: browsers drop a Partitioned cookie without Secure, so on plain HTTP (secure unset) it is
    // left out rather than losing the cookie
    if spec.partitioned && secure {
        s.push_str("; Partitioned");
    }
    if spec.http_only {
        s.push_str("; HttpOnly");
    }
    match spec.same_site {
        Some(SameSite::Lax) => s.push_str("; SameSite=Lax"),
        Some(SameSite::Strict) => s.push_str("; SameSite=Strict"),
        Some(SameSite::None) => s.push_str("; SameSite=None"),
        None => {}
    }
    for extra in &spec.extra {
        s.push_str("; ");
        s.push_str(extra.trim());
    }
    s
}

/// Iterates the `name=value` pairs of a `Cookie` header value, trimmed, in order.
pub fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
    })
}

/// The `Cookie` header value without the cookies named `name`; `None` if nothing else remains.
#[must_use]
pub fn without(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for pair in header.split(|&b| b == b';') {
        let trimmed = pair.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let key = trimmed.iter().position(|&b| b == b'=').map_or(trimmed, |eq| trimmed[..eq].trim_ascii());
        if key == name {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests;
