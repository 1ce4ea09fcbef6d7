use std::net::SocketAddr;

use proptest::prelude::*;

use super::{
    encode,
    parse::{Addresses, HeaderError, Parsed, V1_MAX, parse},
};

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a test socket address must parse")
}

fn proxied(src: &str, dst: &str, len: usize) -> Parsed {
    Parsed::Complete { addresses: Addresses::Proxied { source: sa(src), destination: sa(dst) }, len }
}

#[test]
fn v1_headers_give_the_client_and_their_length() {
    let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(parse(h), Ok(proxied("192.0.2.1:56324", "198.51.100.2:443", 45)));
    let h = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    assert_eq!(parse(h), Ok(proxied("[2001:db8::1]:1", "[::1]:65535", h.len())));
    let h = b"PROXY UNKNOWN ffff:f...f:ffff 1\r\nxyz";
    assert_eq!(parse(h), Ok(Parsed::Complete { addresses: Addresses::Local, len: h.len() - 3 }));
}

#[test]
fn partial_headers_ask_for_more_and_others_are_missing() {
    assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 5"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::Missing));
    assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(HeaderError::Missing), "a TLS ClientHello");
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT"), Ok(Parsed::Incomplete));
}

#[test]
fn malformed_headers_are_refused() {
    for bad in [
        &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n"[..],
        b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 01 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x2f\x11\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c000000000000",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04abcd",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ] {
        assert!(
            matches!(parse(bad), Err(HeaderError::Malformed(_))),
            "{:?} must be refused",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [&b"PROXY UNKNOWN "[..], &[b'x'; V1_MAX]].concat();
    assert!(matches!(parse(&long), Err(HeaderError::Malformed(_))));
}

#[test]
fn v2_local_and_tlvs_are_read() {
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00rest";
    assert_eq!(parse(local), Ok(Parsed::Complete { addresses: Addresses::Local, len: 16 }));
    // PROXY TCP4 with a 3-byte TLV after the addresses
    let mut h = encode::v2(sa("192.0.2.1:1000"), sa("198.51.100.2:80"));
    h[15] += 3;
    h.extend_from_slice(&[0x04, 0x00, 0x00]);
    assert_eq!(parse(&h), Ok(proxied("192.0.2.1:1000", "198.51.100.2:80", 31)));
}

#[test]
fn mixed_families_are_written_as_ipv6_and_mapped_ones_as_ipv4() {
    let h = encode::v2(sa("[::ffff:192.0.2.1]:5"), sa("198.51.100.2:80"));
    assert_eq!(parse(&h), Ok(proxied("192.0.2.1:5", "198.51.100.2:80", 28)));
    let h = encode::v2(sa("192.0.2.1:5"), sa("[2001:db8::2]:80"));
    assert_eq!(parse(&h), Ok(proxied("[::ffff:192.0.2.1]:5", "[2001:db8::2]:80", 52)));
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(std::net::Ipv4Addr::from(ip).into(), p)),
        (any::<u128>(), any::<u16>())
            .prop_filter("mapped addresses are written as IPv4", |(ip, _)| std::net::Ipv6Addr::from(*ip)
                .to_ipv4_mapped()
                .is_none())
            .prop_map(|(ip, p)| SocketAddr::new(std::net::Ipv6Addr::from(ip).into(), p)),
    ]
}

proptest! {
    #[test]
    fn encoded_v2_headers_parse_back_at_every_cut(src in any_addr(), dst in any_addr()) {
        prop_assume!(src.is_ipv4() == dst.is_ipv4());
        let h = encode::v2(src, dst);
        prop_assert_eq!(parse(&h), Ok(Parsed::Complete { addresses: Addresses::Proxied { source: src, destination: dst }, len: h.len() }));
        for cut in 0..h.len() {
            prop_assert_eq!(parse(&h[..cut]), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn v1_headers_parse_back_at_every_cut(src in any_addr(), dst in any_addr()) {
        prop_assume!(src.is_ipv4() == dst.is_ipv4());
        let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        let h = format!("PROXY {fam} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port());
        prop_assert_eq!(parse(h.as_bytes()), Ok(Parsed::Complete { addresses: Addresses::Proxied { source: src, destination: dst }, len: h.len() }));
        for cut in 0..h.len() {
            prop_assert_eq!(parse(&h.as_bytes()[..cut]), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_overrun(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
            prop_assert!(len <= bytes.len());
        }
    }
}

mod accepting {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };

    use super::sa;
    use crate::{
        cidr::Cidrs,
        proxy_protocol::{
            Origin, Reject,
            accept::{accept, rejects},
            encode,
        },
    };

    async fn pair() -> (TcpStream, TcpStream, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, peer) = accepted.expect("accept");
        (client.expect("connect"), server, peer)
    }

    #[tokio::test]
    async fn a_header_in_pieces_is_read_whole_and_not_a_byte_past_it() {
        let (mut client, server, peer) = pair().await;
        let header = encode::v2(sa("192.0.2.9:4444"), sa("198.51.100.1:443"));
        let (first, rest) = header.split_at(7);
        let from = Cidrs::parse("127.0.0.1").expect("a list");
        let writer = async {
            client.write_all(first).await.expect("write");
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.write_all(rest).await.expect("write");
            client.write_all(b"\x16\x03\x01 the handshake").await.expect("write");
        };
        let (origin, ()) = tokio::join!(accept(&server, peer, &from, true), writer);
        assert_eq!(origin, Ok(Origin { client: sa("192.0.2.9:4444"), destination: sa("198.51.100.1:443") }));
        let mut after = [0u8; 17];
        let mut s = server;
        s.read_exact(&mut after).await.expect("the connection's own bytes must follow");
        assert_eq!(&after, b"\x16\x03\x01 the handshake", "the header is consumed, nothing after it");
    }

    #[tokio::test]
    async fn local_headers_keep_the_connection_and_no_list_reads_nothing() {
        let (mut client, server, peer) = pair().await;
        client.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00GET").await.expect("write");
        let from = Cidrs::parse("127.0.0.0/8").expect("a list");
        let origin = accept(&server, peer, &from, true).await.expect("a LOCAL header is accepted");
        assert_eq!(origin.client, peer);
        let (mut client, server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n").await.expect("write");
        let origin = accept(&server, peer, &Cidrs::default(), true).await.expect("without a list, nothing is read");
        assert_eq!(origin.client, peer);
        let mut first = [0u8; 6];
        let mut s = server;
        s.read_exact(&mut first).await.expect("read");
        assert_eq!(&first, b"PROXY ", "the bytes are the application's");
    }

    #[tokio::test]
    async fn an_untrusted_header_is_refused_but_an_untrusted_post_is_not() {
        let from = Cidrs::parse("192.0.2.1").expect("a list");
        let (mut client, server, peer) = pair().await;
        client.write_all(b"POST / HTTP/1.1\r\n").await.expect("write");
        assert_eq!(accept(&server, peer, &from, true).await.map(|o| o.client), Ok(peer));
        let before = rejects(Reject::Untrusted);
        let (mut client, server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n").await.expect("write");
        assert_eq!(accept(&server, peer, &from, true).await, Err(Reject::Untrusted));
        assert!(rejects(Reject::Untrusted) > before, "the refusal is counted");
        // tcp mode does not look: the bytes go to the backend
        let (mut client, server, peer) = pair().await;
        client.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n").await.expect("write");
        assert_eq!(accept(&server, peer, &from, false).await.map(|o| o.client), Ok(peer));
    }
}
