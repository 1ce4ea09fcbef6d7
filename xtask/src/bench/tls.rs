//! The https rows' TLS: one certificate per run (a small CA and a leaf for the VIP's name, made with
//! the openssl CLI) that every balancer serves; wrk's handshake counter and switch (bench/wrk-tls.c,
//! preloaded into wrk); and the checks over TLS, made with curl and `openssl s_client` from the
//! client namespace, since the probe speaks plain HTTP only.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail, ensure};
use serde::{Deserialize, Serialize};

use super::{
    probe::{Reply, backend_of},
    topology::{LOAD_CPU, Topology, VIP, pinned},
    workdir::Workdir,
};

/// How an https row's client connections use TLS (wrk and every check speak TLS to the VIP's port 443).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Keep-alive connections: one handshake each, then every request on it (the record layer only).
    KeepAlive,
    /// A new connection per request (`Connection: close`), each a full handshake (wrk drops the
    /// session it would offer: bench/wrk-tls.c).
    Full,
    /// A new connection per request, each resuming the session of the one before it on that slot
    /// (wrk's own behaviour: it offers its last session).
    Resumed,
    /// HTTP/2 by ALPN on keep-alive connections, many streams each (h2load instead of wrk; the checks
    /// with `curl --http2`).
    H2,
}

/// The name the certificate is for, which every client sends as SNI (wrk through its preload).
pub const SERVER_NAME: &str = "bench.test";

/// The files of a run's certificate, in the work directory.
#[derive(Clone, Debug)]
pub struct Files {
    /// The CA that signed the leaf (what the checks trust).
    pub ca: PathBuf,
    /// The leaf certificate (PEM), for `bench.test` and the VIP's address.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// Leaf and key in one file (HAProxy's `crt`).
    pub combined: PathBuf,
    /// wrk's preload (bench/wrk-tls.c built with cc).
    pub wrk_preload: PathBuf,
}

impl Files {
    /// Where [`prepare`] puts them.
    #[must_use]
    pub fn of(work: &Workdir) -> Self {
        Self {
            ca: work.file("tls-ca.pem"),
            cert: work.file("tls.crt"),
            key: work.file("tls.key"),
            combined: work.file("tls.pem"),
            wrk_preload: work.file("wrk-tls.so"),
        }
    }
}

fn run_tool(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    testkit::process::run(cmd)?;
    Ok(())
}

/// Makes this run's certificate (ECDSA P-256: a CA, and a leaf it signs for `bench.test` and the VIP,
/// valid 2 days) and builds wrk's preload.
///
/// # Errors
/// openssl or cc is missing or fails.
pub fn prepare(work: &Workdir) -> anyhow::Result<Files> {
    let files = Files::of(work);
    let ca_key = work.file("tls-ca.key");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
    run_tool(
        std::process::Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&files.ca)
            .args(["-subj", "/CN=sticky bench CA"]),
    )
    .context("failed to make the bench's CA with openssl")?;
    run_tool(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-CA"])
            .arg(&files.ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(ec)
            .arg("-keyout")
            .arg(&files.key)
            .arg("-out")
            .arg(&files.cert)
            .args(["-subj", &format!("/CN={SERVER_NAME}")])
            .args(["-addext", &format!("subjectAltName=DNS:{SERVER_NAME},IP:{VIP}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]),
    )
    .context("failed to make the bench's certificate with openssl")?;
    let combined = std::fs::read_to_string(&files.cert)? + &std::fs::read_to_string(&files.key)?;
    std::fs::write(&files.combined, combined)?;
    let source = work.file("wrk-tls.c");
    std::fs::write(&source, include_str!("../../../bench/wrk-tls.c"))?;
    run_tool(
        std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&files.wrk_preload)
            .arg(&source)
            .arg("-ldl"),
    )
    .context("failed to build bench/wrk-tls.c (wrk's handshake counter) with cc")?;
    Ok(files)
}

/// wrk's TLS handshakes in one run, as its preload counted them.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Handshakes {
    /// Completed handshakes.
    pub handshakes: u64,
    /// Of which session resumptions.
    pub resumed: u64,
}

impl Handshakes {
    /// Reads (and removes) the counts the preload wrote.
    ///
    /// # Errors
    /// wrk wrote none (it did not load the preload, or made no TLS connection).
    pub fn take(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("wrk's TLS preload wrote no handshake counts to {}", path.display()))?;
        let _ = std::fs::remove_file(path);
        serde_json::from_str(text.trim()).with_context(|| format!("bad handshake counts: {text}"))
    }

    /// Checks the counts against what the row promises, for a run that completed `requests`
    /// requests over `connections` concurrent connections; returns them in words.
    ///
    /// # Errors
    /// A handshake row resumed, a resumed row did full handshakes beyond each connection's first, or a
    /// row with a connection per request did fewer handshakes than requests.
    pub fn check(self, tls: Tls, requests: u64, connections: u64) -> anyhow::Result<String> {
        let Self { handshakes, resumed } = self;
        let full = handshakes - resumed.min(handshakes);
        match tls {
            Tls::KeepAlive | Tls::H2 => {
                ensure!(handshakes <= connections * 2, "keep-alive run made {handshakes} TLS handshakes");
            }
            Tls::Full | Tls::Resumed => {
                ensure!(
                    handshakes >= requests,
                    "{handshakes} TLS handshakes for {requests} requests: connections were reused"
                );
                if tls == Tls::Full {
                    ensure!(
                        resumed == 0,
                        "{resumed} of {handshakes} handshakes resumed a session in a full-handshake row"
                    );
                } else {
                    ensure!(
                        full <= connections,
                        "{full} of {handshakes} handshakes were full (at most one per connection, {connections}, expected): \
                         the server did not resume"
                    );
                }
            }
        }
        Ok(format!("{handshakes} TLS handshakes ({resumed} resumed, {full} full)"))
    }
}

/// The `Requests` probe over TLS, with curl in the client namespace: for each cookie, `connections`
/// curl runs one after the other, each sending `requests` GETs on one keep-alive TLS connection;
/// curl checks the certificate against the bench's CA for `bench.test`.
///
/// # Errors
/// curl fails (handshake, certificate, connection), a connection was not reused within a run, or its
/// output cannot be read.
pub fn requests(
    topo: &Topology,
    files: &Files,
    target: SocketAddr,
    cookies: &[Option<String>],
    connections: u32,
    requests: u32,
    http2: bool,
) -> anyhow::Result<Vec<Reply>> {
    const END: &str = "\nSTICKY-BENCH-END ";
    let url = format!("https://{SERVER_NAME}:{}/", target.port());
    let mut replies = Vec::new();
    for (index, cookie) in cookies.iter().enumerate() {
        for conn in 0..connections {
            let mut cmd = pinned(&topo.cli, LOAD_CPU, Path::new("curl"));
            // h2 rows: HTTP/2 by ALPN only (--http2 would fall back to HTTP/1.1 unseen; the write-out's
            // version is checked instead)
            cmd.args(["-sS", "-i", if http2 { "--http2" } else { "--http1.1" }, "-m", "5", "--cacert"])
                .arg(&files.ca)
                .args(["--resolve", &format!("{SERVER_NAME}:{}:{}", target.port(), target.ip())])
                .args([
                    "-w",
                    &format!("{END}%{{http_code}} %{{num_connects}} %{{ssl_verify_result}} %{{http_version}}\\n"),
                ]);
            if let Some(cookie) = cookie {
                cmd.args(["-H", &format!("Cookie: {cookie}")]);
            }
            for _ in 0..requests {
                cmd.arg(&url);
            }
            let out = testkit::process::run(&mut cmd).context("curl over TLS failed")?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let parsed = parse_curl(&text, END)?;
            ensure!(
                parsed.len() == requests as usize,
                "curl printed {} of {requests} responses:\n{text}",
                parsed.len()
            );
            let version = if http2 { "2" } else { "1.1" };
            ensure!(
                parsed.iter().all(|p| p.version == version),
                "curl spoke HTTP/{:?}, not HTTP/{version}",
                parsed.iter().map(|p| p.version.as_str()).collect::<Vec<_>>()
            );
            let connects: u32 = parsed.iter().map(|p| p.connects).sum();
            ensure!(connects == 1, "{requests} requests on one curl run took {connects} TLS connections, not 1");
            for p in parsed {
                replies.push(Reply {
                    cookie: index,
                    conn,
                    status: p.status,
                    backend: p.backend,
                    set_cookie: p.set_cookie,
                });
            }
        }
    }
    Ok(replies)
}

/// One response as curl printed it.
#[derive(Debug, PartialEq, Eq)]
struct CurlResponse {
    status: u16,
    connects: u32,
    version: String,
    backend: Option<String>,
    set_cookie: Vec<String>,
}

/// Splits `curl -i -w '{end}CODE CONNECTS VERIFY VERSION\n'` output into responses.
fn parse_curl(text: &str, end: &str) -> anyhow::Result<Vec<CurlResponse>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(end) {
        let response = &rest[..at];
        let tail = &rest[at + end.len()..];
        let (line, after) = tail.split_once('\n').unwrap_or((tail, ""));
        rest = after;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [status, connects, verify, version] = fields[..] else { bail!("bad curl write-out line {line:?}") };
        ensure!(verify == "0", "curl's certificate check failed (ssl_verify_result {verify})");
        let (head, body) = response.split_once("\r\n\r\n").context("curl printed a response without a head")?;
        let set_cookie = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.split(';').next().unwrap_or_default().trim().to_owned())
            .collect();
        // The write-out starts with a newline, found after the body's own (a body without one names
        // no backend, as in the probe).
        out.push(CurlResponse {
            status: status.parse().context("bad status")?,
            connects: connects.parse().context("bad connect count")?,
            version: version.to_owned(),
            backend: backend_of(body.as_bytes()),
            set_cookie,
        });
    }
    Ok(out)
}

/// Checks that the listener resumes a TLS session (`openssl s_client`: a session saved from one
/// connection is offered on the next, which must report `Reused`), and names the protocol and cipher
/// the server picked.
///
/// # Errors
/// `s_client` fails, or the second connection was a full handshake.
pub fn resumption(topo: &Topology, files: &Files, work: &Workdir, target: SocketAddr) -> anyhow::Result<String> {
    let session = work.file("tls-session.pem");
    let _ = std::fs::remove_file(&session);
    let connect = |flag: &str| -> anyhow::Result<String> {
        // The request closes the connection, so s_client reads the server's session tickets
        // (TLS 1.3 sends them after the handshake) before it exits.
        let script = format!(
            "printf 'GET / HTTP/1.1\\r\\nHost: {SERVER_NAME}\\r\\nConnection: close\\r\\n\\r\\n' | \
             timeout 5 openssl s_client -connect {target} -servername {SERVER_NAME} -CAfile {} -verify_return_error \
             -ign_eof {flag} {}",
            files.ca.display(),
            session.display()
        );
        let out =
            testkit::process::run(topo.cli.command("sh").args(["-c", &script])).context("openssl s_client failed")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let first = connect("-sess_out")?;
    ensure!(first.contains("\nb1\n") || first.contains("\nb2\n"), "s_client's GET got no backend's body:\n{first}");
    let second = connect("-sess_in")?;
    let line = |text: &str, prefix: &str| -> String {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().trim().to_owned()
    };
    let reused = line(&second, "Reused,");
    ensure!(!reused.is_empty(), "the second s_client connection did not resume the session: {}", line(&second, "New,"));
    Ok(format!("openssl s_client: {} ({}); then {reused}", line(&first, "New,"), line(&first, "Server Temp Key:")))
}

#[cfg(test)]
mod tests {
    use super::Tls;
    use super::{CurlResponse, Handshakes, parse_curl};

    #[test]
    fn reads_curls_responses() {
        let end = "\nSTICKY-BENCH-END ";
        let text = "HTTP/1.1 200 OK\r\nSet-Cookie: SRV=b1; path=/\r\ncontent-length: 3\r\n\r\nb1\n\nSTICKY-BENCH-END 200 1 0 1.1\n\
                    HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nb2\n\nSTICKY-BENCH-END 200 0 0 2\n";
        let r = parse_curl(text, end).unwrap();
        assert_eq!(
            r,
            vec![
                CurlResponse {
                    status: 200,
                    connects: 1,
                    version: "1.1".into(),
                    backend: Some("b1".into()),
                    set_cookie: vec!["SRV=b1".into()]
                },
                CurlResponse {
                    status: 200,
                    connects: 0,
                    version: "2".into(),
                    backend: Some("b2".into()),
                    set_cookie: vec![]
                },
            ]
        );
        assert!(parse_curl("HTTP/1.1 200 OK\r\n\r\nb1\n\nSTICKY-BENCH-END 200 1 20 1.1\n", end).is_err());
    }

    #[test]
    fn handshake_counts_must_match_the_row() {
        let h = |handshakes, resumed| Handshakes { handshakes, resumed };
        assert!(h(1000, 0).check(Tls::Full, 990, 64).is_ok());
        assert!(h(1000, 1).check(Tls::Full, 990, 64).is_err());
        assert!(h(900, 0).check(Tls::Full, 990, 64).is_err());
        assert!(h(1000, 936).check(Tls::Resumed, 990, 64).is_ok());
        assert!(h(1000, 900).check(Tls::Resumed, 990, 64).is_err());
        assert!(h(64, 0).check(Tls::KeepAlive, 100_000, 64).is_ok());
        assert!(h(1000, 0).check(Tls::KeepAlive, 100_000, 64).is_err());
    }
}
