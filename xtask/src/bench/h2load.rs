//! The h2 rows' load generator (issue 15): Debian's h2load (nghttp2-client), one thread, 10 TLS
//! connections negotiating `h2` by ALPN with 10 concurrent streams each, from the client namespace on
//! the load CPU. h2load writes one line per request (`--log-file`: start, status, µs), from which the
//! bench takes the count, the statuses and the latency percentiles; its own summary gives the run's
//! length. h2load does not show response bodies: who answered is checked before the load, over h2
//! with curl ([`super::tls::requests`]).

use std::{net::SocketAddr, path::Path};

use anyhow::{Context as _, bail, ensure};

use super::{
    tls,
    topology::{LOAD_CPU, Topology},
    wrk::{Errors, Latency, Report},
};

/// Client connections (h2load `-c`).
pub const CLIENTS: u32 = 10;
/// Concurrent streams per connection (h2load `-m`): 100 requests in flight, as wrk's 64 connections.
pub const STREAMS: u32 = 10;

/// One h2load run of `seconds` against `target` (TLS, SNI and `:authority` `bench.test`, ALPN h2
/// only), with `cookie` on every request.
///
/// # Errors
/// h2load fails, did not negotiate h2, or wrote no request.
pub fn run(
    topo: &Topology,
    dir: &Path,
    target: SocketAddr,
    cookie: Option<&str>,
    seconds: u32,
) -> anyhow::Result<Report> {
    let log = dir.join("h2load-requests.tsv");
    let _ = std::fs::remove_file(&log);
    let mut cmd = topo.cli.command("taskset");
    cmd.args(["-c", &LOAD_CPU.to_string(), "h2load", "-t1"])
        .arg(format!("-c{CLIENTS}"))
        .arg(format!("-m{STREAMS}"))
        .arg(format!("-D{seconds}"))
        .arg("--npn-list=h2")
        .arg(format!("--connect-to={target}"))
        .arg("--log-file")
        .arg(&log);
    if let Some(cookie) = cookie {
        cmd.args(["-H", &format!("cookie: {cookie}")]);
    }
    cmd.arg(format!("https://{}:{}/", tls::SERVER_NAME, target.port()));
    let out = testkit::process::run(&mut cmd).context("h2load failed")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(text.contains("Application protocol: h2"), "h2load did not speak h2:\n{text}");
    let duration_us = finished_us(&text).with_context(|| format!("h2load printed no run length:\n{text}"))?;
    let lines = std::fs::read_to_string(&log).with_context(|| format!("h2load wrote no {}", log.display()))?;
    let report = report(&lines, duration_us)?;
    ensure!(report.requests > 0, "h2load completed no request:\n{text}");
    Ok(report)
}

/// `finished in 2.00s, ...` as µs.
fn finished_us(text: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.trim().strip_prefix("finished in "))?;
    let length = rest.split(',').next()?.trim();
    let (number, scale) = if let Some(ms) = length.strip_suffix("ms") {
        (ms, 1e3)
    } else if let Some(us) = length.strip_suffix("us") {
        (us, 1.0)
    } else {
        (length.strip_suffix('s')?, 1e6)
    };
    let value: f64 = number.parse().ok()?;
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a positive run length in µs")]
    Some((value * scale).round() as u64)
}

/// The run's report from h2load's per-request log (`start µs \t status \t µs`); a status other than
/// 2xx/3xx counts as an error (as in bench/report.lua), a status of -1 (no response) as a read error.
fn report(log: &str, duration_us: u64) -> anyhow::Result<Report> {
    let mut latencies = Vec::new();
    let mut errors = Errors::default();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [_, status, us] = fields[..] else { bail!("bad h2load log line {line:?}") };
        let status: i32 = status.trim().parse().with_context(|| format!("bad status in {line:?}"))?;
        match status {
            200..=399 => {}
            s if s < 0 => errors.read += 1,
            _ => errors.status += 1,
        }
        latencies.push(us.trim().parse::<u64>().with_context(|| format!("bad latency in {line:?}"))?);
    }
    latencies.sort_unstable();
    let at = |q: f64| -> u64 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into the sorted latencies"
        )]
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or(0)
    };
    let latency_us =
        Latency { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: latencies.last().copied().unwrap_or(0) };
    Ok(Report { requests: latencies.len() as u64, duration_us, bytes: 0, errors, latency_us })
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::{finished_us, report};

    #[test]
    fn reads_h2loads_summary_and_log() {
        let out = "starting benchmark...\nApplication protocol: h2\n\nfinished in 2.00s, 49813.50 req/s, 9.51MB/s\n";
        assert_eq!(finished_us(out), Some(2_000_000));
        assert_eq!(finished_us("finished in 950.12ms, 1 req/s"), Some(950_120));
        assert_eq!(finished_us("nothing"), None);
        let log = (1..=1000).fold(String::new(), |mut log, i| {
            let _ = writeln!(log, "1733300000000000\t200\t{i}");
            log
        });
        let r = report(&format!("{log}1733300000000001\t503\t7\n1733300000000002\t-1\t9\n"), 2_000_000).unwrap();
        assert_eq!((r.requests, r.errors.status, r.errors.read), (1002, 1, 1));
        assert_eq!((r.latency_us.p50, r.latency_us.max), (499, 1000), "the median of 1..=1000 with 7 and 9 added");
        assert!(report("a\tb\n", 1).is_err());
    }
}
