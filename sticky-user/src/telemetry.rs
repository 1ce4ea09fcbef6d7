//! Logging: one `tracing` subscriber for the daemon, fed also by the `log` records of aya-log.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Lines queued for stderr before new ones are dropped (see [`init`]).
const QUEUED_LINES: usize = 8192;

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter` (e.g. `info`, `sticky=debug`).
///
/// Lines reach stderr through a bounded queue and a writer thread, and are dropped when the queue is
/// full: a stderr that stops draining must cost log lines, never a blocked worker. It happens: a
/// container's stdout and stderr are pipes that dockerd drains, so while dockerd is down (crashed,
/// or restarting) a process that logs blocks once the pipe is full; sticky stopped serving after
/// ~25 s of re-pin lines that way before this queue (measured on Docker 20.10).
///
/// Records of the `log` crate (aya-log's kernel records among them) are forwarded to tracing.
/// Safe to call twice: the second call leaves the first subscriber in place.
#[must_use = "keep the guard until exit: dropping it writes out the queued lines"]
pub fn init(default_filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("sticky-log")
        .finish(std::io::stderr());
    let layer = fmt::layer().with_writer(writer).with_target(true).with_ansi(colours());
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
    guard
}

/// Colour codes only for a person at a terminal: not under Docker or systemd (stderr is a pipe
/// there, and the escapes end up in `docker service logs` and journald), nor with `NO_COLOR` set.
fn colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The most verbose level enabled, as an aya-log level: the kernel skips formatting below it.
#[must_use]
pub fn kernel_log_level() -> aya_log::Level {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => aya_log::Level::Trace,
        LevelFilter::DEBUG => aya_log::Level::Debug,
        LevelFilter::INFO => aya_log::Level::Info,
        LevelFilter::WARN => aya_log::Level::Warn,
        _ => aya_log::Level::Error,
    }
}

/// An error and its sources on one line: `outer: inner: root`.
#[must_use]
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// An optional value for a log field: the value itself, or `none` (never `Some(..)`/`None`).
pub struct Maybe<T>(pub Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Maybe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}
