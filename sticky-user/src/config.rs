//! `sticky run` settings from flags, `STICKY_*` variables and a TOML file, validated into a [`Config`].
//!
//! Precedence: a flag (or its variable) over the file over the built-in default. Service settings
//! (backends, cookie, health, strict) come either from flags (one service matching every request) or
//! from the file (several services, each with a host/path rule), never from both. Errors name the
//! field (`services[1].cookie.samesite`). Pure: reading the files is left to the caller.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::model::{BackoffSpec, CookieSpec, HealthCheckSpec, Rule, SameSite, ServiceId, ServiceSpec, SpliceSpec};

/// Errors in the configuration; each names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field has a value that cannot be used.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the field, e.g. `services[0].backends[2]` or `--cookie-max-age`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The TOML file does not parse or has unknown keys.
    #[error("config file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's error, which gives the line and the key.
        #[source]
        source: Box<toml::de::Error>,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// Built-in defaults, shown in `--help`.
pub mod defaults {
    /// `--listen`
    pub const LISTEN: &str = "0.0.0.0:8080";
    /// `--connect-timeout`
    pub const CONNECT_TIMEOUT: &str = "2s";
    /// `--response-timeout`
    pub const RESPONSE_TIMEOUT: &str = "60s";
    /// `--idle-timeout`
    pub const IDLE_TIMEOUT: &str = "60s";
    /// `--shutdown-timeout`
    pub const SHUTDOWN_TIMEOUT: &str = "10s";
    /// `--max-header-size`
    pub const MAX_HEADER_SIZE: usize = 32 * 1024;
    /// `--max-headers`
    pub const MAX_HEADERS: usize = 100;
    /// `--max-connections`
    pub const MAX_CONNECTIONS: usize = 20_000;
    /// `--max-spliced`
    pub const MAX_SPLICED: u32 = sticky_common::maps::SPLICE_MAX_ENTRIES / 2;
}

/// Limits that keep one client from holding memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), bytes; larger gets 431.
    pub max_header_size: usize,
    /// Most header fields in a request; more gets 431.
    pub max_headers: usize,
    /// Most client connections open at once (all workers together); more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Most connections spliced in the kernel at once (the splice maps hold two entries each); more
    /// are relayed in user space.
    pub max_spliced: u32,
}

/// Timeouts of the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to a backend; on expiry the backend is marked down and the request re-pinned.
    pub connect: Duration,
    /// From the request sent to the backend's response head; on expiry 504.
    pub response: Duration,
    /// A client connection's wait for a complete request head, idle keep-alive time included; then closed.
    pub idle: Duration,
    /// On SIGTERM/SIGINT: how long requests in flight may take to finish before the process exits.
    pub shutdown: Duration,
}

/// A backend given by URL, before discovery names and resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrl {
    /// The name given with `NAME=URL`; none = derived from the URL with the cookie key.
    pub name: Option<String>,
    /// Host (name or IP literal) and port, as written.
    pub authority: String,
    /// Port (80 if the URL has none).
    pub port: u16,
    /// Host part without port and brackets.
    pub host: String,
    /// Weight for new sessions.
    pub weight: u32,
    /// The URL as written (for messages).
    pub url: String,
}

/// One statically configured service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Everything but the backends.
    pub spec: ServiceSpec,
    /// The backends.
    pub backends: Vec<BackendUrl>,
}

/// The validated configuration of `sticky run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Client listener.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/api/backends`), if any.
    pub admin: Option<SocketAddr>,
    /// Worker threads, each with its own event loop.
    pub workers: usize,
    /// File holding the cookie secret; none = a random secret (with a warning).
    pub key_file: Option<PathBuf>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Services, in file order.
    pub services: Vec<ServiceConfig>,
    /// Do not load eBPF (`--no-ebpf`): no kernel splice; upgraded connections are relayed in user space.
    pub no_ebpf: bool,
}

/// `sticky run --mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RunMode {
    /// HTTP reverse proxy pinning clients with a signed cookie.
    #[default]
    Http,
    /// L4 client affinity (eBPF full NAT, or the user-space fallback).
    Tcp,
}

/// The flags of `sticky run` (each also read from the `STICKY_*` variable named in its help).
#[derive(Clone, Debug, Default, clap::Args)]
#[command(next_help_heading = "Balancer")]
pub struct RunArgs {
    /// Balancing mode: http (cookie-pinning reverse proxy) or tcp (L4 client affinity, in the
    /// kernel when eBPF can load, else in user space).
    #[arg(long, env = "STICKY_MODE", value_enum, default_value_t = RunMode::Http)]
    pub mode: RunMode,
    /// TOML file with several services, each with a host/path rule (see docs). Excludes the service flags below.
    #[arg(long, env = "STICKY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for client connections. [default: 0.0.0.0:8080]
    #[arg(long, env = "STICKY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Backend as URL (`http://HOST:PORT`) or NAME=URL; repeat for more, or comma-separate in the variable.
    /// The name is the backend's identity in cookies; without one, a keyed digest of the URL is used.
    #[arg(long = "backend", env = "STICKY_BACKEND", value_name = "[NAME=]URL", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Admin listener for /metrics (Prometheus), /api/backends (JSON) and draining. [default: none]
    #[arg(long, env = "STICKY_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Worker threads, each running its own event loop. [default: number of CPUs]
    #[arg(long, env = "STICKY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// File with the cookie signing secret (>= 16 bytes; trailing newline ignored), e.g. a Swarm secret.
    /// Instances with the same secret accept each other's cookies. [default: a random secret per process]
    #[arg(long, env = "STICKY_COOKIE_KEY_FILE", value_name = "FILE")]
    pub cookie_key_file: Option<PathBuf>,

    /// Cookie name. [default: sticky]
    #[arg(long, env = "STICKY_COOKIE_NAME", value_name = "NAME", help_heading = "Cookie")]
    pub cookie_name: Option<String>,
    /// Cookie Path attribute. [default: /]
    #[arg(long, env = "STICKY_COOKIE_PATH", value_name = "PATH", help_heading = "Cookie")]
    pub cookie_path: Option<String>,
    /// Cookie Domain attribute. [default: none, a host-only cookie]
    #[arg(long, env = "STICKY_COOKIE_DOMAIN", value_name = "DOMAIN", help_heading = "Cookie")]
    pub cookie_domain: Option<String>,
    /// Cookie Secure attribute (true/false). [default: false]
    #[arg(long, env = "STICKY_COOKIE_SECURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Cookie")]
    pub cookie_secure: Option<bool>,
    /// Cookie HttpOnly attribute (true/false). [default: true]
    #[arg(long, env = "STICKY_COOKIE_HTTPONLY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Cookie")]
    pub cookie_httponly: Option<bool>,
    /// Cookie SameSite attribute: lax, strict or none. [default: not sent]
    #[arg(long, env = "STICKY_COOKIE_SAMESITE", value_name = "MODE", help_heading = "Cookie")]
    pub cookie_samesite: Option<String>,
    /// Cookie Max-Age (e.g. 3600, 90m, 12h); also how long sticky honours a cookie, refreshed at half-time.
    /// [default: none, a session cookie honoured until the browser drops it]
    #[arg(long, env = "STICKY_COOKIE_MAX_AGE", value_name = "DURATION", help_heading = "Cookie")]
    pub cookie_max_age: Option<String>,
    /// When the pinned backend is gone, unhealthy or refuses connections, answer 503 instead of re-pinning.
    #[arg(long, env = "STICKY_STRICT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Cookie")]
    pub strict: Option<bool>,

    /// Splice pinned keep-alive connections in the kernel: a connection whose first request carries a
    /// valid cookie for an available backend is handed to the kernel after that request's head is
    /// forwarded. Its later requests are not inspected (no re-pin, no per-request metrics, no cookie
    /// refresh): leave it off if a proxy in front multiplexes users on one connection. [default: false]
    #[arg(long, env = "STICKY_SPLICE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Kernel splice")]
    pub splice: Option<bool>,
    /// Splice upgraded (WebSocket) connections in the kernel once the backend answered 101. [default: true]
    #[arg(long, env = "STICKY_SPLICE_UPGRADES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Kernel splice")]
    pub splice_upgrades: Option<bool>,
    /// Most connections spliced at once (kernel maps: two entries each); more are relayed in user
    /// space. [default: 16384]
    #[arg(long, env = "STICKY_MAX_SPLICED", value_name = "N", help_heading = "Kernel splice")]
    pub max_spliced: Option<u32>,

    /// Path of an active HTTP health check (GET; 2xx/3xx passes). [default: none, passive checks only]
    #[arg(long, env = "STICKY_HEALTH_PATH", value_name = "PATH", help_heading = "Health")]
    pub health_path: Option<String>,
    /// Time between two active checks of a backend. [default: 5s]
    #[arg(long, env = "STICKY_HEALTH_INTERVAL", value_name = "DURATION", help_heading = "Health")]
    pub health_interval: Option<String>,
    /// An active check without a response head within this time fails. [default: 2s]
    #[arg(long, env = "STICKY_HEALTH_TIMEOUT", value_name = "DURATION", help_heading = "Health")]
    pub health_timeout: Option<String>,
    /// Failed active checks in a row that take a backend out. [default: 2]
    #[arg(long, env = "STICKY_HEALTH_FALL", value_name = "N", help_heading = "Health")]
    pub health_fall: Option<u32>,
    /// Passed active checks in a row that bring a backend back. [default: 2]
    #[arg(long, env = "STICKY_HEALTH_RISE", value_name = "N", help_heading = "Health")]
    pub health_rise: Option<u32>,
    /// Passive check: a backend that refused or timed out a connection is left alone this long,
    /// doubling per failure in a row up to --backoff-max. [default: 1s]
    #[arg(long, env = "STICKY_BACKOFF_MIN", value_name = "DURATION", help_heading = "Health")]
    pub backoff_min: Option<String>,
    /// Longest passive pause. [default: 30s]
    #[arg(long, env = "STICKY_BACKOFF_MAX", value_name = "DURATION", help_heading = "Health")]
    pub backoff_max: Option<String>,

    /// Connecting to a backend; on expiry the backend is paused and the request re-pinned. [default: 2s]
    #[arg(long, env = "STICKY_CONNECT_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub connect_timeout: Option<String>,
    /// From sending a request to a backend to its response head; on expiry 504. [default: 60s]
    #[arg(long, env = "STICKY_RESPONSE_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub response_timeout: Option<String>,
    /// How long a client connection may wait before its next complete request head (keep-alive idle time
    /// plus the time to send the headers); then it is closed. [default: 60s]
    #[arg(long, env = "STICKY_IDLE_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub idle_timeout: Option<String>,
    /// On SIGTERM or Ctrl-C: stop accepting, close idle connections, and wait this long at most for
    /// requests in flight to finish before exiting. [default: 10s]
    #[arg(long, env = "STICKY_SHUTDOWN_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub shutdown_timeout: Option<String>,
    /// Largest request head (request line + headers), bytes; larger gets 431. [default: 32768]
    #[arg(long, env = "STICKY_MAX_HEADER_SIZE", value_name = "BYTES", help_heading = "Limits")]
    pub max_header_size: Option<usize>,
    /// Most header fields per request; more gets 431. [default: 100]
    #[arg(long, env = "STICKY_MAX_HEADERS", value_name = "N", help_heading = "Limits")]
    pub max_headers: Option<usize>,
    /// Most client connections open at once; further ones wait in the listen backlog. [default: 20000]
    #[arg(long, env = "STICKY_MAX_CONNECTIONS", value_name = "N", help_heading = "Limits")]
    pub max_connections: Option<usize>,
    /// Discover the services from Docker Swarm instead of --backend/--config: every service that
    /// opts in with sticky.* or Traefik labels, its running tasks as backends (see README, labels).
    #[arg(long, env = "STICKY_DOCKER", help_heading = "Swarm (--docker)")]
    pub docker: bool,
    /// The Docker Engine socket of a Swarm manager. [default: unix:///var/run/docker.sock]
    #[arg(long, env = "DOCKER_HOST", value_name = "unix://PATH", help_heading = "Swarm (--docker)")]
    pub docker_host: Option<String>,
    /// How often services and tasks are listed again without an event (events list them at once). [default: 500ms]
    #[arg(long, env = "STICKY_DOCKER_INTERVAL", value_name = "DURATION", help_heading = "Swarm (--docker)")]
    pub docker_interval: Option<String>,
    /// tcp mode's own flags.
    #[command(flatten)]
    pub tcp: crate::l4::TcpFlags,
}

/// Where and how often `sticky run --docker` asks the Docker API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerSettings {
    /// The daemon's socket (`unix://...`).
    pub host: String,
    /// Re-list period without events.
    pub interval: Duration,
}

/// The Docker settings of `sticky run --docker`; `None` without `--docker`.
///
/// # Errors
/// `--docker` with `--mode tcp` (each service's mode comes from its labels), or a bad interval.
pub fn docker(args: &RunArgs) -> Result<Option<DockerSettings>, ConfigError> {
    if !args.docker {
        return Ok(None);
    }
    if args.mode != RunMode::Http {
        return Err(invalid(
            "--mode",
            "cannot be combined with --docker: each service's mode comes from its sticky.mode label",
        ));
    }
    let interval =
        flag_duration("--docker-interval", args.docker_interval.as_ref())?.unwrap_or(Duration::from_millis(500));
    let interval = positive("--docker-interval", interval)?;
    let host =
        args.docker_host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    Ok(Some(DockerSettings { host, interval }))
}

// === the TOML file ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    admin: Option<String>,
    workers: Option<usize>,
    cookie_key_file: Option<PathBuf>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    services: Vec<FileService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_header_size: Option<usize>,
    max_headers: Option<usize>,
    max_connections: Option<usize>,
    max_spliced: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect: Option<FileDuration>,
    response: Option<FileDuration>,
    idle: Option<FileDuration>,
    shutdown: Option<FileDuration>,
}

/// A duration in the file: a string (`"2s"`, `"500ms"`) or a whole number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FileDuration {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    name: String,
    /// A Traefik rule (v1 or v2 syntax), instead of `host`/`path_prefix`.
    rule: Option<String>,
    host: Option<OneOrMany>,
    path_prefix: Option<OneOrMany>,
    priority: Option<i64>,
    strict: Option<bool>,
    /// Splice pinned keep-alive connections (see `--splice`).
    splice: Option<bool>,
    /// Splice upgraded connections (see `--splice-upgrades`).
    splice_upgrades: Option<bool>,
    #[serde(default)]
    backends: Vec<FileBackend>,
    #[serde(default)]
    cookie: FileCookie,
    #[serde(default)]
    health: FileHealth,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileBackend {
    Url(String),
    Table(FileBackendTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackendTable {
    name: Option<String>,
    url: String,
    weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCookie {
    name: Option<String>,
    path: Option<String>,
    domain: Option<String>,
    secure: Option<bool>,
    httponly: Option<bool>,
    samesite: Option<String>,
    max_age: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    path: Option<String>,
    interval: Option<FileDuration>,
    timeout: Option<FileDuration>,
    fall: Option<u32>,
    rise: Option<u32>,
    backoff_min: Option<FileDuration>,
    backoff_max: Option<FileDuration>,
}

// === parsing helpers ===

/// Parses a duration: `500ms`, `2s`, `1m30s`, `12h`; a bare number is seconds.
///
/// # Errors
/// Names `field` and says what is expected.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| invalid(field, format!("{text:?} is not a duration ({e}); write e.g. 500ms, 2s, 1m, 12h")))
}

fn file_duration(field: &str, d: Option<&FileDuration>) -> Result<Option<Duration>, ConfigError> {
    match d {
        None => Ok(None),
        Some(FileDuration::Seconds(s)) => Ok(Some(Duration::from_secs(*s))),
        Some(FileDuration::Text(t)) => parse_duration(field, t).map(Some),
    }
}

fn flag_duration(field: &str, d: Option<&String>) -> Result<Option<Duration>, ConfigError> {
    d.map(|t| parse_duration(field, t)).transpose()
}

fn positive(field: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() { Err(invalid(field, "must be longer than 0")) } else { Ok(d) }
}

/// Parses `http://HOST[:PORT][/]`, optionally prefixed by `NAME=`.
///
/// # Errors
/// Anything but a plain http URL of a host, or a bad name.
pub fn parse_backend(field: &str, text: &str, weight: u32) -> Result<BackendUrl, ConfigError> {
    let (name, url) = match text.split_once('=') {
        Some((n, u)) if !n.contains("://") => (Some(n.trim().to_owned()), u.trim()),
        _ => (None, text.trim()),
    };
    if let Some(n) = &name {
        check_name(field, n)?;
    }
    let uri: http::Uri =
        url.parse().map_err(|e| invalid(field, format!("{url:?} is not a URL ({e}); expected http://HOST:PORT")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(invalid(
                field,
                format!("{url:?}: scheme {other} is not supported; backends are plain http://HOST:PORT"),
            ));
        }
        None => return Err(invalid(field, format!("{url:?} has no scheme; expected http://HOST:PORT"))),
    }
    let authority = uri.authority().ok_or_else(|| invalid(field, format!("{url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid(field, format!("{url:?}: credentials in backend URLs are not supported")));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            field,
            format!("{url:?}: a backend URL cannot have a path or query; requests keep their own path"),
        ));
    }
    if !(1..=100).contains(&weight) {
        return Err(invalid(field, format!("weight {weight} is out of range 1..=100")));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(80);
    Ok(BackendUrl { name, authority: format!("{}:{port}", authority.host()), port, host, weight, url: url.to_owned() })
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(invalid(field, format!("name {name:?} must be 1-64 characters of A-Z a-z 0-9 - _ ."))) }
}

/// Names a service setting in messages: (section, key) → `--cookie-max-age` for flags,
/// `services[0].cookie.max_age` for the file.
type Namer<'a> = &'a dyn Fn(&str, &str) -> String;

fn flag_name(section: &str, key: &str) -> String {
    let key = key.replace('_', "-");
    // the passive back-off flags are --backoff-min/--backoff-max, not --health-backoff-min
    if key.starts_with("backoff") { format!("--{key}") } else { format!("--{section}-{key}") }
}

/// The cookie options as written (flags or file), validated into a [`CookieSpec`].
fn cookie_spec(c: &FileCookie, name: Namer<'_>) -> Result<CookieSpec, ConfigError> {
    let mut cookie = CookieSpec::default();
    if let Some(v) = &c.name {
        cookie.name.clone_from(v);
    }
    if let Some(v) = &c.path {
        cookie.path.clone_from(v);
    }
    cookie.domain.clone_from(&c.domain);
    cookie.secure = c.secure.unwrap_or(cookie.secure);
    cookie.http_only = c.httponly.unwrap_or(cookie.http_only);
    cookie.same_site = c.samesite.as_deref().map(|v| parse_same_site(&name("cookie", "samesite"), v)).transpose()?;
    let age = name("cookie", "max_age");
    cookie.max_age = file_duration(&age, c.max_age.as_ref())?.map(|d| positive(&age, d)).transpose()?;
    // RFC 6265 cookie-name is an RFC 7230 token
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token(&cookie.name) {
        return Err(invalid(
            name("cookie", "name"),
            format!("{:?} is not a valid cookie name (letters, digits, !#$%&'*+-.^_`|~)", cookie.name),
        ));
    }
    let attr_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';');
    if !cookie.path.starts_with('/') || !attr_ok(&cookie.path) {
        return Err(invalid(
            name("cookie", "path"),
            format!("{:?} must start with / and hold no spaces, ';' or control characters", cookie.path),
        ));
    }
    if let Some(d) = &cookie.domain {
        if !attr_ok(d) {
            return Err(invalid(name("cookie", "domain"), format!("{d:?} is not a domain")));
        }
    }
    if cookie.same_site == Some(SameSite::None) && !cookie.secure {
        return Err(invalid(
            name("cookie", "samesite"),
            "SameSite=None needs Secure (browsers drop it otherwise); set secure too",
        ));
    }
    Ok(cookie)
}

/// The health options as written (flags or file), validated.
fn health_spec(h: &FileHealth, name: Namer<'_>) -> Result<(HealthCheckSpec, BackoffSpec), ConfigError> {
    let duration = |key: &str, d: Option<&FileDuration>| file_duration(&name("health", key), d);
    let mut health = HealthCheckSpec { path: h.path.clone(), ..HealthCheckSpec::default() };
    health.interval = duration("interval", h.interval.as_ref())?.unwrap_or(health.interval);
    health.timeout = duration("timeout", h.timeout.as_ref())?.unwrap_or(health.timeout);
    health.fall = h.fall.unwrap_or(health.fall);
    health.rise = h.rise.unwrap_or(health.rise);
    let mut backoff = BackoffSpec::default();
    backoff.min = duration("backoff_min", h.backoff_min.as_ref())?.unwrap_or(backoff.min);
    backoff.max = duration("backoff_max", h.backoff_max.as_ref())?.unwrap_or(backoff.max);
    if let Some(p) = &health.path {
        if !p.starts_with('/') {
            return Err(invalid(name("health", "path"), format!("{p:?} must start with /")));
        }
    }
    positive(&name("health", "interval"), health.interval)?;
    positive(&name("health", "timeout"), health.timeout)?;
    if health.fall == 0 {
        return Err(invalid(name("health", "fall"), "must be at least 1"));
    }
    if health.rise == 0 {
        return Err(invalid(name("health", "rise"), "must be at least 1"));
    }
    positive(&name("health", "backoff_min"), backoff.min)?;
    if backoff.max < backoff.min {
        return Err(invalid(name("health", "backoff_max"), "must not be shorter than backoff_min"));
    }
    Ok((health, backoff))
}

fn parse_same_site(field: &str, s: &str) -> Result<SameSite, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        "none" => Ok(SameSite::None),
        _ => Err(invalid(field, format!("{s:?} is not one of lax, strict, none"))),
    }
}

impl RunArgs {
    fn service_flags_given(&self) -> Option<&'static str> {
        let given = [
            (!self.backends.is_empty(), "--backend"),
            (self.cookie_name.is_some(), "--cookie-name"),
            (self.cookie_path.is_some(), "--cookie-path"),
            (self.cookie_domain.is_some(), "--cookie-domain"),
            (self.cookie_secure.is_some(), "--cookie-secure"),
            (self.cookie_httponly.is_some(), "--cookie-httponly"),
            (self.cookie_samesite.is_some(), "--cookie-samesite"),
            (self.cookie_max_age.is_some(), "--cookie-max-age"),
            (self.strict.is_some(), "--strict"),
            (self.splice.is_some(), "--splice"),
            (self.splice_upgrades.is_some(), "--splice-upgrades"),
            (self.health_path.is_some(), "--health-path"),
            (self.health_interval.is_some(), "--health-interval"),
            (self.health_timeout.is_some(), "--health-timeout"),
            (self.health_fall.is_some(), "--health-fall"),
            (self.health_rise.is_some(), "--health-rise"),
            (self.backoff_min.is_some(), "--backoff-min"),
            (self.backoff_max.is_some(), "--backoff-max"),
        ];
        given.iter().find(|(g, _)| *g).map(|(_, n)| *n)
    }

    /// The one service described by flags.
    fn service(&self) -> Result<ServiceConfig, ConfigError> {
        if self.backends.is_empty() {
            return Err(invalid("--backend", "at least one backend is needed (or --config FILE)"));
        }
        // the flags in the file's shape, so that both go through the same validation
        let text = |d: &Option<String>| d.clone().map(FileDuration::Text);
        let cookie = FileCookie {
            name: self.cookie_name.clone(),
            path: self.cookie_path.clone(),
            domain: self.cookie_domain.clone(),
            secure: self.cookie_secure,
            httponly: self.cookie_httponly,
            samesite: self.cookie_samesite.clone(),
            max_age: text(&self.cookie_max_age),
        };
        let health = FileHealth {
            path: self.health_path.clone(),
            interval: text(&self.health_interval),
            timeout: text(&self.health_timeout),
            fall: self.health_fall,
            rise: self.health_rise,
            backoff_min: text(&self.backoff_min),
            backoff_max: text(&self.backoff_max),
        };
        let cookie = cookie_spec(&cookie, &flag_name)?;
        let (health, backoff) = health_spec(&health, &flag_name)?;
        let backends = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| parse_backend(&format!("--backend #{} ({b})", i + 1), b, 1))
            .collect::<Result<Vec<_>, _>>()?;
        let rule = Rule::Always;
        let spec = ServiceSpec {
            id: ServiceId("default".into()),
            name: "default".into(),
            priority: rule.default_priority(),
            rule,
            cookie,
            strict: self.strict.unwrap_or(false),
            health,
            backoff,
            splice: SpliceSpec::with(self.splice, self.splice_upgrades),
        };
        Ok(ServiceConfig { spec, backends })
    }
}

fn file_service(i: usize, s: FileService) -> Result<ServiceConfig, ConfigError> {
    let field = format!("services[{i}]");
    check_name(&format!("{field}.name"), &s.name)?;
    let mut parts = Vec::new();
    if let Some(h) = s.host {
        let hosts = h.into_vec();
        if hosts.is_empty() || hosts.iter().any(|h| h.is_empty() || h.contains('/')) {
            return Err(invalid(format!("{field}.host"), "host names must be non-empty and hold no '/'"));
        }
        parts.push(Rule::Host(hosts));
    }
    if let Some(p) = s.path_prefix {
        let prefixes = p.into_vec();
        if prefixes.is_empty() || prefixes.iter().any(|p| !p.starts_with('/')) {
            return Err(invalid(format!("{field}.path_prefix"), "path prefixes must start with /"));
        }
        parts.push(Rule::PathPrefix(prefixes));
    }
    let rule = match (s.rule, parts.len()) {
        (Some(_), 1..) => {
            return Err(invalid(format!("{field}.rule"), "give either rule or host/path_prefix, not both"));
        }
        (Some(text), _) => match crate::rule::Route::parse(&text) {
            Ok(route) if route.strip_prefix => {
                return Err(invalid(format!("{field}.rule"), "PathPrefixStrip/PathStrip are not supported here"));
            }
            Ok(route) => route.rule,
            Err(e) => return Err(invalid(format!("{field}.rule"), e.to_string())),
        },
        (None, 0) => Rule::Always,
        (None, 1) => parts.remove(0),
        (None, _) => Rule::And(parts),
    };
    let name = |section: &str, key: &str| format!("{field}.{section}.{key}");
    let cookie = cookie_spec(&s.cookie, &name)?;
    let (health, backoff) = health_spec(&s.health, &name)?;
    if s.backends.is_empty() {
        return Err(invalid(format!("{field}.backends"), "at least one backend is needed"));
    }
    let backends = s
        .backends
        .into_iter()
        .enumerate()
        .map(|(j, b)| {
            let bf = format!("{field}.backends[{j}]");
            match b {
                FileBackend::Url(u) => parse_backend(&bf, &u, 1),
                FileBackend::Table(t) => {
                    let mut parsed = parse_backend(&bf, &t.url, t.weight.unwrap_or(1))?;
                    if let Some(n) = t.name {
                        check_name(&format!("{bf}.name"), &n)?;
                        parsed.name = Some(n);
                    }
                    Ok(parsed)
                }
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = ServiceSpec {
        id: ServiceId(s.name.as_str().into()),
        name: s.name,
        priority: s.priority.unwrap_or_else(|| rule.default_priority()),
        rule,
        cookie,
        strict: s.strict.unwrap_or(false),
        health,
        backoff,
        splice: SpliceSpec::with(s.splice, s.splice_upgrades),
    };
    Ok(ServiceConfig { spec, backends })
}

/// Builds the configuration from flags and, if `--config` was given, the file's text.
///
/// # Errors
/// A [`ConfigError`] naming the first field at fault.
pub fn build(args: &RunArgs, file_text: Option<&str>) -> Result<Config, ConfigError> {
    if args.docker {
        if args.config.is_some() {
            return Err(invalid("--config", "cannot be combined with --docker: services come from Swarm labels"));
        }
        if let Some(flag) = args.service_flags_given() {
            return Err(invalid(flag, "cannot be combined with --docker: set service options with sticky.* labels"));
        }
    }
    let file = match (&args.config, file_text) {
        (Some(path), Some(text)) => {
            if let Some(flag) = args.service_flags_given() {
                return Err(invalid(flag, "cannot be combined with --config: set service options in the file"));
            }
            let parsed: FileConfig =
                toml::from_str(text).map_err(|e| ConfigError::File { path: path.clone(), source: Box::new(e) })?;
            Some(parsed)
        }
        _ => None,
    };
    let f = file.as_ref();
    let listen = match (args.listen, f.and_then(|f| f.listen.as_deref())) {
        (Some(a), _) => a,
        (None, Some(text)) => {
            text.parse().map_err(|_| invalid("listen", format!("{text:?} is not an address like 0.0.0.0:8080")))?
        }
        (None, None) => defaults::LISTEN.parse().map_err(|_| invalid("listen", "bad built-in default"))?,
    };
    let admin = match (args.admin, f.and_then(|f| f.admin.as_deref())) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => Some(
            text.parse().map_err(|_| invalid("admin", format!("{text:?} is not an address like 127.0.0.1:9090")))?,
        ),
        (None, None) => None,
    };
    let workers = args
        .workers
        .or(f.and_then(|f| f.workers))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if !(1..=1024).contains(&workers) {
        return Err(invalid("workers", format!("{workers} is out of range 1..=1024")));
    }
    let key_file = args.cookie_key_file.clone().or_else(|| f.and_then(|f| f.cookie_key_file.clone()));
    let fl = f.map(|f| &f.limits);
    let limits = Limits {
        max_header_size: args
            .max_header_size
            .or(fl.and_then(|l| l.max_header_size))
            .unwrap_or(defaults::MAX_HEADER_SIZE),
        max_headers: args.max_headers.or(fl.and_then(|l| l.max_headers)).unwrap_or(defaults::MAX_HEADERS),
        max_connections: args
            .max_connections
            .or(fl.and_then(|l| l.max_connections))
            .unwrap_or(defaults::MAX_CONNECTIONS),
        max_spliced: args.max_spliced.or(fl.and_then(|l| l.max_spliced)).unwrap_or(defaults::MAX_SPLICED),
    };
    if !(8192..=1 << 20).contains(&limits.max_header_size) {
        return Err(invalid(
            "max_header_size",
            format!("{} is out of range 8192..=1048576 bytes", limits.max_header_size),
        ));
    }
    if !(1..=1000).contains(&limits.max_headers) {
        return Err(invalid("max_headers", format!("{} is out of range 1..=1000", limits.max_headers)));
    }
    if limits.max_connections == 0 {
        return Err(invalid("max_connections", "must be at least 1"));
    }
    // each pair takes two entries in three kernel maps; keep the maps within a few tens of MiB
    if !(1..=1 << 20).contains(&limits.max_spliced) {
        return Err(invalid("max_spliced", format!("{} is out of range 1..=1048576", limits.max_spliced)));
    }
    let ft = f.map(|f| &f.timeouts);
    let pick = |flag: &str,
                key: &str,
                given: Option<&String>,
                filed: Option<&FileDuration>,
                default: &str|
     -> Result<Duration, ConfigError> {
        let d = match flag_duration(flag, given)? {
            Some(d) => d,
            None => match file_duration(&format!("timeouts.{key}"), filed)? {
                Some(d) => d,
                None => parse_duration(flag, default)?,
            },
        };
        positive(flag, d)
    };
    let timeouts = Timeouts {
        connect: pick(
            "--connect-timeout",
            "connect",
            args.connect_timeout.as_ref(),
            ft.and_then(|t| t.connect.as_ref()),
            defaults::CONNECT_TIMEOUT,
        )?,
        response: pick(
            "--response-timeout",
            "response",
            args.response_timeout.as_ref(),
            ft.and_then(|t| t.response.as_ref()),
            defaults::RESPONSE_TIMEOUT,
        )?,
        idle: pick(
            "--idle-timeout",
            "idle",
            args.idle_timeout.as_ref(),
            ft.and_then(|t| t.idle.as_ref()),
            defaults::IDLE_TIMEOUT,
        )?,
        shutdown: pick(
            "--shutdown-timeout",
            "shutdown",
            args.shutdown_timeout.as_ref(),
            ft.and_then(|t| t.shutdown.as_ref()),
            defaults::SHUTDOWN_TIMEOUT,
        )?,
    };
    let services = match file {
        Some(file) => {
            if file.services.is_empty() {
                return Err(invalid("services", "the file defines no [[services]]"));
            }
            let services = file
                .services
                .into_iter()
                .enumerate()
                .map(|(i, s)| file_service(i, s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut seen = HashSet::new();
            for (i, s) in services.iter().enumerate() {
                if !seen.insert(s.spec.name.clone()) {
                    return Err(invalid(format!("services[{i}].name"), format!("{:?} is used twice", s.spec.name)));
                }
            }
            services
        }
        // discovered at run time
        None if args.docker => Vec::new(),
        None => vec![args.service()?],
    };
    for (i, s) in services.iter().enumerate() {
        let mut names = HashSet::new();
        for (j, b) in s.backends.iter().enumerate() {
            if !names.insert(b.name.clone().unwrap_or_else(|| b.url.clone())) {
                return Err(invalid(
                    format!("services[{i}].backends[{j}]"),
                    format!("{} appears twice in service {}", b.name.as_deref().unwrap_or(&b.url), s.spec.name),
                ));
            }
        }
    }
    Ok(Config { listen, admin, workers, key_file, limits, timeouts, services, no_ebpf: args.tcp.no_ebpf })
}

#[cfg(test)]
mod tests;
