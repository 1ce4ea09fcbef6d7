//! Issue 13's acceptance for item 2 (no timeout once a request is under way): with `--max-connections`
//! small and `--client-timeout 2s`, a client whose request body stalls (the backend having answered
//! early, or still waiting for it) and a client that stops reading a large response are closed within
//! the timeout plus a margin, and a new client is served afterwards.
//!
//! `--client-timeout` comes with the L7 engine (issue 12); a binary without it fails here at the start,
//! naming the flag.

mod common;

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use common::Proc;

/// The inactivity timeout under test.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What a busy 2-core machine may add to it.
const MARGIN: Duration = Duration::from_secs(3);
/// The large response a slow reader asks for: far more than loopback socket buffers hold.
const BIG: usize = 256 << 20;

/// A backend: `/early` answers 401 as soon as the head is in and never reads the body; `/wait` waits
/// for a body that does not come; `/big` streams [`BIG`] bytes and records when a write failed; any
/// other path gets `200 ok`.
struct Backend {
    addr: SocketAddr,
    /// When a `/big` write failed (sticky closed the upstream connection).
    big_failed: Arc<Mutex<Vec<Instant>>>,
}

fn backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").expect("the backend must bind loopback");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let big_failed = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::clone(&big_failed);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let failed = Arc::clone(&failed);
            thread::spawn(move || serve(stream, &failed));
        }
    });
    Backend { addr, big_failed }
}

fn serve(mut s: TcpStream, failed: &Mutex<Vec<Instant>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
        if line.starts_with("POST /early") {
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope");
            // the body is never read: hold the connection until sticky lets it go
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        if line.starts_with("POST /wait") {
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        if line.starts_with("GET /big") {
            let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..BIG / chunk.len() {
                if s.write_all(&chunk).is_err() {
                    failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
                    return;
                }
            }
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}

/// `sticky run` with `--max-connections 2 --client-timeout 2s` in front of `backend`.
fn sticky(backend: &Backend) -> Proc {
    let help = std::process::Command::new(common::STICKY).args(["run", "--help"]).output().expect("sticky must run");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--client-timeout"),
        "this sticky has no --client-timeout (the L7 engine of issue 12 adds it): issue 13 item 2 is not fixed"
    );
    common::sticky_args(&[
        "--no-ebpf".into(),
        "--backend".into(),
        format!("b1=http://{}", backend.addr),
        "--max-connections".into(),
        "2".into(),
        "--client-timeout".into(),
        "2s".into(),
    ])
}

/// Reads until the peer closes (EOF or reset), at most `within`: when it closed, and what came.
fn closed_within(s: &mut TcpStream, within: Duration) -> (Option<Instant>, Vec<u8>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (Some(Instant::now()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Some(Instant::now()), got),
        }
    }
    (None, got)
}

/// A new client gets `200 ok` within a few seconds (both connection slots were given back).
fn served(addr: SocketAddr) {
    let r = testkit::http::Client::to(addr)
        .io_timeout(Duration::from_secs(3))
        .open()
        .and_then(|mut c| c.get("/"))
        .expect("a new client must be served once the stalled ones are closed");
    assert_eq!((r.status, r.text().as_ref()), (200, "ok"), "{r:?}");
}

#[test]
fn stalled_request_bodies_are_closed_at_the_client_timeout_and_new_clients_served() {
    let backend = backend();
    let lb = sticky(&backend);
    served(lb.addr);
    // that client's slot is given back once sticky reads its close
    thread::sleep(Duration::from_millis(300));
    // both connection slots: a body stalled after the backend answered early, and one it waits for
    let mut early = TcpStream::connect(lb.addr).expect("sticky must accept");
    early.write_all(b"POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nfirst bytes").expect("write");
    let mut waiting = TcpStream::connect(lb.addr).expect("sticky must accept");
    waiting.write_all(b"POST /wait HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nfirst bytes").expect("write");
    let stalled = Instant::now();
    let (early_closed, early_got) = closed_within(&mut early, TIMEOUT + MARGIN);
    let (waiting_closed, waiting_got) = closed_within(&mut waiting, TIMEOUT + MARGIN);
    let early_closed = early_closed.unwrap_or_else(|| {
        panic!(
            "a body stalled after an early answer must be closed within {:?}; got {:?}",
            TIMEOUT + MARGIN,
            String::from_utf8_lossy(&early_got)
        )
    });
    assert!(
        String::from_utf8_lossy(&early_got).starts_with("HTTP/1.1 401"),
        "the early answer reaches the client first: {:?}",
        String::from_utf8_lossy(&early_got)
    );
    let waiting_closed = waiting_closed.unwrap_or_else(|| {
        panic!(
            "a stalled body must be closed within {:?}; got {:?}",
            TIMEOUT + MARGIN,
            String::from_utf8_lossy(&waiting_got)
        )
    });
    for (what, at) in [("early", early_closed), ("waiting", waiting_closed)] {
        assert!(at - stalled <= TIMEOUT + MARGIN, "{what}: closed after {:?}", at - stalled);
    }
    served(lb.addr);
}

#[test]
fn a_client_that_stops_reading_is_closed_at_the_client_timeout_and_new_clients_served() {
    let backend = backend();
    let lb = sticky(&backend);
    served(lb.addr);
    // that client's slot is given back once sticky reads its close
    thread::sleep(Duration::from_millis(300));
    // both connection slots: clients that ask for a large response and never read it
    let mut readers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(lb.addr).expect("sticky must accept");
            s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
            s
        })
        .collect();
    let stalled = Instant::now();
    // sticky gives up on them: it closes their upstream connections, whose writes then fail
    let gave_up = testkit::wait::until(TIMEOUT + MARGIN + Duration::from_secs(2), || {
        backend.big_failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() == 2
    });
    let failed = backend.big_failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert!(gave_up, "sticky must drop both stalled responses within the timeout; {} of 2 dropped", failed.len());
    for at in &failed {
        // the socket buffers fill within a fraction of a second, then nothing moves: timeout + margin
        assert!(*at - stalled <= TIMEOUT + MARGIN + Duration::from_secs(1), "dropped after {:?}", *at - stalled);
    }
    for s in &mut readers {
        // what was buffered drains, then the connection ends before the whole body
        let (closed, got) = closed_within(s, Duration::from_secs(10));
        assert!(closed.is_some(), "the client connection must be closed");
        assert!(got.len() < BIG, "the response must be cut short, got {} bytes", got.len());
    }
    served(lb.addr);
}
