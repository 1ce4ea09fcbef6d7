//! The TOML file of `sticky run --config`: its schema, and its services as validated
//! [`ServiceConfig`]s. The cookie and health sections are also the shape the service flags are read
//! into ([`super::flags`]), so both go through [`cookie_spec`] and [`health_spec`].

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use super::{ConfigError, ServiceConfig, invalid};
use crate::{
    model::{BackoffSpec, CookieSpec, HealthCheckSpec, Rule, ServiceId, ServiceSpec, SpecError, SpliceSpec, TlsSpec},
    values::{self, BackendUrl},
};

/// The whole file. Unknown keys are errors (a misspelt key must not be ignored silently).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub admin_socket: Option<std::path::PathBuf>,
    pub admin_token_file: Option<std::path::PathBuf>,
    pub admin_read_only: Option<bool>,
    pub workers: Option<usize>,
    pub cookie_key_file: Option<KeyFiles>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub services: Vec<FileService>,
    pub tls: Option<FileTls>,
    /// Sources that must send a PROXY protocol header (see `--proxy-protocol-from`).
    pub proxy_protocol_from: Option<OneOrMany>,
    /// Proxies whose forwarding fields are kept (see `--trusted-proxies`).
    pub trusted_proxies: Option<OneOrMany>,
    #[serde(default)]
    pub http2: FileHttp2,
    /// The access log (see `--access-log`).
    pub access_log: Option<FileAccessLog>,
    /// Extra Host names of admin reads (see `--admin-host`).
    pub admin_hosts: Option<OneOrMany>,
}

/// The `[access_log]` table (see `--access-log`, `--access-log-file`, `--access-log-sample`,
/// `--access-log-rate`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccessLog {
    /// `text` or `json`.
    pub format: Option<String>,
    pub file: Option<std::path::PathBuf>,
    pub sample: Option<u64>,
    pub rate: Option<u32>,
}

/// The `[http2]` table (see `--h2`, `--h2c`, `--h2-max-streams`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHttp2 {
    pub tls: Option<bool>,
    pub h2c: Option<bool>,
    pub max_concurrent_streams: Option<u32>,
}

/// `cookie_key_file`: one file, or a list, newest first (key rotation).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum KeyFiles {
    /// One key.
    One(std::path::PathBuf),
    /// A ring, newest first.
    Ring(Vec<std::path::PathBuf>),
}

impl KeyFiles {
    /// The files, newest first.
    pub(super) fn paths(&self) -> Vec<std::path::PathBuf> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Ring(ps) => ps.clone(),
        }
    }
}

/// The `[tls]` table: the TLS listener and its certificates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub listen: Option<String>,
    #[serde(default)]
    pub certificates: Vec<crate::tls::source::Pair>,
    #[serde(default)]
    pub dirs: Vec<std::path::PathBuf>,
    pub unknown_sni: Option<String>,
    pub acme: Option<FileAcme>,
}

/// The `[tls.acme]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAcme {
    pub directory: String,
    pub email: Option<String>,
    pub state: Option<std::path::PathBuf>,
    #[serde(default)]
    pub domains: Vec<String>,
    pub challenge: Option<String>,
    pub ca_root: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(clippy::struct_field_names, reason = "the fields are the file's keys, named like the flags")]
pub(super) struct FileLimits {
    pub max_header_size: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_spliced: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTimeouts {
    pub connect: Option<FileDuration>,
    pub response: Option<FileDuration>,
    pub idle: Option<FileDuration>,
    pub client: Option<FileDuration>,
    pub backend: Option<FileDuration>,
    pub tunnel: Option<FileDuration>,
    pub shutdown: Option<FileDuration>,
}

/// A duration in the file: a string (`"2s"`, `"500ms"`) or a whole number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FileDuration {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileService {
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
    /// 308 from plain HTTP to https:// (see `--redirect-https`).
    redirect_https: Option<bool>,
    /// `Strict-Transport-Security` max-age on TLS responses (see `--hsts`).
    hsts: Option<FileDuration>,
    /// What the tasks speak: `http` (HTTP/1.1, the default) or `h2c` (HTTP/2, gRPC).
    backend_protocol: Option<String>,
    /// `v2`: a PROXY protocol header first on each backend connection (see `--backend-proxy-protocol`).
    proxy_protocol: Option<String>,
    #[serde(default)]
    backends: Vec<FileBackend>,
    #[serde(default)]
    cookie: FileCookie,
    #[serde(default)]
    load: FileLoad,
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

/// A service's cookie options as written, in the file or (through [`super::flags`]) as flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCookie {
    pub name: Option<String>,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub secure: Option<bool>,
    pub httponly: Option<bool>,
    pub samesite: Option<String>,
    pub max_age: Option<FileDuration>,
    pub idle_timeout: Option<FileDuration>,
    pub absolute_timeout: Option<FileDuration>,
    /// `Partitioned` (CHIPS).
    pub partitioned: Option<bool>,
    /// Further attributes, appended as written.
    pub attributes: Option<Vec<String>>,
    /// `cookie`, `header`, `client-ip` or `learn` (issue 18).
    pub affinity: Option<String>,
    /// Header affinity's header (GEP-1619 `sessionName`).
    pub affinity_header: Option<String>,
    /// Learn affinity's application cookie.
    pub affinity_learn: Option<String>,
}

/// A service's load bounds as written (`[services.load]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLoad {
    pub max_inflight: Option<u32>,
    pub shed: Option<bool>,
    pub balance_factor: Option<u32>,
}

/// A service's health options as written, in the file or (through [`super::flags`]) as flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealth {
    pub path: Option<String>,
    pub interval: Option<FileDuration>,
    pub timeout: Option<FileDuration>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub backoff_min: Option<FileDuration>,
    pub backoff_max: Option<FileDuration>,
}

/// Names a service option in messages: (section, key) -> `--cookie-max-age` for flags,
/// `services[0].cookie.max_age` for the file.
pub(super) type Namer<'a> = &'a dyn Fn(&str, &str) -> String;

/// Parses the file's text (`path` names it in errors).
///
/// # Errors
/// The text is not TOML of this schema (the parser's message gives the line and the key).
pub(super) fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::File { path: path.to_owned(), source: Box::new(e) })
}

/// A value of the file, or of a flag, through its one parser; the error names `field`.
pub(super) fn value<T>(field: &str, parsed: Result<T, values::ValueError>) -> Result<T, ConfigError> {
    parsed.map_err(|e| invalid(field, e.to_string()))
}

/// A duration as written in the file.
pub(super) fn duration(field: &str, d: Option<&FileDuration>) -> Result<Option<Duration>, ConfigError> {
    match d {
        None => Ok(None),
        Some(FileDuration::Seconds(s)) => Ok(Some(Duration::from_secs(*s))),
        Some(FileDuration::Text(t)) => value(field, values::duration(t)).map(Some),
    }
}

/// An address as written in the file.
pub(super) fn address(field: &str, text: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    text.map(|t| value(field, values::socket_addr(t))).transpose()
}

fn spec_error(name: Namer<'_>) -> impl Fn(SpecError) -> ConfigError + '_ {
    move |e| invalid(name(e.section, e.key), e.message)
}

/// The cookie options as written (flags or file), validated into a [`CookieSpec`].
pub(super) fn cookie_spec(c: &FileCookie, load: &FileLoad, name: Namer<'_>) -> Result<CookieSpec, ConfigError> {
    let defaults = CookieSpec::default();
    let samesite = &name("cookie", "samesite");
    let kind = c
        .affinity
        .as_deref()
        .map(|k| crate::model::AffinityKind::parse(k).map_err(|e| invalid(name("cookie", "affinity"), e)))
        .transpose()?;
    let affinity = crate::model::Affinity::from_parts(kind, c.affinity_header.as_deref(), c.affinity_learn.as_deref())
        .map_err(spec_error(name))?;
    let cookie = CookieSpec {
        name: c.name.clone().unwrap_or(defaults.name),
        path: c.path.clone().unwrap_or(defaults.path),
        domain: c.domain.clone(),
        secure: c.secure,
        http_only: c.httponly.unwrap_or(defaults.http_only),
        same_site: c.samesite.as_deref().map(|v| value(samesite, values::same_site(v))).transpose()?,
        max_age: duration(&name("cookie", "max_age"), c.max_age.as_ref())?,
        idle_timeout: duration(&name("cookie", "idle_timeout"), c.idle_timeout.as_ref())?,
        absolute_timeout: duration(&name("cookie", "absolute_timeout"), c.absolute_timeout.as_ref())?,
        partitioned: c.partitioned.unwrap_or(false),
        extra: c.attributes.clone().unwrap_or_default(),
        affinity,
        load: crate::model::LoadSpec {
            max_inflight: load.max_inflight,
            shed: load.shed.unwrap_or(false),
            balance_factor: load.balance_factor,
        },
        ..defaults
    };
    cookie.validate().map_err(spec_error(name))?;
    Ok(cookie)
}

/// The health options as written (flags or file), validated.
pub(super) fn health_spec(h: &FileHealth, name: Namer<'_>) -> Result<(HealthCheckSpec, BackoffSpec), ConfigError> {
    let read = |key: &str, d: Option<&FileDuration>| duration(&name("health", key), d);
    let (health_default, backoff_default) = (HealthCheckSpec::default(), BackoffSpec::default());
    let health = HealthCheckSpec {
        path: h.path.clone(),
        interval: read("interval", h.interval.as_ref())?.unwrap_or(health_default.interval),
        timeout: read("timeout", h.timeout.as_ref())?.unwrap_or(health_default.timeout),
        fall: h.fall.unwrap_or(health_default.fall),
        rise: h.rise.unwrap_or(health_default.rise),
    };
    let backoff = BackoffSpec {
        min: read("backoff_min", h.backoff_min.as_ref())?.unwrap_or(backoff_default.min),
        max: read("backoff_max", h.backoff_max.as_ref())?.unwrap_or(backoff_default.max),
    };
    health.validate().map_err(spec_error(name))?;
    backoff.validate().map_err(spec_error(name))?;
    Ok((health, backoff))
}

/// Service `i` of the file, validated.
pub(super) fn service(i: usize, s: FileService) -> Result<ServiceConfig, ConfigError> {
    let field = format!("services[{i}]");
    value(&format!("{field}.name"), values::name(&s.name))?;
    let rule = rule(&field, s.rule, s.host, s.path_prefix)?;
    let name = |section: &str, key: &str| format!("{field}.{section}.{key}");
    let cookie = cookie_spec(&s.cookie, &s.load, &name)?;
    let (health, backoff) = health_spec(&s.health, &name)?;
    if s.backends.is_empty() {
        return Err(invalid(format!("{field}.backends"), "at least one backend is needed"));
    }
    let backends = s
        .backends
        .into_iter()
        .enumerate()
        .map(|(j, b)| backend(&format!("{field}.backends[{j}]"), b))
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
        tls: tls_spec(s.redirect_https, duration(&format!("{field}.hsts"), s.hsts.as_ref())?),
        backend_protocol: value(
            &format!("{field}.backend_protocol"),
            values::backend_protocol(s.backend_protocol.as_deref().unwrap_or("http")),
        )?,
        proxy_protocol: match s.proxy_protocol.as_deref() {
            Some(v) => value(&format!("{field}.proxy_protocol"), values::proxy_protocol(v))?,
            None => crate::proxy_protocol::Version::Off,
        },
    };
    Ok(ServiceConfig { spec, backends })
}

/// A statically configured service's HTTPS options: the redirect and HSTS (its names come from the
/// certificates given to the listener).
pub(super) fn tls_spec(redirect: Option<bool>, hsts: Option<Duration>) -> TlsSpec {
    TlsSpec { redirect: redirect.unwrap_or(false), hsts: hsts.map(|d| d.as_secs()), ..TlsSpec::default() }
}

/// The service's rule: `rule` in Traefik syntax, or `host` and `path_prefix`, or everything.
fn rule(
    field: &str,
    text: Option<String>,
    host: Option<OneOrMany>,
    path_prefix: Option<OneOrMany>,
) -> Result<Rule, ConfigError> {
    let mut parts = Vec::new();
    if let Some(h) = host {
        let hosts = h.into_vec();
        if hosts.is_empty() || hosts.iter().any(|h| h.is_empty() || h.contains('/')) {
            return Err(invalid(format!("{field}.host"), "host names must be non-empty and hold no '/'"));
        }
        parts.push(Rule::Host(hosts));
    }
    if let Some(p) = path_prefix {
        let prefixes = p.into_vec();
        if prefixes.is_empty() || prefixes.iter().any(|p| !p.starts_with('/')) {
            return Err(invalid(format!("{field}.path_prefix"), "path prefixes must start with /"));
        }
        parts.push(Rule::PathPrefix(prefixes));
    }
    Ok(match (text, parts.len()) {
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
    })
}

fn backend(field: &str, b: FileBackend) -> Result<BackendUrl, ConfigError> {
    match b {
        FileBackend::Url(u) => value(field, values::backend_url(&u)),
        FileBackend::Table(t) => {
            let mut parsed = value(field, values::backend_url(&t.url))?;
            parsed.weight = value(field, values::weight(t.weight.unwrap_or(1)))?;
            if let Some(n) = t.name {
                value(&format!("{field}.name"), values::name(&n))?;
                parsed.name = Some(n);
            }
            Ok(parsed)
        }
    }
}
