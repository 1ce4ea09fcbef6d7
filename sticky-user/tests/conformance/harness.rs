//! The conformance table's harness: a scriptable raw fake backend (a std `TcpListener` served by one
//! thread per connection), a raw client that sends a row's bytes and reads what comes back, and the
//! few HTTP/1 readers both need. Everything is bounded in time: a row that hangs is a failed row.
//!
//! The fake backend answers one request at a time per connection, for as many requests as the
//! connection carries (sticky may reuse an upstream connection from one row in the next): it reads a
//! request head, then its body by the request's own framing (Content-Length or chunked), records it,
//! and writes the current row's scripted reply. A request that does not complete (malformed framing,
//! or [`QUIET`] without a byte) is recorded as incomplete, never answered, and its connection closed.
//! Every byte received during a row is also kept raw, whatever the framing, so a row can say "the
//! backend received nothing at all" or "never these bytes".

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

/// How long the fake backend waits for the rest of a request that stopped arriving.
pub const QUIET: Duration = Duration::from_millis(700);
/// How long the client waits for what a row expects (a response, the connection's end).
pub const CLIENT_WAIT: Duration = Duration::from_secs(4);
/// Granularity of every blocking read.
const TICK: Duration = Duration::from_millis(20);

/// What the fake backend answers to each complete request of a row.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// These bytes, as they are.
    Bytes(&'static [u8]),
    /// `200` with the request target as the body (pipelining rows tell responses apart by it).
    EchoTarget,
}

/// One request as the fake backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Which backend connection it came on.
    pub conn: usize,
    /// The head, final CRLF included.
    pub head: Vec<u8>,
    /// The body exactly as received (chunked framing included).
    pub body: Vec<u8>,
    /// Whether the framing said the request ended (else the connection closed or went quiet first).
    pub complete: bool,
}

impl Received {
    /// The request line.
    pub fn line(&self) -> &[u8] {
        let end = find(&self.head, b"\r\n").unwrap_or(self.head.len());
        &self.head[..end]
    }

    /// The values (OWS-trimmed) of every field named `name` (ASCII case-insensitive), in order.
    pub fn values(&self, name: &str) -> Vec<Vec<u8>> {
        fields(&self.head)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
            .collect()
    }
}

/// The field lines of a head as (name, trimmed value), start line skipped.
pub fn fields(head: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            Some((l[..colon].to_vec(), l[colon + 1..].trim_ascii().to_vec()))
        })
        .collect()
}

#[derive(Default)]
struct State {
    reply: Option<Reply>,
    close_after: bool,
    requests: Vec<Received>,
    wire: Vec<u8>,
    /// Per backend connection: whether its peer (sticky) closed it.
    peer_closed: Vec<bool>,
}

/// The fake backend: its address and what it received during the current row.
#[derive(Clone)]
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // a panicking connection thread must not take the table down with it
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend {
    /// Starts listening on a free loopback port; the threads live as long as the test process.
    ///
    /// # Panics
    /// Loopback cannot be bound.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the fake backend must bind loopback");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(Mutex::new(State { reply: Some(Reply::Bytes(OK)), ..State::default() }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = {
                    let mut s = lock(&shared);
                    s.peer_closed.push(false);
                    s.peer_closed.len() - 1
                };
                let shared = Arc::clone(&shared);
                thread::spawn(move || serve(stream, conn, &shared));
            }
        });
        Self { addr, state }
    }

    /// Starts a row: forgets what was received, answers with `reply` from now on.
    pub fn script(&self, reply: Reply, close_after: bool) {
        let mut s = lock(&self.state);
        s.reply = Some(reply);
        s.close_after = close_after;
        s.requests.clear();
        s.wire.clear();
    }

    /// The requests recorded since the row started.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state).requests.clone()
    }

    /// Every byte received since the row started, on any connection.
    pub fn wire(&self) -> Vec<u8> {
        lock(&self.state).wire.clone()
    }

    /// Whether sticky closed backend connection `conn`, waiting at most `within`.
    pub fn peer_closed(&self, conn: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if lock(&self.state).peer_closed.get(conn).copied().unwrap_or(false) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(TICK);
        }
    }
}

/// The default reply: a plain keep-alive 200.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Serves one backend connection until its peer closes it, a request stays incomplete, or the row
/// asks for a close.
fn serve(mut stream: TcpStream, conn: usize, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::new();
    let mut last_byte = Instant::now();
    let mut continued = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match frame(&buf) {
            Frame::Complete { head, total } => {
                let rest = buf.split_off(total);
                let body = buf.split_off(head);
                let received = Received { conn, head: std::mem::take(&mut buf), body, complete: true };
                buf = rest;
                continued = false;
                let (reply, close) = {
                    let mut s = lock(state);
                    s.requests.push(received.clone());
                    (s.reply, s.close_after)
                };
                let bytes = match reply {
                    Some(Reply::Bytes(b)) => b.to_vec(),
                    Some(Reply::EchoTarget) => {
                        let line = received.line();
                        let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
                        let mut out =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", target.len()).into_bytes();
                        out.extend_from_slice(target);
                        out
                    }
                    None => Vec::new(),
                };
                if stream.write_all(&bytes).is_err() {
                    return;
                }
                if find(&bytes, b" 101 ").is_some_and(|at| at < 12) {
                    // a tunnel now: take whatever comes until the end
                    drain(&mut stream, conn, state);
                    return;
                }
                if close {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                continue;
            }
            Frame::Invalid => {
                incomplete(&mut buf, conn, state);
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Frame::NeedMore { expects_continue } => {
                if expects_continue && !continued {
                    continued = true;
                    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                incomplete(&mut buf, conn, state);
                closed(conn, state);
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                lock(state).wire.extend_from_slice(&chunk[..n]);
                last_byte = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !buf.is_empty() && last_byte.elapsed() > QUIET {
                    incomplete(&mut buf, conn, state);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(_) => {
                incomplete(&mut buf, conn, state);
                closed(conn, state);
                return;
            }
        }
    }
}

/// Records what is left in `buf` as an incomplete request.
fn incomplete(buf: &mut Vec<u8>, conn: usize, state: &Mutex<State>) {
    if buf.is_empty() {
        return;
    }
    let head_len = find(buf, b"\r\n\r\n").map_or(buf.len(), |at| at + 4);
    let body = buf.split_off(head_len);
    let head = std::mem::take(buf);
    lock(state).requests.push(Received { conn, head, body, complete: false });
}

fn closed(conn: usize, state: &Mutex<State>) {
    if let Some(c) = lock(state).peer_closed.get_mut(conn) {
        *c = true;
    }
}

/// Reads a tunnel's bytes into the row's raw record until the peer closes.
fn drain(stream: &mut TcpStream, conn: usize, state: &Mutex<State>) {
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => lock(state).wire.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    closed(conn, state);
}

/// The fields of `fields` named `name`.
fn named<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &'static str) -> impl Iterator<Item = &'a (Vec<u8>, Vec<u8>)> {
    fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
}

/// Where a request at the start of a buffer stands, read by its own framing.
enum Frame {
    NeedMore { expects_continue: bool },
    Complete { head: usize, total: usize },
    Invalid,
}

fn frame(buf: &[u8]) -> Frame {
    if buf.is_empty() {
        return Frame::NeedMore { expects_continue: false };
    }
    let Some(end) = find(buf, b"\r\n\r\n") else { return Frame::NeedMore { expects_continue: false } };
    let head = end + 4;
    let fields = fields(&buf[..head]);
    let named = |name: &'static str| named(&fields, name);
    let expects_continue = named("expect").any(|(_, v)| v.eq_ignore_ascii_case(b"100-continue"));
    let chunked = named("transfer-encoding")
        .last()
        .and_then(|(_, v)| v.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii))
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
    let body = &buf[head..];
    let body_len = if chunked {
        match chunked_len(body) {
            Chunked::Done(n) => n,
            Chunked::More => return Frame::NeedMore { expects_continue },
            Chunked::Invalid => return Frame::Invalid,
        }
    } else if let Some((_, v)) = named("content-length").next() {
        let Some(n) = std::str::from_utf8(v).ok().and_then(|s| s.parse::<usize>().ok()) else {
            return Frame::Invalid;
        };
        if body.len() < n {
            return Frame::NeedMore { expects_continue };
        }
        n
    } else {
        0
    };
    Frame::Complete { head, total: head + body_len }
}

/// Where a chunked body stands.
pub enum Chunked {
    /// Complete: this many bytes, trailers and final CRLF included.
    Done(usize),
    /// More bytes are needed.
    More,
    /// Not chunked framing.
    Invalid,
}

/// The length of the chunked body at the start of `body` (a reader, not a validator: it accepts
/// what a lenient server would).
pub fn chunked_len(body: &[u8]) -> Chunked {
    let mut at = 0;
    loop {
        let Some(eol) = find(&body[at..], b"\r\n") else { return Chunked::More };
        let line = &body[at..at + eol];
        let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let Some(size) = std::str::from_utf8(size).ok().and_then(|s| usize::from_str_radix(s, 16).ok()) else {
            return Chunked::Invalid;
        };
        at += eol + 2;
        if size == 0 {
            // trailers, then the empty line
            loop {
                let Some(eol) = find(&body[at..], b"\r\n") else { return Chunked::More };
                at += eol + 2;
                if eol == 0 {
                    return Chunked::Done(at);
                }
            }
        }
        if body.len() < at + size + 2 {
            return Chunked::More;
        }
        if &body[at + size..at + size + 2] != b"\r\n" {
            return Chunked::Invalid;
        }
        at += size + 2;
    }
}

/// The data of a complete chunked body.
pub fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(eol) = find(&body[at..], b"\r\n") {
        let line = &body[at..at + eol];
        let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(size).ok().and_then(|s| usize::from_str_radix(s, 16).ok()).unwrap_or(0);
        at += eol + 2;
        if size == 0 || body.len() < at + size {
            break;
        }
        out.extend_from_slice(&body[at..at + size]);
        at += size + 2;
    }
    out
}

/// First position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One response as the client read it.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, final CRLF included.
    pub head: Vec<u8>,
    /// The body's data (dechunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The values (OWS-trimmed) of every field named `name`, in order.
    pub fn values(&self, name: &str) -> Vec<Vec<u8>> {
        fields(&self.head)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
            .collect()
    }
}

/// What the client saw of its connection.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Complete responses, interim ones included, in order.
    pub responses: Vec<Response>,
    /// Whether sticky closed the connection (EOF or reset) before the client stopped reading.
    pub closed: bool,
    /// Everything received.
    pub raw: Vec<u8>,
}

/// What a row's client does, in order.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read until this many responses (interim ones count) are complete, or the connection ends.
    Await(usize),
}

/// Runs a client: a fresh connection to `addr`, `steps`, then reads until `want` responses are complete
/// and, if `until_close`, until the connection ends (each wait at most [`CLIENT_WAIT`]).
/// `heads`: indices of the responses that answer a HEAD (no body).
///
/// # Panics
/// sticky cannot be connected to.
pub fn exchange(addr: SocketAddr, steps: &[Step], heads: &[usize], want: usize, until_close: bool) -> Seen {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("sticky must accept");
    let _ = stream.set_read_timeout(Some(TICK));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut client = Reader { raw: Vec::new(), closed: false, heads };
    for step in steps {
        match step {
            Step::Send(bytes) => {
                if stream.write_all(bytes).is_err() {
                    // sticky refused and closed before taking it all: what it answered is still read
                    break;
                }
            }
            Step::Await(n) => client.until(&mut stream, |s| s.responses.len() >= *n),
        }
    }
    if until_close {
        client.until(&mut stream, |_| false);
    } else {
        client.until(&mut stream, |s| s.responses.len() >= want);
    }
    parse(&client.raw, heads, client.closed)
}

struct Reader<'a> {
    raw: Vec<u8>,
    closed: bool,
    heads: &'a [usize],
}

impl Reader<'_> {
    /// Reads until `stop` says so, the connection ends, or [`CLIENT_WAIT`] passes.
    fn until(&mut self, stream: &mut TcpStream, stop: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + CLIENT_WAIT;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.closed || stop(&parse(&self.raw, self.heads, false)) || Instant::now() >= deadline {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.closed = true,
            }
        }
    }
}

/// Splits what a client received into responses.
fn parse(raw: &[u8], heads: &[usize], closed: bool) -> Seen {
    let mut seen = Seen { closed, raw: raw.to_vec(), ..Seen::default() };
    let mut at = 0;
    while at < raw.len() {
        let rest = &raw[at..];
        let Some(end) = find(rest, b"\r\n\r\n") else { break };
        let head = &rest[..end + 4];
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(_)) = r.parse(head) else { break };
        let status = r.code.unwrap_or(0);
        let fields = fields(head);
        let named = |name: &'static str| named(&fields, name);
        let bodyless =
            heads.contains(&seen.responses.len()) || (100..200).contains(&status) || status == 204 || status == 304;
        let chunked = named("transfer-encoding")
            .last()
            .and_then(|(_, v)| v.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii))
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        let length =
            named("content-length").next().and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
        let body_at = &rest[head.len()..];
        let (body, used) = if bodyless {
            (Vec::new(), 0)
        } else if chunked {
            match chunked_len(body_at) {
                Chunked::Done(n) => (dechunk(&body_at[..n]), n),
                Chunked::More | Chunked::Invalid => break,
            }
        } else if let Some(n) = length {
            if body_at.len() < n {
                break;
            }
            (body_at[..n].to_vec(), n)
        } else if closed {
            (body_at.to_vec(), body_at.len())
        } else {
            break;
        };
        seen.responses.push(Response { status, head: head.to_vec(), body });
        at += head.len() + used;
    }
    seen
}

/// Bytes as text for messages (escapes for everything that is not printable ASCII).
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
