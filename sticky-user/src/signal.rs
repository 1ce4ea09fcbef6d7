//! The process signals sticky acts on: SIGTERM and SIGINT end it gracefully, SIGHUP re-reads the
//! backends file of tcp mode and the cookie key files.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Completes on SIGINT or SIGTERM. If the SIGTERM handler cannot be installed, says so once and
/// completes on SIGINT alone (a shutdown must stay possible).
///
/// # Cancel safety
/// Cancel safe: dropping it before completion loses nothing.
pub async fn shutdown() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; stop sticky with SIGINT (Ctrl-C)");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGHUPs, as they arrive.
#[derive(Debug)]
pub struct Hangups(Option<Signal>);

impl Hangups {
    /// Installs the handler; if that fails, says so once, and [`Hangups::recv`] never completes.
    #[must_use]
    pub fn new() -> Self {
        match signal(SignalKind::hangup()) {
            Ok(s) => Self(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; files are not re-read on it");
                Self(None)
            }
        }
    }

    /// Completes when the next SIGHUP arrives.
    ///
    /// # Cancel safety
    /// Cancel safe: a signal that arrives while not polled is kept for the next call.
    pub async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Default for Hangups {
    fn default() -> Self {
        Self::new()
    }
}
