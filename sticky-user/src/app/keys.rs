//! The cookie key ring from its files (`--cookie-key-file`, newest first): read at start, and read
//! again on SIGHUP or when a file's content changes (polled every [`POLL`]), so keys rotate without a
//! restart. A ring that does not load on a reload (a file missing, a key too short) is logged and the
//! ring in force stays; the newest file must hold a key, an older file that is empty is skipped (step
//! 3 of a rotation: empty the old key's file).

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::AppError;
use crate::{cookie::Keys, signal::Hangups, state::Routing};

/// How often the key files are compared with what was loaded.
pub const POLL: Duration = Duration::from_secs(2);

/// Reads the cookie secrets (trailing whitespace and newline ignored), newest first, or makes a random
/// one with a warning when there are no files.
///
/// # Errors
/// A file cannot be read, the newest is empty, or a key holds fewer than 16 bytes.
pub fn load_keys(files: &[PathBuf]) -> Result<Keys, AppError> {
    if files.is_empty() {
        tracing::warn!(
            "no --cookie-key-file: cookies are signed with a random key, so they do not survive a restart and other sticky instances reject them"
        );
        return Ok(Keys::random());
    }
    let secrets = read(files)?;
    let ring: Vec<&[u8]> = secrets.iter().map(|(_, s)| s.as_slice()).collect();
    let keys = Keys::from_secrets(&ring).map_err(|source| AppError::Key { path: files[0].clone(), source })?;
    if keys.len() > 1 {
        tracing::info!(keys = keys.len(), newest = %files[0].display(), "cookie key ring: the newest key signs, every key verifies");
    }
    Ok(keys)
}

/// The secrets of `files` with their paths, newest first, each checked on its own (so an error names
/// the file at fault); empty older files left out.
fn read(files: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, AppError> {
    let mut secrets = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|source| AppError::KeyFile { path: path.clone(), source })?;
        let secret = bytes.trim_ascii_end().to_vec();
        if secret.is_empty() && i > 0 {
            tracing::info!(file = %path.display(), "cookie key file is empty: that key is no longer accepted");
            continue;
        }
        Keys::from_secret(&secret).map_err(|source| AppError::Key { path: path.clone(), source })?;
        secrets.push((path.clone(), secret));
    }
    Ok(secrets)
}

/// Follows the key files for as long as the process runs: on SIGHUP, or when their content differs
/// from what is in force, loads the ring again and gives it to `routing` (one table swap: tags and
/// keys together).
pub async fn follow(files: Vec<PathBuf>, routing: Arc<Routing>) {
    let mut hangups = Hangups::new();
    let mut loaded = read(&files).ok();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            () = hangups.recv() => true,
            _ = tick.tick() => false,
        };
        let now = read(&files);
        let changed = match (&now, &loaded) {
            (Ok(now), Some(before)) => now != before,
            (Ok(_), None) => true,
            (Err(_), _) => asked,
        };
        if !changed {
            continue;
        }
        match now.and_then(|secrets| {
            let ring: Vec<&[u8]> = secrets.iter().map(|(_, s)| s.as_slice()).collect();
            let keys = Keys::from_secrets(&ring).map_err(|source| AppError::Key { path: files[0].clone(), source })?;
            Ok((secrets, keys))
        }) {
            Ok((secrets, keys)) => {
                let n = keys.len();
                routing.set_keys(keys);
                tracing::info!(keys = n, newest = %secrets[0].0.display(), "cookie keys reloaded: the newest signs, every key verifies");
                loaded = Some(secrets);
            }
            Err(e) => {
                // keep serving with the ring in force; say why once per change (or per SIGHUP)
                tracing::error!(error = %crate::telemetry::chain(&e), "cookie keys not reloaded; the keys in force stay");
                loaded = None;
            }
        }
    }
}
