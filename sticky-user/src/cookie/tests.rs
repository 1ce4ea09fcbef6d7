//! The cookie round-trips, resists tampering, expiry and other keys, and holds no address in any encoding.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use proptest::prelude::*;

use super::*;

fn keys() -> Keys {
    Keys::from_secret(b"0123456789abcdef0123456789abcdef").expect("a 32-byte secret must be accepted")
}

fn sid(s: &str) -> ServiceId {
    ServiceId(s.into())
}

fn bid(s: &str) -> BackendId {
    BackendId(s.into())
}

const NOW: u32 = 1_800_000_000;

#[test]
fn short_secret_is_refused() {
    assert!(matches!(Keys::from_secret(b"too short"), Err(CookieError::ShortSecret { len: 9 })));
}

#[test]
fn same_secret_reads_the_other_processes_cookies_other_secret_does_not() {
    let a = keys();
    let b = Keys::from_secret(b"0123456789abcdef0123456789abcdef").expect("valid secret");
    let tag = a.tag(&sid("web"), &bid("b1"));
    assert_eq!(tag, b.tag(&sid("web"), &bid("b1")), "tags must not depend on the process");
    let value = a.encode(tag, NOW);
    assert_eq!(b.decode(value.as_bytes(), NOW, None), Ok(Pin { tag, issued: NOW, seen: NOW, key: 0 }));
    let other = Keys::from_secret(b"another secret of 32 bytes......").expect("valid secret");
    assert_eq!(other.decode(value.as_bytes(), NOW, None), Err(Fault::Signature));
    assert_eq!(Keys::random().decode(value.as_bytes(), NOW, None), Err(Fault::Signature));
}

#[test]
fn tags_differ_per_service_and_backend() {
    let k = keys();
    let t = k.tag(&sid("web"), &bid("b1"));
    assert_ne!(t, k.tag(&sid("api"), &bid("b1")));
    assert_ne!(t, k.tag(&sid("web"), &bid("b2")));
    // the separator keeps ("ab","c") and ("a","bc") apart
    assert_ne!(k.tag(&sid("ab"), &bid("c")), k.tag(&sid("a"), &bid("bc")));
}

#[test]
fn expiry_and_refresh_follow_max_age() {
    let k = keys();
    let tag = k.tag(&sid("web"), &bid("b1"));
    let value = k.encode(tag, NOW);
    assert!(k.decode(value.as_bytes(), NOW + 100, Some(100)).is_ok());
    assert_eq!(k.decode(value.as_bytes(), NOW + 101, Some(100)), Err(Fault::Expired));
    assert!(k.decode(value.as_bytes(), NOW + 1_000_000, None).is_ok(), "session cookies have no server-side expiry");
    let max_age = Lifetimes { max_age: Some(100), ..Lifetimes::default() };
    assert!(!max_age.needs_refresh(NOW, NOW + 50));
    assert!(max_age.needs_refresh(NOW, NOW + 51));
    assert!(!Lifetimes::default().needs_refresh(NOW, NOW + 1_000_000));
}

/// A cookie first pinned at `issued` and re-issued at `seen`, as the proxy writes it on a refresh.
fn reissued(k: &Keys, issued: u32, seen: u32) -> (Tag, String) {
    let tag = k.tag(&sid("web"), &bid("b1"));
    let mut out = [0u8; ENCODED_LEN];
    k.encode_into(tag, issued, seen, &mut out);
    (tag, String::from_utf8(out.to_vec()).expect("ascii"))
}

#[test]
fn lifetimes_count_the_absolute_timeout_from_the_first_pin_and_the_rest_from_the_last_reissue() {
    let k = keys();
    let (tag, value) = reissued(&k, NOW, NOW + 500);
    let life = Lifetimes { max_age: Some(100), idle: Some(60), absolute: Some(1000) };
    let at = |now: u32| k.decode_within(value.as_bytes(), now, &life);
    assert_eq!(at(NOW + 560), Ok(Pin { tag, issued: NOW, seen: NOW + 500, key: 0 }), "the edge is inside");
    assert_eq!(at(NOW + 561), Err(Fault::Idle), "idle counts from the last re-issue");
    let no_idle = Lifetimes { idle: None, ..life };
    assert!(k.decode_within(value.as_bytes(), NOW + 600, &no_idle).is_ok());
    assert_eq!(
        k.decode_within(value.as_bytes(), NOW + 601, &no_idle),
        Err(Fault::Expired),
        "Max-Age from the last re-issue"
    );
    let absolute = Lifetimes { absolute: Some(1000), ..Lifetimes::default() };
    assert!(k.decode_within(value.as_bytes(), NOW + 1000, &absolute).is_ok());
    assert_eq!(
        k.decode_within(value.as_bytes(), NOW + 1001, &absolute),
        Err(Fault::Lifetime),
        "absolute from the first pin"
    );
    // refreshed at half of the shorter of Max-Age and idle
    assert!(!life.needs_refresh(NOW + 500, NOW + 530));
    assert!(life.needs_refresh(NOW + 500, NOW + 531));
    // a clock that went back never expires anything
    assert!(at(NOW).is_ok());
}

#[test]
fn unknown_version_is_refused_even_when_signed() {
    let k = keys();
    let mut raw = [0u8; SIGNED_LEN];
    raw[0] = 3;
    raw[1] = k.ring[0].id;
    let mut m = k.ring[0].mac.clone();
    m.update(&raw);
    let mut full = raw.to_vec();
    full.extend_from_slice(&m.finalize().into_bytes()[..16]);
    let value = URL_SAFE_NO_PAD.encode(&full);
    assert_eq!(k.decode(value.as_bytes(), NOW, None), Err(Fault::Version { version: 3 }));
}

/// A version-1 value as sticky wrote it before key rotation: version, issued, tag, MAC.
fn v1(k: &Keys, key: usize, tag: Tag, issued: u32) -> String {
    let mut raw = [0u8; V1_RAW_LEN];
    raw[0] = 1;
    raw[1..5].copy_from_slice(&issued.to_be_bytes());
    raw[5..13].copy_from_slice(&tag.0.to_be_bytes());
    let mut m = k.ring[key].mac.clone();
    m.update(&raw[..V1_SIGNED_LEN]);
    raw[V1_SIGNED_LEN..].copy_from_slice(&m.finalize().into_bytes()[..16]);
    URL_SAFE_NO_PAD.encode(raw)
}

#[test]
fn version_1_cookies_still_pin_with_any_key_of_the_ring() {
    let old = keys();
    let tag = old.tag(&sid("web"), &bid("b1"));
    let value = v1(&old, 0, tag, NOW);
    assert_eq!(value.len(), V1_ENCODED_LEN);
    assert_eq!(old.decode(value.as_bytes(), NOW, None), Ok(Pin { tag, issued: NOW, seen: NOW, key: 0 }));
    // after a rotation the old secret is the ring's second key
    let ring =
        Keys::from_secrets(&[b"the new secret, 32 bytes long...", b"0123456789abcdef0123456789abcdef"]).expect("ring");
    assert_eq!(ring.decode(value.as_bytes(), NOW, None), Ok(Pin { tag, issued: NOW, seen: NOW, key: 1 }));
    assert_eq!(ring.older_tags(&sid("web"), &bid("b1"))[0], tag, "the old key's tag is kept for lookups");
    assert_eq!(ring.decode(value.as_bytes(), NOW + 101, Some(100)), Err(Fault::Expired));
    assert_eq!(Keys::random().decode(value.as_bytes(), NOW, None), Err(Fault::Signature));
}

#[test]
fn a_ring_signs_with_the_newest_and_verifies_with_every_key() {
    let newest: &[u8] = b"the new secret, 32 bytes long...";
    let older: &[u8] = b"0123456789abcdef0123456789abcdef";
    let before = Keys::from_secret(older).expect("key");
    let ring = Keys::from_secrets(&[newest, older]).expect("ring");
    assert_eq!(ring.len(), 2);
    let (s, b) = (sid("web"), bid("b1"));
    // a cookie of the old instance: verified by the second key, flagged for re-issue
    let old_value = before.encode(before.tag(&s, &b), NOW);
    let pin = ring.decode(old_value.as_bytes(), NOW, None).expect("the old key still verifies");
    assert_eq!((pin.key, pin.tag), (1, ring.older_tags(&s, &b)[0]));
    // the ring's own cookies: newest key; the old instance cannot read them (it has not got the key)
    let new_value = ring.encode(ring.tag(&s, &b), NOW);
    assert_eq!(ring.decode(new_value.as_bytes(), NOW, None).map(|p| p.key), Ok(0));
    assert_eq!(before.decode(new_value.as_bytes(), NOW, None), Err(Fault::Signature));
    // an instance given the new key as an extra, older one (rolled out first) reads both
    let staged = Keys::from_secrets(&[older, newest]).expect("ring");
    assert_eq!(staged.decode(new_value.as_bytes(), NOW, None).map(|p| p.key), Ok(1));
    assert_eq!(staged.decode(old_value.as_bytes(), NOW, None).map(|p| p.key), Ok(0));
    // dropping the old key ends its cookies
    let after = Keys::from_secret(newest).expect("key");
    assert_eq!(after.decode(old_value.as_bytes(), NOW, None), Err(Fault::Signature));
}

#[test]
fn rings_refuse_short_repeated_too_many_and_no_keys() {
    let a: &[u8] = b"0123456789abcdef";
    assert!(matches!(Keys::from_secrets(&[]), Err(CookieError::KeyCount { count: 0 })));
    assert!(matches!(Keys::from_secrets(&[a; MAX_KEYS + 1]), Err(CookieError::KeyCount { count: 9 })));
    assert!(matches!(Keys::from_secrets(&[a, b"another-16-bytes", a]), Err(CookieError::Repeated { index: 2 })));
    assert!(matches!(Keys::from_secrets(&[a, b"short"]), Err(CookieError::ShortSecret { len: 5 })));
}

#[test]
fn tampering_with_the_key_id_or_the_times_is_rejected() {
    let ring =
        Keys::from_secrets(&[b"the new secret, 32 bytes long...", b"0123456789abcdef0123456789abcdef"]).expect("ring");
    let value = ring.encode(ring.tag(&sid("web"), &bid("b1")), NOW);
    let raw = URL_SAFE_NO_PAD.decode(&value).expect("own cookies decode");
    for pos in 1..10 {
        for flip in [1u8, 0x80, 0xff] {
            let mut t = raw.clone();
            t[pos] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(&t);
            assert_eq!(ring.decode(tampered.as_bytes(), NOW, None), Err(Fault::Signature), "byte {pos} ^ {flip}");
        }
    }
}

#[test]
fn every_single_character_change_is_rejected() {
    let k = keys();
    let value = k.encode(k.tag(&sid("web"), &bid("b1")), NOW).into_bytes();
    assert_eq!(value.len(), ENCODED_LEN);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.%";
    let mut tried = 0;
    for i in 0..value.len() {
        for &c in alphabet {
            if c == value[i] {
                continue;
            }
            let mut t = value.clone();
            t[i] = c;
            assert!(k.decode(&t, NOW, None).is_err(), "tampered at {i} with {:?} must be rejected", char::from(c));
            tried += 1;
        }
    }
    assert!(tried > ENCODED_LEN * 60);
}

#[test]
fn truncated_extended_and_empty_values_are_rejected() {
    let k = keys();
    let value = k.encode(k.tag(&sid("web"), &bid("b1")), NOW);
    for n in 0..value.len() {
        // a prefix as long as a version-1 value is read as one, and its MAC fails
        let expected = if n == V1_ENCODED_LEN { Fault::Signature } else { Fault::Malformed };
        assert_eq!(k.decode(&value.as_bytes()[..n], NOW, None), Err(expected), "prefix of {n} chars");
    }
    let long = format!("{value}A");
    assert_eq!(k.decode(long.as_bytes(), NOW, None), Err(Fault::Malformed));
    let huge = "A".repeat(10_000);
    assert_eq!(k.decode(huge.as_bytes(), NOW, None), Err(Fault::Malformed));
    // a Traefik v1 style cookie (an URL) is simply not ours
    assert_eq!(k.decode(b"http://10.0.0.5:8000", NOW, None), Err(Fault::Malformed));
}

#[test]
fn the_value_does_not_depend_on_the_backend_address() {
    // The cookie is a function of (secret, service id, backend id, time) only; an address cannot leak
    // into it because it is never an input. Two backends with the same identity at different
    // addresses get byte-identical cookies.
    let k = keys();
    let tag = k.tag(&sid("web"), &bid("task-x"));
    assert_eq!(k.encode(tag, NOW), k.encode(k.tag(&sid("web"), &bid("task-x")), NOW));
}

#[test]
fn derived_names_are_stable_short_and_keyed() {
    let k = keys();
    let n = k.derive_name("http://127.0.0.1:8001");
    assert_eq!(n, k.derive_name("http://127.0.0.1:8001"));
    assert_ne!(n, k.derive_name("http://127.0.0.1:8002"));
    assert_ne!(n, Keys::random().derive_name("http://127.0.0.1:8001"));
    assert_eq!(n.len(), 12);
    assert!(!n.contains("127") || !n.contains("8001"));
}

#[test]
fn attributes_render_every_option() {
    let spec = CookieSpec {
        name: "s".into(),
        path: "/app".into(),
        domain: Some("example.com".into()),
        secure: Some(true),
        http_only: true,
        same_site: Some(SameSite::Strict),
        max_age: Some(std::time::Duration::from_secs(3600)),
        ..CookieSpec::default()
    };
    assert_eq!(
        attributes(&spec, false),
        "; Path=/app; Domain=example.com; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
    );
    assert_eq!(attributes(&CookieSpec::default(), false), "; Path=/; HttpOnly");
    // on TLS, Secure by default; an explicit `secure = false` keeps it off
    assert_eq!(attributes(&CookieSpec::default(), true), "; Path=/; Secure; HttpOnly");
    let off = CookieSpec { secure: Some(false), ..CookieSpec::default() };
    assert_eq!(attributes(&off, true), "; Path=/; HttpOnly");
}

#[test]
fn partitioned_goes_with_secure_and_extra_attributes_are_appended() {
    let chips = CookieSpec { partitioned: true, extra: vec![" Priority=High ".into()], ..CookieSpec::default() };
    assert_eq!(attributes(&chips, true), "; Path=/; Secure; Partitioned; HttpOnly; Priority=High");
    // on plain HTTP (secure unset) Secure is not sent, and a Partitioned cookie without it would be dropped
    assert_eq!(attributes(&chips, false), "; Path=/; HttpOnly; Priority=High");
    let always = CookieSpec { secure: Some(true), ..chips };
    assert_eq!(attributes(&always, false), "; Path=/; Secure; Partitioned; HttpOnly; Priority=High");
}

proptest! {
    /// Whatever the extra attributes, a spec that validates renders one header line: no CR, LF or a
    /// `;` that would start an attribute the operator did not write.
    #[test]
    fn validated_extra_attributes_never_split_the_header(extra in proptest::collection::vec(any::<String>(), 0..4)) {
        let spec = CookieSpec { extra: extra.clone(), ..CookieSpec::default() };
        if spec.validate().is_ok() {
            let rendered = attributes(&spec, true);
            prop_assert!(!rendered.bytes().any(|b| b.is_ascii_control()));
            prop_assert_eq!(rendered.matches(';').count(), 3 + extra.len());
        }
    }
}

#[test]
fn cookie_header_parsing_and_stripping() {
    let h = b"a=1; sticky=XYZ;b=2 ;  sticky = Q ; c";
    let found: Vec<_> = pairs(h).filter(|(n, _)| *n == b"sticky").map(|(_, v)| v).collect();
    assert_eq!(found, vec![&b"XYZ"[..], &b"Q"[..]]);
    assert_eq!(without(h, b"sticky").as_deref(), Some(&b"a=1; b=2; c"[..]));
    assert_eq!(without(b"sticky=1", b"sticky"), None);
    assert_eq!(without(b"stickyx=1; xsticky=2", b"sticky").as_deref(), Some(&b"stickyx=1; xsticky=2"[..]));
}

fn encodings_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let hex_lower: String = bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let hex_upper = hex_lower.to_uppercase();
    let mut v = vec![bytes.to_vec(), hex_lower.into_bytes(), hex_upper.into_bytes()];
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        // a base64 rendering shifted by 0, 1 or 2 bytes covers every alignment inside a longer string;
        // the last, partial character is dropped as it depends on what follows
        for shift in 0..3 {
            let mut padded = vec![0u8; shift];
            padded.extend_from_slice(bytes);
            let e = engine.encode(&padded);
            let skip = (shift * 4).div_ceil(3);
            let keep = e.len().saturating_sub(1);
            if keep > skip + 4 {
                v.push(e.as_bytes()[skip..keep].to_vec());
            }
        }
    }
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #[test]
    fn round_trip(secret in proptest::collection::vec(any::<u8>(), 16..64), service in "[a-z0-9]{1,25}", backend in "[a-z0-9-]{1,25}", issued in any::<u32>()) {
        let k = Keys::from_secret(&secret).expect("16+ bytes are accepted");
        let tag = k.tag(&ServiceId(service.as_str().into()), &BackendId(backend.as_str().into()));
        let value = k.encode(tag, issued);
        prop_assert_eq!(value.len(), ENCODED_LEN);
        prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "cookie-safe characters only");
        prop_assert_eq!(k.decode(value.as_bytes(), issued, None), Ok(Pin { tag, issued, seen: issued, key: 0 }));
    }

    #[test]
    fn a_ring_verifies_what_any_of_its_keys_signed(secrets in proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 16..40), 1..=MAX_KEYS), signer in 0..MAX_KEYS, issued in any::<u32>(), age in 0u32..200, max_age in 0u32..200) {
        let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
        let signer = signer % secrets.len();
        let ring = Keys::from_secrets(&secrets).expect("distinct 16+ byte secrets");
        let one = Keys::from_secret(secrets[signer]).expect("16+ bytes");
        let (s, b) = (sid("web"), bid("b1"));
        let tag = one.tag(&s, &b);
        let now = issued.saturating_add(age);
        let decoded = ring.decode(one.encode(tag, issued).as_bytes(), now, Some(max_age));
        if now - issued > max_age {
            prop_assert_eq!(decoded, Err(Fault::Expired));
        } else {
            // the key found is the signer's (or an earlier one with the same secret: none, they are distinct)
            prop_assert_eq!(decoded, Ok(Pin { tag, issued, seen: issued, key: signer }));
            let expected = if signer == 0 { ring.tag(&s, &b) } else { ring.older_tags(&s, &b)[signer - 1] };
            prop_assert_eq!(tag, expected);
        }
    }

    #[test]
    fn every_single_byte_tamper_of_the_payload_is_rejected(issued in any::<u32>(), pos in 0..RAW_LEN, flip in 1u8..=255) {
        let k = keys();
        let value = k.encode(k.tag(&sid("web"), &bid("b1")), issued);
        let mut raw = URL_SAFE_NO_PAD.decode(&value).expect("own cookies decode");
        raw[pos] ^= flip;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(k.decode(tampered.as_bytes(), issued, None).is_err());
    }

    #[test]
    fn lifetimes_hold_exactly_at_their_edges(issued in 0u32..u32::MAX / 2, since_pin in 0u32..10_000, since_seen in 0u32..10_000, idle in 2u32..5_000, absolute in 1u32..10_000, max_age in 1u32..5_000) {
        let k = keys();
        let seen = issued.saturating_add(since_pin.saturating_sub(since_seen));
        let (tag, value) = reissued(&k, issued, seen);
        let now = issued + since_pin;
        let life = Lifetimes { max_age: Some(max_age), idle: Some(idle), absolute: Some(absolute) };
        let got = k.decode_within(value.as_bytes(), now, &life);
        let expected = if now - issued > absolute {
            Err(Fault::Lifetime)
        } else if now - seen > max_age {
            Err(Fault::Expired)
        } else if now - seen > idle {
            Err(Fault::Idle)
        } else {
            Ok(Pin { tag, issued, seen, key: 0 })
        };
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn tampering_with_the_times_never_extends_a_session(issued in 1u32..u32::MAX / 2, pos in 2usize..10, flip in 1u8..=255) {
        let k = keys();
        let (_, value) = reissued(&k, issued, issued);
        let mut raw = URL_SAFE_NO_PAD.decode(&value).expect("own cookies decode");
        raw[pos] ^= flip;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert_eq!(k.decode_within(tampered.as_bytes(), issued, &Lifetimes::default()), Err(Fault::Signature));
    }

    #[test]
    fn arbitrary_input_never_verifies(value in proptest::collection::vec(any::<u8>(), 0..80)) {
        prop_assert!(keys().decode(&value, NOW, None).is_err());
    }

    #[test]
    fn no_backend_address_in_any_encoding(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>(), port in 1024u16.., v6 in any::<[u8; 16]>(), use_v6 in any::<bool>()) {
        let k = keys();
        let ip: IpAddr = if use_v6 { IpAddr::from(v6) } else { IpAddr::from([a, b, c, d]) };
        let addr = SocketAddr::new(ip, port);
        // a backend named by the user after its own URL, the worst case; and a derived name
        let named = format!("http://{addr}");
        for id in [named.clone(), k.derive_name(&named)] {
            let value = k.encode(k.tag(&sid("web"), &BackendId(id.as_str().into())), NOW);
            let raw = URL_SAFE_NO_PAD.decode(&value).expect("own cookies decode");
            let ip_bytes = match ip { IpAddr::V4(v4) => v4.octets().to_vec(), IpAddr::V6(v6) => v6.octets().to_vec() };
            let mut ip_port = ip_bytes.clone();
            ip_port.extend_from_slice(&port.to_be_bytes());
            let mut text = vec![addr.to_string(), ip.to_string(), named.clone()];
            // the address as one decimal number, when it is long enough to mean something
            let decimal = u32::from_be_bytes([a, b, c, d]);
            if !use_v6 && decimal >= 10_000_000 {
                text.push(decimal.to_string());
            }
            for hay in [value.as_bytes(), raw.as_slice()] {
                for t in &text {
                    prop_assert!(!contains(hay, t.as_bytes()), "{} found in {}", t, value);
                }
                for needle in encodings_of(&ip_bytes).into_iter().chain(encodings_of(&ip_port)) {
                    prop_assert!(!contains(hay, &needle), "an encoding of {} found in {}", addr, value);
                }
            }
            // the derived name must not give the address away either
            let name = k.derive_name(&named);
            prop_assert!(!contains(name.as_bytes(), ip.to_string().as_bytes()));
        }
    }
}

#[test]
fn legacy_traefik_values_give_the_backend_address() {
    assert_eq!(legacy_traefik_addr(b"http://10.0.0.5:8000"), Some("10.0.0.5:8000".parse().unwrap()));
    assert_eq!(legacy_traefik_addr(b"http%3A%2F%2F10.0.0.5%3A8000"), Some("10.0.0.5:8000".parse().unwrap()));
    assert_eq!(legacy_traefik_addr(b"\"http://10.0.0.5:80/\""), Some("10.0.0.5:80".parse().unwrap()));
    assert_eq!(legacy_traefik_addr(b"http://[fd00::5]:80"), Some("[fd00::5]:80".parse().unwrap()));
    for bad in [
        &b"https://10.0.0.5:8000"[..],
        b"http://10.0.0.5",
        b"http://host:80",
        b"10.0.0.5:80",
        b"%zz",
        b"http://10.0.0.5:8000/x",
    ] {
        assert_eq!(legacy_traefik_addr(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(legacy_traefik_addr(&[b'a'; 100]), None);
}
