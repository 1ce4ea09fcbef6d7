//! Property tests across the codec: a valid head, rewritten and parsed again, keeps every end-to-end
//! field (name, value, order), keeps its framing, and carries exactly the forwarding sticky adds; a
//! second hop through sticky changes nothing but the forwarding chain.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

const LIMITS: Limits = Limits { max_head: 64 * 1024, max_fields: 200 };

/// A generated request head, rendered by [`Generated::bytes`].
#[derive(Clone, Debug)]
struct Generated {
    method: &'static str,
    target: String,
    host: String,
    /// (name, value) in order; values have no leading or trailing whitespace.
    fields: Vec<(String, String)>,
    framing: RequestFraming,
}

impl Generated {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", self.method, self.target, self.host);
        for (n, v) in &self.fields {
            write!(out, "{n}: {v}\r\n").expect("a String must take any text");
        }
        match self.framing {
            RequestFraming::Length(n) => {
                write!(out, "Content-Length: {n}\r\n").expect("a String must take any text");
            }
            RequestFraming::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
            RequestFraming::None => {}
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

fn end_to_end_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Accept".to_owned()),
        Just("User-Agent".to_owned()),
        Just("Authorization".to_owned()),
        Just("Cache-Control".to_owned()),
        Just("Expect".to_owned()),
        Just("X_Request_Id".to_owned()),
        "X-[A-Za-z0-9-]{1,12}",
    ]
}

fn field() -> impl Strategy<Value = (String, String)> {
    let value = "[!-~]([ -~]{0,20}[!-~])?";
    prop_oneof![
        4 => (end_to_end_name(), value),
        1 => (Just("Keep-Alive".to_owned()), Just("timeout=5".to_owned())),
        1 => (Just("TE".to_owned()), Just("trailers".to_owned())),
        1 => (Just("Proxy-Authorization".to_owned()), Just("Basic eDp5".to_owned())),
        1 => (Just("Upgrade".to_owned()), Just("h2c".to_owned())),
        1 => (Just("Connection".to_owned()), prop_oneof![Just("close"), Just("keep-alive"), Just("X-Named, keep-alive")].prop_map(str::to_owned)),
        1 => (Just("X-Named".to_owned()), Just("hop".to_owned())),
        2 => (Just("Cookie".to_owned()), prop_oneof![Just("a=1"), Just("sticky=abc"), Just("a=1; sticky=abc; b=2"), Just("sticky=x;c=3")].prop_map(str::to_owned)),
        2 => (Just("X-Forwarded-For".to_owned()), "(10|192)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        1 => (Just("X-Forwarded-Proto".to_owned()), Just("https".to_owned())),
        1 => (Just("Forwarded".to_owned()), Just("for=198.51.100.9".to_owned())),
        1 => (Just("X-Forwarded_For".to_owned()), Just("6.6.6.6".to_owned())),
    ]
}

fn request() -> impl Strategy<Value = Generated> {
    let method = prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("HEAD"), Just("PURGE")];
    let target = "/[a-z0-9/._~%-]{0,16}(\\?[a-z0-9=&]{0,10})?";
    let host = "[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{1,5})?";
    let framing = prop_oneof![
        Just(RequestFraming::None),
        (1u64..1_000_000).prop_map(RequestFraming::Length),
        Just(RequestFraming::Chunked),
    ];
    (method, target, host, proptest::collection::vec(field(), 0..14), framing)
        .prop_map(|(method, target, host, fields, framing)| Generated { method, target, host, fields, framing })
}

/// Rewrites `raw` as sticky does for the client 192.0.2.7.
fn forward(raw: &[u8]) -> (RequestHead, Vec<u8>) {
    let client = ClientAddr::new([192, 0, 2, 7].into());
    let rw = RequestRewrite { client: &client, proto: Proto::Http, prior: PriorHops::Keep, cookie: Some(b"sticky") };
    let mut head = RequestHead::default();
    let status = head.parse(raw, LIMITS).expect("a generated request must be accepted");
    assert!(matches!(status, Parsed::Complete { .. }), "a generated request must be complete");
    let mut out = Vec::new();
    write_request(&head, raw, &rw, &mut out);
    (head, out)
}

/// The (name, value) pairs of a head in order, names lowercased.
fn fields(head: &RequestHead, buf: &[u8]) -> Vec<(String, String)> {
    head.head()
        .fields()
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name.of(buf)).to_ascii_lowercase(),
                String::from_utf8_lossy(f.value.of(buf)).into_owned(),
            )
        })
        .collect()
}

/// The fields a backend must get exactly as sent: not hop-by-hop, not named in Connection, not one
/// sticky manages.
fn end_to_end(g: &Generated) -> Vec<(String, String)> {
    let named: Vec<String> = g
        .fields
        .iter()
        .filter(|(n, _)| n == "Connection")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    g.fields
        .iter()
        .filter(|(n, _)| {
            let kind = syntax::Name::classify(n.as_bytes());
            !kind.is_hop_by_hop()
                && !named.contains(&n.to_ascii_lowercase())
                && !matches!(
                    kind,
                    syntax::Name::Cookie
                        | syntax::Name::XForwardedFor
                        | syntax::Name::XForwardedProto
                        | syntax::Name::XForwardedHost
                        | syntax::Name::Forwarded
                        | syntax::Name::Lookalike
                )
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_rewritten_request_keeps_its_end_to_end_fields_and_framing(g in request()) {
        let raw = g.bytes();
        let (first, out) = forward(&raw);
        let mut again = RequestHead::default();
        prop_assert!(matches!(again.parse(&out, LIMITS), Ok(Parsed::Complete { .. })), "the backend's head must parse: {}", String::from_utf8_lossy(&out));
        prop_assert_eq!(again.framing(), first.framing());
        prop_assert_eq!(again.framing(), g.framing);
        prop_assert_eq!(again.method_bytes(&out), g.method.as_bytes());
        prop_assert_eq!(again.target(&out), g.target.as_bytes());
        let got = fields(&again, &out);
        // the end-to-end fields, in order, and nothing else but what sticky manages
        let kept: Vec<(String, String)> = got
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "host" | "content-length" | "transfer-encoding" | "cookie" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded"))
            .cloned()
            .collect();
        prop_assert_eq!(kept, end_to_end(&g));
        // sticky's cookie is gone, the other cookies are not
        let cookies: Vec<&String> = got.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v).collect();
        prop_assert!(cookies.iter().all(|v| !v.split(';').any(|p| p.trim().starts_with("sticky="))));
        let others_in = g.fields.iter().filter(|(n, _)| n == "Cookie").flat_map(|(_, v)| v.split(';').map(str::trim)).filter(|p| !p.starts_with("sticky=")).count();
        let others_out = cookies.iter().flat_map(|v| v.split(';').map(str::trim)).count();
        prop_assert_eq!(others_in, others_out);
        // one X-Forwarded-For: every earlier one in order, then the client
        let mut chain: Vec<String> = g.fields.iter().filter(|(n, _)| n == "X-Forwarded-For").map(|(_, v)| v.clone()).collect();
        chain.push("192.0.2.7".to_owned());
        let xff: Vec<String> = got.iter().filter(|(n, _)| n == "x-forwarded-for").map(|(_, v)| v.clone()).collect();
        prop_assert_eq!(xff, vec![chain.join(", ")]);
        let host = vec![(String::from("host"), g.host.clone())];
        prop_assert_eq!(got.iter().filter(|(n, _)| n == "host").cloned().collect::<Vec<_>>(), host);
        prop_assert_eq!(again.head().get(&out, b"x-forwarded-host"), Some(g.host.as_bytes()));
        prop_assert_eq!(again.head().get(&out, b"x-forwarded-proto"), Some(&b"http"[..]));
        let forwarded = format!("for=192.0.2.7;host=\"{}\";proto=http", g.host);
        prop_assert_eq!(got.iter().rev().find(|(n, _)| n == "forwarded").map(|(_, v)| v.clone()), Some(forwarded));
    }

    #[test]
    fn a_second_hop_only_extends_the_forwarding_chain(g in request()) {
        let (once_head, once) = forward(&g.bytes());
        let (twice_head, twice) = forward(&once);
        let mut first = RequestHead::default();
        prop_assert!(first.parse(&once, LIMITS).is_ok());
        let strip = |h: &RequestHead, buf: &[u8]| -> Vec<(String, String)> {
            fields(h, buf).into_iter().filter(|(n, _)| n != "x-forwarded-for" && n != "forwarded").collect()
        };
        let mut second = RequestHead::default();
        prop_assert!(second.parse(&twice, LIMITS).is_ok());
        prop_assert_eq!(strip(&first, &once), strip(&second, &twice));
        let chain = |h: &RequestHead, buf: &[u8]| h.head().get(buf, b"x-forwarded-for").map(<[u8]>::to_vec);
        let mut longer = chain(&first, &once).expect("the first hop must add X-Forwarded-For");
        longer.extend_from_slice(b", 192.0.2.7");
        prop_assert_eq!(chain(&second, &twice), Some(longer));
        prop_assert_eq!(twice_head.framing(), once_head.framing());
    }

    #[test]
    fn a_relayed_response_keeps_its_fields_but_sticky_cookies(
        status in prop_oneof![Just(200u16), Just(201), Just(302), Just(404), Just(500)],
        fields in proptest::collection::vec(prop_oneof![
            3 => (end_to_end_name(), "[!-~]([ -~]{0,20}[!-~])?"),
            1 => (Just("Set-Cookie".to_owned()), prop_oneof![Just("app=1; Path=/"), Just("sticky=forged"), Just(" sticky =x")].prop_map(str::to_owned)),
            1 => (Just("Keep-Alive".to_owned()), Just("timeout=5".to_owned())),
        ], 0..12),
        length in proptest::option::of(0u64..100_000),
    ) {
        let mut raw = format!("HTTP/1.1 {status} Whatever\r\n");
        for (n, v) in &fields {
            write!(raw, "{n}: {v}\r\n").expect("a String must take any text");
        }
        if let Some(n) = length {
            write!(raw, "Content-Length: {n}\r\n").expect("a String must take any text");
        }
        raw.push_str("\r\n");
        let exchange = Exchange::new(Method::Get, None);
        let mut head = ResponseHead::default();
        let parsed = head.parse(raw.as_bytes(), LIMITS, &exchange);
        prop_assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "a generated response must parse: {:?}", parsed);
        let rw = ResponseRewrite { cookie: Some(b"sticky"), set_cookie: Some(b"sticky=mine"), client_minor: 1, keep_alive: true, extra: b"" };
        let mut out = Vec::new();
        let relay = write_response(&head, raw.as_bytes(), &rw, &mut out).expect("a valid Set-Cookie must be written");
        let mut again = ResponseHead::default();
        prop_assert!(matches!(again.parse(&out, LIMITS, &exchange), Ok(Parsed::Complete { .. })), "the client's head must parse: {}", String::from_utf8_lossy(&out));
        prop_assert_eq!(again.status(), status);
        prop_assert_eq!(again.framing(), head.framing());
        let theirs = fields.iter().filter(|(n, v)| n == "Set-Cookie" && v.trim_start().starts_with("sticky")).count();
        prop_assert_eq!(relay.dropped_set_cookies as usize, theirs);
        let expected: Vec<Vec<u8>> = fields
            .iter()
            .filter(|(n, v)| n != "Keep-Alive" && !(n == "Set-Cookie" && v.trim_start().starts_with("sticky")))
            .map(|(n, v)| format!("{}: {v}", n.to_ascii_lowercase()).into_bytes())
            .chain(std::iter::once(b"set-cookie: sticky=mine".to_vec()))
            .collect();
        let got: Vec<Vec<u8>> = again
            .head()
            .fields()
            .iter()
            .filter(|f| !matches!(f.kind, syntax::Name::ContentLength | syntax::Name::Connection))
            .map(|f| [f.name.of(&out).to_ascii_lowercase(), b": ".to_vec(), f.value.of(&out).to_vec()].concat())
            .collect();
        prop_assert_eq!(got, expected);
    }
}
