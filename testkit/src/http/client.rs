//! The HTTP/1.1 client: one connection (optionally from a chosen source address, every wait bounded by
//! a timeout) that sends requests or raw bytes and reads responses, kept alive for as many exchanges as
//! the caller makes; and one-shot requests on a fresh connection (`connection: close`).

use std::{
    io::{BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use super::{
    message::Response,
    wire::{self, Framing, MAX_BODY, WireError},
};
use crate::net::{self, NetError};

/// How long a connect may take by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one read or write may block by default: a response that does not come is an error, not a
/// hung test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// An exchange that failed, naming the peer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection could not be opened.
    #[error(transparent)]
    Connect(#[from] NetError),
    /// A socket option or the request's write failed.
    #[error("failed to {action} on the connection to {peer}")]
    Send {
        /// The server.
        peer: SocketAddr,
        /// What failed.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The response did not arrive whole, or is not HTTP/1.
    #[error("bad response from {peer}")]
    Receive {
        /// The server.
        peer: SocketAddr,
        /// What went wrong.
        #[source]
        source: WireError,
    },
}

/// Opens a [`Client`]: `Client::to(addr).from(ip).io_timeout(d).host("x").open()`.
#[derive(Clone, Debug)]
pub struct Connect {
    addr: SocketAddr,
    from: Option<IpAddr>,
    #[expect(
        clippy::struct_field_names,
        reason = "the field of the `connect_timeout` setter, both named as std's `TcpStream::connect_timeout`"
    )]
    connect_timeout: Duration,
    io_timeout: Duration,
    host: Option<String>,
}

impl Connect {
    /// Connects from `source` (any port) instead of the address the routing table picks.
    #[must_use]
    pub fn from(mut self, source: impl Into<IpAddr>) -> Self {
        self.from = Some(source.into());
        self
    }

    /// How long the connect may take (default [`CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read or write may block (default [`IO_TIMEOUT`]).
    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The `host` header of requests that bring none (default: the address, `ip:port`).
    #[must_use]
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Connects (from the calling thread's network namespace).
    ///
    /// # Errors
    /// The connect fails or times out, or a socket option cannot be set.
    pub fn open(self) -> Result<Client, HttpError> {
        let peer = self.addr;
        let stream = net::connect(peer, self.from, self.connect_timeout)?;
        let send = |action| move |source| HttpError::Send { peer, action, source };
        stream.set_read_timeout(Some(self.io_timeout)).map_err(send("set a read timeout"))?;
        stream.set_write_timeout(Some(self.io_timeout)).map_err(send("set a write timeout"))?;
        // Requests go out in one write each; no need to wait for Nagle's timer between exchanges.
        stream.set_nodelay(true).map_err(send("set TCP_NODELAY"))?;
        let reader = BufReader::new(stream.try_clone().map_err(send("clone the socket"))?);
        let host = self.host.unwrap_or_else(|| peer.to_string());
        Ok(Client { peer, host, stream, reader, head_request: false })
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Client {
    peer: SocketAddr,
    host: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The last request sent was a HEAD: its response has no body.
    head_request: bool,
}

impl Client {
    /// A connection to `addr`, to configure before [`Connect::open`].
    #[must_use]
    pub fn to(addr: impl Into<SocketAddr>) -> Connect {
        Connect { addr: addr.into(), from: None, connect_timeout: CONNECT_TIMEOUT, io_timeout: IO_TIMEOUT, host: None }
    }

    /// Connects to `addr` with the default timeouts.
    ///
    /// # Errors
    /// The connect fails or times out.
    pub fn connect(addr: impl Into<SocketAddr>) -> Result<Self, HttpError> {
        Self::to(addr).open()
    }

    /// The server's address.
    #[must_use]
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for shutdown, linger and timeouts.
    #[must_use]
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends a request and reads its response.
    ///
    /// # Errors
    /// The write fails, or the response does not arrive whole in time.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        self.send(method, path, headers, body, Framing::Length)?;
        self.read_response()
    }

    /// `GET path` and its response.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn get(&mut self, path: &str) -> Result<Response, HttpError> {
        self.request("GET", path, &[], b"")
    }

    /// Writes a request without waiting for the response (see [`wire::write_request`]).
    ///
    /// # Errors
    /// The write fails.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing,
    ) -> Result<(), HttpError> {
        self.head_request = method.eq_ignore_ascii_case("HEAD");
        wire::write_request(&mut self.stream, method, path, &self.host, headers, body, framing)
            .map_err(|source| HttpError::Send { peer: self.peer, action: "write a request", source })
    }

    /// Writes `bytes` as they are (a malformed request, a pipelined pair).
    ///
    /// # Errors
    /// The write fails.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.head_request = false;
        self.stream.write_all(bytes).map_err(|source| HttpError::Send {
            peer: self.peer,
            action: "write raw bytes",
            source,
        })
    }

    /// Reads one response (Content-Length, chunked, or until the server closes).
    ///
    /// # Errors
    /// The connection fails, times out or closes before a whole response, or it is not HTTP/1.
    pub fn read_response(&mut self) -> Result<Response, HttpError> {
        wire::read_response(&mut self.reader, self.head_request)
            .map_err(|source| HttpError::Receive { peer: self.peer, source })
    }

    /// Reads until the server closes (at most 64 MiB); returns what arrived.
    ///
    /// # Errors
    /// The read fails, e.g. on a reset or a timeout.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        (&mut self.reader).take(MAX_BODY).read_to_end(&mut rest)?;
        Ok(rest)
    }
}

/// One request on a fresh connection with `connection: close` (unless `headers` has a `connection`),
/// default timeouts, `host` = `addr` unless `headers` has one.
///
/// # Errors
/// Connect, write or read fails, or the response does not parse.
pub fn request(
    addr: impl Into<SocketAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut all = headers.to_vec();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        all.push(("connection", "close"));
    }
    Client::connect(addr)?.request(method, path, &all, body)
}

/// `GET path` on a fresh connection, as [`request`].
///
/// # Errors
/// As [`request`].
pub fn get(addr: impl Into<SocketAddr>, path: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    request(addr, "GET", path, headers, b"")
}

/// Sends `bytes` as they are on a fresh connection and reads one response.
///
/// # Errors
/// As [`request`].
pub fn raw(addr: impl Into<SocketAddr>, bytes: &[u8]) -> Result<Response, HttpError> {
    let mut client = Client::connect(addr)?;
    client.send_raw(bytes)?;
    client.read_response()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufReader, Write as _},
        net::{Ipv4Addr, SocketAddr, TcpListener},
        thread::JoinHandle,
        time::Duration,
    };

    use super::{Client, HttpError, get};
    use crate::http::{Framing, wire};

    /// A server on loopback that accepts `connections` connections, answers every request on each
    /// with `I'm srv <n>` (n counts the requests of that connection) and the source address it saw,
    /// and returns how many requests each connection carried.
    fn server(connections: usize) -> (SocketAddr, JoinHandle<Vec<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback must work");
        let addr = listener.local_addr().expect("a bound listener must have an address");
        let handle = std::thread::spawn(move || {
            (0..connections)
                .map(|_| {
                    let (stream, peer) = listener.accept().expect("the test client must connect");
                    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout must be settable");
                    let mut reader = BufReader::new(stream.try_clone().expect("a socket must be clonable"));
                    let mut writer = stream;
                    let mut served = 0;
                    while let Ok(Some(req)) = wire::read_request(&mut reader) {
                        served += 1;
                        let body =
                            format!("I'm srv {served}\nfrom {}\n{}", peer.ip(), String::from_utf8_lossy(&req.body));
                        let close = req.header("connection") == Some("close");
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        writer
                            .write_all(head.as_bytes())
                            .and_then(|()| writer.write_all(body.as_bytes()))
                            .expect("the test server must write its response");
                        if close {
                            break;
                        }
                    }
                    served
                })
                .collect()
        });
        (addr, handle)
    }

    #[test]
    fn one_connection_carries_many_requests() {
        let (addr, server) = server(1);
        let mut client = Client::connect(addr).expect("the client must connect");
        for i in 1..=3 {
            let r = client.get("/").expect("every request on the connection must be answered");
            assert_eq!(r.whoami(), Some(format!("srv {i}").as_str()), "request {i} must reuse the connection");
        }
        let r = client.request("POST", "/", &[], b"posted").expect("a POST must be answered");
        assert!(r.text().ends_with("posted"), "the body must reach the server: {r:?}");
        client
            .send("PUT", "/", &[("connection", "close")], b"in two chunks", Framing::Chunked)
            .expect("a chunked request must be written");
        let r = client.read_response().expect("a chunked request must be answered");
        assert!(r.text().ends_with("in two chunks"), "{r:?}");
        assert_eq!(client.read_to_end().expect("the server must close after connection: close"), b"");
        assert_eq!(server.join().expect("the server thread must not panic"), vec![5], "all on one connection");
    }

    #[test]
    fn a_one_shot_request_closes_its_connection_and_a_source_address_is_kept() {
        let (addr, server) = server(2);
        let r = get(addr, "/", &[]).expect("a one-shot GET must be answered");
        assert_eq!(r.whoami(), Some("srv 1"));
        let from = Ipv4Addr::new(127, 0, 0, 3);
        let mut client = Client::to(addr).from(from).open().expect("a connect from 127.0.0.3 must work");
        let r = client
            .request("GET", "/", &[("connection", "close")], b"")
            .expect("a request with connection: close must be answered");
        assert!(r.text().contains("from 127.0.0.3"), "the server must see the chosen source: {r:?}");
        assert_eq!(server.join().expect("the server thread must not panic"), vec![1, 1]);
    }

    #[test]
    fn a_silent_server_is_a_timeout_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding loopback must work");
        let addr = listener.local_addr().expect("a bound listener must have an address");
        let mut client =
            Client::to(addr).io_timeout(Duration::from_millis(50)).open().expect("a connect to a listener must work");
        let err = client.get("/").expect_err("no response must be an error");
        assert!(matches!(err, HttpError::Receive { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "the error must name the server: {err}");
        drop(listener);
    }
}
