//! The L7 kernel splice on plain socket pairs (no HTTP): a "client" connected to a proxy-side socket,
//! a proxy-side socket connected to an "upstream", the two proxy-side sockets joined by
//! `proxy::splice::Splicer`. Bytes must cross both ways in order, FIN and RST must reach the other
//! end, and the maps must be empty again once the pair is closed.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    sync::Arc,
    time::Duration,
};

use sticky::splice::Splicer;
use testkit::wait;

use crate::require_root;

/// Client end, upstream end: the two sockets the test talks through; the proxy-side sockets
/// between them are spliced.
struct Spliced {
    client: TcpStream,
    upstream: TcpStream,
    splicer: Arc<Splicer>,
}

/// A connected pair: (the end we keep, the end the proxy holds).
fn connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback must work");
    let outer = TcpStream::connect(listener.local_addr().expect("listener has an address")).expect("connect must work");
    let (inner, _) = listener.accept().expect("accept must work");
    for s in [&outer, &inner] {
        s.set_nodelay(true).expect("TCP_NODELAY");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    }
    (outer, inner)
}

/// Splices a new client connection and a new upstream connection; `before` runs after both exist and
/// before the join (to queue bytes the verdict has not seen).
fn splice(before: impl FnOnce(&mut TcpStream, &mut TcpStream)) -> Spliced {
    let splicer = Splicer::start(64, aya_log::Level::Warn).expect("the splice must load as root");
    let (mut client, proxy_client) = connection();
    let (proxy_upstream, mut upstream) = connection();
    before(&mut client, &mut upstream);
    for s in [&proxy_client, &proxy_upstream] {
        s.set_nonblocking(true).expect("non-blocking");
    }
    if let Err((e, _)) = splicer.join(proxy_client, proxy_upstream) {
        panic!("join must succeed: {e}");
    }
    Spliced { client, upstream, splicer }
}

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("the bytes must arrive");
    buf
}

fn assert_eof(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or_else(|e| panic!("{what}: read must end with EOF, got {e}"));
    assert_eq!(n, 0, "{what}: FIN must arrive after the data, got {:?}", &buf[..n]);
}

fn assert_maps_empty(splicer: &Splicer) {
    assert!(
        wait::until(Duration::from_secs(5), || splicer.live() == 0 && splicer.usage().iter().all(|u| u.used == 0)),
        "the pair must be closed and every splice map empty: live {} usage {:?}",
        splicer.live(),
        splicer.usage()
    );
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    // the byte index runs 0..=255 over and over, as the low byte of the position
    (0..=u8::MAX).cycle().take(n).map(|i| i.wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn splice_relays_both_ways_with_half_close_and_empties_its_maps() {
    require_root!();
    let Spliced { mut client, mut upstream, splicer } = splice(|client, upstream| {
        // queued on the proxy's sockets before the join: the kick must send them on
        client.write_all(b"early from client").expect("write");
        upstream.write_all(b"early from upstream").expect("write");
    });
    assert_eq!(read_exact(&mut upstream, 17), b"early from client");
    assert_eq!(read_exact(&mut client, 19), b"early from upstream");
    let usage = splicer.usage();
    assert!(usage.iter().all(|u| u.used == 2), "two entries per map while spliced: {usage:?}");

    // a large transfer each way, at the same time
    let up = pattern(3 << 20, 1);
    let down = pattern(2 << 20, 7);
    let writer = {
        let mut c = client.try_clone().expect("clone");
        let up = up.clone();
        std::thread::spawn(move || c.write_all(&up).expect("client write"))
    };
    let reader = {
        let mut c = client.try_clone().expect("clone");
        std::thread::spawn(move || read_exact(&mut c, 2 << 20))
    };
    upstream.write_all(&down).expect("upstream write");
    assert!(read_exact(&mut upstream, up.len()) == up, "client -> upstream bytes arrive intact and in order");
    writer.join().expect("writer");
    assert!(reader.join().expect("reader") == down, "upstream -> client bytes arrive intact and in order");

    // half-close: the client's FIN reaches the upstream, which can still answer
    client.write_all(b"last words").expect("write");
    client.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_exact(&mut upstream, 10), b"last words");
    assert_eof(&mut upstream, "upstream after the client's FIN");
    upstream.write_all(b"answer after FIN").expect("the upstream may still write");
    assert_eq!(read_exact(&mut client, 16), b"answer after FIN");
    assert!(splicer.live() == 1, "one direction open: the pair stays");
    upstream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eof(&mut client, "client after the upstream's FIN");

    assert_maps_empty(&splicer);
    assert_eq!(splicer.stats().finished(), 1, "ended cleanly, not reset");
    assert_eq!(splicer.stats().aborted(), 0);
}

#[test]
fn splice_forwards_fin_only_after_a_slow_reader_took_every_byte() {
    require_root!();
    let Spliced { mut client, mut upstream, splicer } = splice(|_, _| {});
    // more than the socket buffers hold: most of it waits in the kernel's splice queue when the FIN comes
    let up = pattern(16 << 20, 3);
    let writer = {
        let up = up.clone();
        let mut c = client.try_clone().expect("clone");
        std::thread::spawn(move || {
            c.write_all(&up).expect("client write");
            c.shutdown(Shutdown::Write).expect("shutdown");
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(read_exact(&mut upstream, up.len()) == up, "every byte before the FIN arrives");
    assert_eof(&mut upstream, "upstream");
    writer.join().expect("writer");
    upstream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eof(&mut client, "client");
    assert_maps_empty(&splicer);
    assert_eq!(splicer.stats().finished(), 1);
}

#[test]
fn splice_passes_a_reset_on_and_empties_its_maps() {
    require_root!();
    let Spliced { mut client, upstream, splicer } = splice(|_, _| {});
    client.write_all(b"x").expect("write");
    socket2::SockRef::from(&upstream).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(upstream); // RST to the proxy's upstream socket
    let mut buf = [0u8; 8];
    let got = client.read(&mut buf);
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client must see the upstream's reset, got {got:?}"
    );
    assert_maps_empty(&splicer);
    assert_eq!(splicer.stats().aborted(), 1);
}
