//! End-to-end tests of the inactivity timeouts once a request is under way (issue 13 item 2): a
//! client that stalls its request body, and one that stops reading a large response, are closed at
//! `--client-timeout`, and with `--max-connections` small, new clients are served after them.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use common::{get, metric, sticky_args};

/// Size of the response of `/big`: more than loopback's socket buffers hold on both sides.
const BIG: usize = 64 << 20;

/// A backend on loopback: `/stall...` is read and never answered, `/big` gets [`BIG`] bytes, anything
/// else a short `ok` (then the connection closes).
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(s) = stream else { continue };
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

fn serve(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&head);
    if line.starts_with("POST /stall") || line.starts_with("GET /stall") {
        // hold the connection without answering until the proxy gives up on it
        let _ = s.read_to_end(&mut Vec::new());
    } else if line.starts_with("GET /big") {
        let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes());
        let chunk = vec![b'x'; 65536];
        for _ in 0..BIG / chunk.len() {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    } else {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    }
}

#[test]
fn a_stalled_request_body_is_closed_at_the_client_timeout_and_new_clients_are_served() {
    let b = backend();
    let lb = sticky_args(&[
        "--backend".into(),
        format!("s1=http://{b}"),
        "--max-connections".into(),
        "2".into(),
        "--client-timeout".into(),
        "500ms".into(),
    ]);
    // two clients announce a body and stop after 10 bytes: both connection permits are taken
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(lb.addr).expect("connect");
            s.write_all(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789").expect("write");
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
            s
        })
        .collect();
    let started = Instant::now();
    for s in &mut stalled {
        let _ = s.read_to_end(&mut Vec::new());
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "both stalled connections are closed at about 500 ms, not {waited:?}"
    );
    let r = get(lb.addr, "/", &[]).expect("a new client is served");
    assert_eq!((r.status, r.text().as_ref()), (200, "ok\n"));
    let admin = lb.admin.expect("admin");
    assert!(metric(admin, "sticky_timeouts_total{kind=\"client\"}") >= 2, "each closed connection is counted");
}

#[test]
fn a_client_that_stops_reading_a_large_response_is_closed_at_the_client_timeout() {
    let b = backend();
    let lb = sticky_args(&[
        "--backend".into(),
        format!("s1=http://{b}"),
        "--max-connections".into(),
        "1".into(),
        "--client-timeout".into(),
        "500ms".into(),
    ]);
    let mut reader = TcpStream::connect(lb.addr).expect("connect");
    reader.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    // the one permit is held by the reader that does not read; a new client waits until it is closed
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = get(lb.addr, "/", &[]).expect("a new client is served once the stalled one is closed");
    assert_eq!((r.status, r.text().as_ref()), (200, "ok\n"));
    assert!(started.elapsed() < Duration::from_secs(5), "served after {:?}", started.elapsed());
    // the stalled reader got part of the body, then the close
    reader.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < BIG, "the response was cut short ({got} bytes)");
    let admin = lb.admin.expect("admin");
    assert!(metric(admin, "sticky_timeouts_total{kind=\"client\"}") >= 1, "the close is counted");
}
