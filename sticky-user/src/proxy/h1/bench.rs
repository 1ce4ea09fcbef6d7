//! A micro benchmark of the pinned path's codec work, ignored by default (timings are printed, never
//! asserted). Run it in release mode on a quiet machine:
//! `STICKY_EBPF_SKIP=1 cargo test --release -p sticky-user --lib proxy::h1::bench -- --ignored --nocapture`.

use std::{hint::black_box, time::Instant};

use super::*;

/// A browser's request for a page of a pinned session, and the backend's answer.
const REQUEST: &[u8] = b"GET /app/dashboard?tab=2 HTTP/1.1\r\nHost: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
Cookie: theme=dark; sticky=AV1f8oB3kXJmQ0x1ZC3sH9w2a7sT4vYb8cN5dE6fG7h; lang=en\r\n\
Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\nPriority: u=0, i\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: app\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Length: 5120\r\nCache-Control: no-store\r\n\
Set-Cookie: csrf=abc123; Path=/; HttpOnly\r\nKeep-Alive: timeout=5\r\n\r\n";
const ROUNDS: u32 = 200_000;
const LIMITS: Limits = Limits { max_head: 32 * 1024, max_fields: 100 };

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn pinned_request_and_response_heads() {
    let client = ClientAddr::new([192, 0, 2, 7].into());
    let rw = RequestRewrite { client: &client, proto: Proto::Http, prior: PriorHops::Keep, cookie: Some(b"sticky") };
    let reply =
        ResponseRewrite { cookie: Some(b"sticky"), set_cookie: None, client_minor: 1, keep_alive: true, extra: b"" };
    // one head and one buffer each, reused as the engine reuses its pooled ones
    let (mut req, mut resp) = (RequestHead::default(), ResponseHead::default());
    let (mut up, mut down) = (Vec::with_capacity(2048), Vec::with_capacity(1024));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        up.clear();
        down.clear();
        let parsed = req.parse(black_box(REQUEST), LIMITS);
        assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "the request must parse");
        let cookie = req.cookies(REQUEST).flat_map(crate::cookie::pairs).find(|(n, _)| *n == b"sticky");
        black_box(cookie);
        write_request(&req, REQUEST, &rw, &mut up);
        let exchange = Exchange::of(&req, REQUEST);
        let parsed = resp.parse(black_box(RESPONSE), LIMITS, &exchange);
        assert!(matches!(parsed, Ok(Parsed::Complete { .. })), "the response must parse");
        let relay = write_response(&resp, RESPONSE, &reply, &mut down);
        assert!(relay.is_ok_and(|r| r.sent), "the response must be written");
        black_box((&up, &down));
    }
    let per = started.elapsed() / ROUNDS;
    let mut check = RequestHead::default();
    assert!(matches!(check.parse(&up, LIMITS), Ok(Parsed::Complete { .. })), "the backend's head must parse");
    println!(
        "codec work per pinned exchange: {per:?} ({} request fields, {} bytes up, {} bytes down)",
        req.head().fields().len(),
        up.len(),
        down.len()
    );
}
