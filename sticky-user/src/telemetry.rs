//! Logging: one `tracing` subscriber for the daemon, fed also by the `log` records of aya-log.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter` (e.g. `info`, `sticky=debug`).
///
/// Records of the `log` crate (aya-log's kernel records among them) are forwarded to tracing.
/// Safe to call twice: the second call leaves the first subscriber in place.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr).with_target(true))
        .try_init();
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
