//! The load generator: Debian's wrk, one thread and 64 keep-alive connections, from the client
//! namespace on the load CPU; its Lua `done()` prints the totals and percentiles the bench reads.

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::{
    configs::Tls,
    tls::{self, Handshakes},
    topology::{LOAD_CPU, Topology},
};

/// wrk threads: one, as in shared/perf-baseline.md (it saturates at ~180-210k req/s on this VM).
pub const THREADS: u32 = 1;
/// Concurrent connections.
pub const CONNECTIONS: u32 = 64;

/// The measured run's report (bench/report.lua).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Report {
    /// Completed requests.
    pub requests: u64,
    /// Length of the run in µs.
    pub duration_us: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Socket errors and non-2xx/3xx responses.
    pub errors: Errors,
    /// Latency percentiles in µs.
    pub latency_us: Latency,
}

/// wrk's error counters.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Errors {
    /// Failed connects.
    pub connect: u64,
    /// Failed reads.
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Responses with a status >= 400.
    pub status: u64,
    /// Requests without a response in 2 s.
    pub timeout: u64,
}

impl Errors {
    /// All of them.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.status + self.timeout
    }
}

/// Latency percentiles, µs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Report {
    /// Requests per second.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "request counts and durations are far below 2^52")]
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// The warm-up run's count of who answered (bench/verify.lua).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Verify {
    /// Responses.
    pub responses: u64,
    /// Responses carrying a Set-Cookie header.
    pub set_cookie: u64,
    /// Responses whose status was not 200.
    pub not_200: u64,
    /// Responses by the backend their body names (`other`: a body naming no backend).
    pub bodies: BTreeMap<String, u64>,
}

/// How wrk speaks TLS in an https row.
#[derive(Clone, Copy, Debug)]
pub struct Https<'a> {
    /// Keep-alive, or a connection per request with full or resumed handshakes.
    pub tls: Tls,
    /// The run's TLS files (wrk's preload among them).
    pub files: &'a tls::Files,
}

/// One wrk run: `script` is report.lua or verify.lua (their files are written to `dir`). With
/// `https`, wrk speaks TLS (Debian's wrk links OpenSSL and does not check the certificate), with
/// bench/wrk-tls.c preloaded, which counts its handshakes (they are returned) and makes it send
/// `bench.test` as SNI, not the VIP's address. A row with a handshake
/// per request sends `Connection: close`, so each request takes a new connection.
///
/// # Errors
/// wrk fails or prints no report line.
pub fn run_wrk(
    topo: &Topology,
    dir: &Path,
    target: SocketAddr,
    cookie: Option<&str>,
    seconds: u32,
    script: Script,
    https: Option<Https<'_>>,
) -> anyhow::Result<(String, Option<Handshakes>)> {
    let (file, text) = match script {
        Script::Report => ("report.lua", include_str!("../../../bench/report.lua")),
        Script::Verify => ("verify.lua", include_str!("../../../bench/verify.lua")),
    };
    let path = dir.join(file);
    if !path.exists() {
        std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
    }
    let mut cmd = topo.cli.command("taskset");
    cmd.args(["-c", &LOAD_CPU.to_string(), "wrk"])
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&path);
    if let Some(cookie) = cookie {
        cmd.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let counts = dir.join("wrk-tls-counts.json");
    match https {
        Some(https) => {
            let _ = std::fs::remove_file(&counts);
            cmd.env("LD_PRELOAD", &https.files.wrk_preload)
                .env("STICKY_BENCH_TLS_COUNTS", &counts)
                .env("STICKY_BENCH_TLS_SNI", tls::SERVER_NAME);
            if https.tls == Tls::Full {
                cmd.env("STICKY_BENCH_TLS_FULL", "1");
            }
            if https.tls != Tls::KeepAlive {
                cmd.args(["-H", "Connection: close"]);
            }
            cmd.arg(format!("https://{target}/"));
        }
        None => {
            cmd.arg(format!("http://{target}/"));
        }
    }
    let out = testkit::process::run(&mut cmd)?;
    let handshakes = https.map(|_| Handshakes::take(&counts)).transpose()?;
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), handshakes))
}

/// Which Lua script a run uses.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Measured runs: no per-request Lua.
    Report,
    /// Warm-up: counts bodies, Set-Cookie and statuses.
    Verify,
}

/// The JSON after `tag` on one line of wrk's output.
///
/// # Errors
/// No such line, or it does not parse.
pub fn parse<T: serde::de::DeserializeOwned>(output: &str, tag: &str) -> anyhow::Result<T> {
    let Some(json) = output.lines().find_map(|l| l.strip_prefix(tag)) else {
        bail!("wrk printed no {tag} line:\n{output}");
    };
    serde_json::from_str(json.trim()).with_context(|| format!("bad {tag} line: {json}"))
}

/// The installed wrk's version line.
#[must_use]
pub fn version() -> String {
    // `wrk -v` prints its version and usage, exits non-zero.
    std::process::Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{Report, Verify, parse};

    #[test]
    fn reads_the_lua_report_lines() {
        let out = "Running 1s test @ http://198.19.0.100/\nSTICKY-BENCH-RESULT {\"requests\":1000,\"duration_us\":500000,\
                   \"bytes\":9,\"errors\":{\"connect\":0,\"read\":0,\"write\":0,\"status\":0,\"timeout\":0},\
                   \"latency_us\":{\"p50\":1,\"p99\":2,\"p999\":3,\"max\":4}}\n";
        let r: Report = parse(out, "STICKY-BENCH-RESULT ").unwrap();
        assert!((r.rps() - 2000.0).abs() < 1e-9);
        let v: Verify = parse(
            "STICKY-BENCH-VERIFY {\"responses\":3,\"set_cookie\":3,\"not_200\":0,\"bodies\":{\"b1\":2,\"b2\":1}}",
            "STICKY-BENCH-VERIFY ",
        )
        .unwrap();
        assert_eq!(v.bodies["b2"], 1);
        assert!(parse::<Verify>("nothing", "STICKY-BENCH-VERIFY ").is_err());
    }
}
