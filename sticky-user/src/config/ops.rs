//! The operator's settings: the access log (`--access-log*` over the file's `[access_log]` table)
//! and the admin listener's extra Host names (`--admin-host` over `admin_hosts`). The flag wins over
//! the file, key by key.

use std::path::PathBuf;

use super::{ConfigError, file, invalid};
use crate::cli::RunArgs;

/// Output format of `--access-log` (the access log itself is `crate::access_log`, which reads these
/// settings; they live here so that configuration depends on nothing of the data path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `key=value` pairs (logfmt), one line per request.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What `--access-log*` (or the file's `[access_log]` table) asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The line format.
    pub format: Format,
    /// The file to append to; `None`: stdout.
    pub file: Option<PathBuf>,
    /// Log one request in this many (1: every one).
    pub sample: u64,
    /// Most lines a second; `None`: no limit.
    pub rate: Option<u32>,
}

/// The access log's settings, if it is on.
pub(super) fn access_log(args: &RunArgs, file: Option<&file::FileConfig>) -> Result<Option<Settings>, ConfigError> {
    let filed = file.and_then(|f| f.access_log.as_ref());
    let flags = &args.ops;
    let (field, format) = match (&flags.access_log, filed.and_then(|f| f.format.as_ref())) {
        (Some(f), _) => ("--access-log", f),
        (None, Some(f)) => ("access_log.format", f),
        (None, None) => {
            if let Some(flag) = [
                (flags.access_log_file.is_some(), "--access-log-file"),
                (flags.access_log_sample.is_some(), "--access-log-sample"),
                (flags.access_log_rate.is_some(), "--access-log-rate"),
            ]
            .iter()
            .find_map(|(given, name)| given.then_some(*name))
            {
                return Err(invalid(flag, "the access log is off: add --access-log text|json"));
            }
            return Ok(None);
        }
    };
    let format = match format.to_ascii_lowercase().as_str() {
        "text" => Format::Text,
        "json" => Format::Json,
        "off" | "none" => return Ok(None),
        other => return Err(invalid(field, format!("{other:?}: expected text, json or off"))),
    };
    let sample = flags.access_log_sample.or_else(|| filed.and_then(|f| f.sample)).unwrap_or(1);
    if sample == 0 {
        return Err(invalid("--access-log-sample", "must be at least 1 (1: every request)"));
    }
    let rate = flags.access_log_rate.or_else(|| filed.and_then(|f| f.rate));
    if rate == Some(0) {
        return Err(invalid("--access-log-rate", "must be at least 1 line a second (leave it out for no limit)"));
    }
    let file = flags.access_log_file.clone().or_else(|| filed.and_then(|f| f.file.clone()));
    Ok(Some(Settings { format, file, sample, rate }))
}

/// The extra Host names of admin reads, lower-cased.
pub(super) fn admin_hosts(args: &RunArgs, file: Option<&file::FileConfig>) -> Vec<String> {
    let names = if args.ops.admin_hosts.is_empty() {
        file.and_then(|f| f.admin_hosts.clone()).map(file::OneOrMany::into_vec).unwrap_or_default()
    } else {
        args.ops.admin_hosts.clone()
    };
    names.iter().map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect()
}
