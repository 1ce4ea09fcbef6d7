//! Swarm service labels -> what sticky should do with the service (pure).
//!
//! Three dialects are understood, one file each, and may be mixed (sticky's own labels win):
//! - [`sticky`]: sticky's own `sticky.*` labels, one table ([`sticky::LABELS`]) that the parser,
//!   the README's table and the "not understood" report all read;
//! - [`traefik_v1`]: Traefik v1, as in the classic Swarm sticky-session recipe;
//! - [`traefik_v2`]: Traefik v2/v3 (`traefik.http.services.<s>.*`, `traefik.http.routers.<r>.rule`).
//!
//! A label in the `sticky.` or `traefik.` namespace that no dialect acts on is reported in
//! [`LabeledService::ignored`] (the caller logs each once), never silently dropped. With Traefik
//! labels and no cookie name, the cookie is named as Traefik names it ([`traefik_cookie_name`]), so
//! existing clients keep their session cookie's name across the migration.

pub mod sticky;
pub mod traefik_v1;
pub mod traefik_v2;

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use sha1::{Digest as _, Sha1};

use crate::{
    model::SameSite,
    rule::{Route, RuleError},
    values::{self, ValueError},
};

/// A service's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// How a service is balanced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HTTP reverse proxy with a sticky cookie.
    Http,
    /// L4 client affinity (kernel, or the user-space fallback).
    Tcp,
}

/// Which label set a setting came from (for logs and the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `sticky.*`.
    Sticky,
    /// Traefik v1 labels.
    TraefikV1,
    /// Traefik v2/v3 labels.
    TraefikV2,
}

/// Cookie settings from labels; `None` means "not set": the proxy's defaults apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieLabels {
    /// Cookie name (explicit, or Traefik's generated name when Traefik labels enable stickiness).
    pub name: Option<String>,
    /// `Path` attribute.
    pub path: Option<String>,
    /// `Domain` attribute.
    pub domain: Option<String>,
    /// `Secure` attribute.
    pub secure: Option<bool>,
    /// `HttpOnly` attribute.
    pub http_only: Option<bool>,
    /// `SameSite` attribute.
    pub same_site: Option<SameSite>,
    /// `Max-Age`; absent means a session cookie.
    pub max_age: Option<Duration>,
    /// Server-side idle timeout (`sticky.cookie.idletimeout`).
    pub idle_timeout: Option<Duration>,
    /// Server-side absolute timeout (`sticky.cookie.absolutetimeout`).
    pub absolute_timeout: Option<Duration>,
    /// What the cookie names (`sticky.cookie.identity`).
    pub identity: Identity,
    /// Whether a Traefik cookie value (`http://IP:PORT`) is honoured (`sticky.cookie.legacy`;
    /// `None`: yes when Traefik labels are present or the window below is set).
    pub legacy: Option<bool>,
    /// End of the window in which Traefik cookie values are honoured (`sticky.cookie.legacy.until`,
    /// RFC 3339); `None`: no end.
    pub legacy_until: Option<std::time::SystemTime>,
    /// `Partitioned` attribute (`sticky.cookie.partitioned`).
    pub partitioned: Option<bool>,
    /// Further attributes (`sticky.cookie.attributes`, `;`-separated).
    pub extra: Vec<String>,
    /// Affinity kind (`sticky.affinity`).
    pub affinity: Option<crate::model::AffinityKind>,
    /// Header of header affinity (`sticky.affinity.header`).
    pub affinity_header: Option<String>,
    /// Application cookie of learn affinity (`sticky.affinity.learn`).
    pub affinity_learn: Option<String>,
    /// Load bounds (`sticky.backend.maxinflight`, `.shed`, `.balancefactor`).
    pub load: crate::model::LoadSpec,
}

/// What the cookie names: which task-level identity a session is pinned to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    /// The task (default): a replacement task is a new process without the old one's in-memory
    /// sessions, so its clients are re-pinned like any other client of a departed task.
    #[default]
    Task,
    /// The replica slot (replicated services; the node for global ones): a rolling update's
    /// replacement, which takes the same slot, keeps the old task's clients. For apps whose session
    /// state outlives the task per slot (a volume or cache named with `{{.Task.Slot}}`).
    Slot,
}

impl Identity {
    /// The label's spelling: `task` or `slot`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Slot => "slot",
        }
    }
}

/// Active health check settings from labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthLabels {
    /// HTTP path to probe; `None` disables the active check (passive checks always run).
    pub path: Option<String>,
    /// Time between two probes of one task.
    pub interval: Option<Duration>,
    /// Time a probe may take.
    pub timeout: Option<Duration>,
}

/// HTTPS settings from labels (sticky's `sticky.tls*`, Traefik's router `tls*` and entry points).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsLabels {
    /// The service is served over HTTPS (`sticky.tls=true`, a Traefik router with `tls=true`, a
    /// certificate resolver, TLS domains, or the `websecure`/`https` entry point).
    pub enabled: bool,
    /// Names its certificate must cover (`sticky.tls.domains`, Traefik's `tls.domains[n].main/.sans`).
    pub domains: Vec<String>,
    /// Traefik's `tls.certresolver`, by name.
    pub cert_resolver: Option<String>,
    /// 308 from plain HTTP to HTTPS (`sticky.tls.redirect`).
    pub redirect: Option<bool>,
    /// `Strict-Transport-Security` max-age (`sticky.tls.hsts`).
    pub hsts: Option<Duration>,
}

/// Entry point names that mean HTTPS (Traefik's conventional `websecure`, v1's `https`).
pub const TLS_ENTRYPOINTS: &[&str] = &["websecure", "https"];

/// What the labels of one Swarm service ask sticky to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledService {
    /// Balancing mode.
    pub mode: Mode,
    /// The tasks' port to send to; `None` if no label gives it.
    pub port: Option<u16>,
    /// The network whose task addresses are the backends; `None`: the only network shared with sticky.
    pub network: Option<String>,
    /// Which requests go to this service (http mode).
    pub route: Route,
    /// Whether clients are pinned (sticky labels, or Traefik stickiness enabled).
    pub sticky: bool,
    /// Cookie settings.
    pub cookie: CookieLabels,
    /// Pinned task gone: 503 instead of re-pinning.
    pub strict: bool,
    /// Kernel splice of pinned keep-alive connections (`None`: sticky's default, off).
    pub splice: Option<bool>,
    /// Kernel splice of upgraded (WebSocket) connections (`None`: sticky's default, on).
    pub splice_upgrades: Option<bool>,
    /// Active health check.
    pub health: HealthLabels,
    /// HTTPS.
    pub tls: TlsLabels,
    /// What the tasks speak (`sticky.backend.protocol`, Traefik's `server.scheme`); `None`: HTTP/1.1.
    pub backend_protocol: Option<crate::model::BackendProtocol>,
    /// tcp mode: how long a client's affinity to a task lasts after its last connection.
    pub affinity_timeout: Option<Duration>,
    /// tcp mode: the port sticky listens on for this service.
    pub listen_port: Option<u16>,
    /// tcp mode: which path serves it (`sticky.tcp.path`); `None`: user space.
    pub tcp_path: Option<crate::model::TcpPath>,
    /// A PROXY protocol v2 header first on each backend connection (`sticky.proxyprotocol`,
    /// Traefik's `loadbalancer.proxyprotocol.version`).
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// Which dialects contributed.
    pub dialects: Vec<Dialect>,
    /// Labels in sticky's or Traefik's namespace that sticky does not act on (log each once).
    pub ignored: Vec<String>,
}

/// A label whose value sticky cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The value does not parse.
    #[error("label {label}: {source}")]
    Value {
        /// Label key.
        label: String,
        /// What was given and what is expected.
        #[source]
        source: ValueError,
    },
    /// The rule does not parse.
    #[error("label {label}: {source}")]
    Rule {
        /// Label key.
        label: String,
        /// The parser's reason.
        #[source]
        source: RuleError,
    },
}

/// Reads a service's labels. `Ok(None)`: the service did not opt in (no sticky or Traefik labels,
/// or an explicit `sticky.enable=false`/`traefik.enable=false`).
///
/// # Errors
/// A label sticky acts on has an unusable value (the message names the label).
pub fn parse(service_name: &str, labels: &Labels) -> Result<Option<LabeledService>, LabelError> {
    let enable = |key: &str| labels.get(key).map(|v| value(key, values::boolean(v))).transpose();
    let (sticky_enable, traefik_enable) = (enable(sticky::ENABLE)?, enable(TRAEFIK_ENABLE)?);
    let has_sticky = labels.keys().any(|k| k.starts_with("sticky."));
    let has_v1 = labels.keys().any(|k| traefik_v1::is_v1(k));
    let has_v2 = labels.keys().any(|k| traefik_v2::is_v2(k));
    let opted_in = match sticky_enable {
        Some(enabled) => enabled,
        None => (has_sticky || has_v1 || has_v2 || traefik_enable == Some(true)) && traefik_enable != Some(false),
    };
    if !opted_in {
        return Ok(None);
    }

    let mut svc = LabeledService {
        mode: Mode::Http,
        port: None,
        network: None,
        route: Route::parse("").map_err(|source| LabelError::Rule { label: String::new(), source })?,
        sticky: true,
        cookie: CookieLabels::default(),
        strict: false,
        splice: None,
        splice_upgrades: None,
        health: HealthLabels::default(),
        tls: TlsLabels::default(),
        backend_protocol: None,
        affinity_timeout: None,
        listen_port: None,
        tcp_path: None,
        proxy_protocol: None,
        dialects: Vec::new(),
        ignored: Vec::new(),
    };
    if has_v1 || has_v2 {
        svc.network = TRAEFIK_NETWORK.iter().find_map(|k| labels.get(*k)).cloned();
    }
    let mut traefik_sticky: Option<bool> = None;
    if has_v1 {
        svc.dialects.push(Dialect::TraefikV1);
        traefik_sticky = traefik_v1::apply(service_name, labels, &mut svc)?;
    }
    if has_v2 {
        svc.dialects.push(Dialect::TraefikV2);
        let provider = labels.get(sticky::TRAEFIK_PROVIDER).map_or("docker", String::as_str);
        if let Some(s) = traefik_v2::apply(service_name, provider, labels, &mut svc)? {
            traefik_sticky = Some(traefik_sticky.unwrap_or(false) || s);
        }
    }
    if has_v1 || has_v2 {
        // Faithful to Traefik: its labels pin only when they enable stickiness (sticky.* may override).
        svc.sticky = traefik_sticky.unwrap_or(false);
    }
    if has_sticky {
        svc.dialects.push(Dialect::Sticky);
        sticky::apply(labels, &mut svc)?;
    }
    for key in labels.keys() {
        if (key.starts_with("sticky.") || key.starts_with("traefik.")) && !is_known(key) {
            svc.ignored.push(key.clone());
        }
    }
    Ok(Some(svc))
}

/// `traefik.enable`: opt in or out, in both Traefik versions.
const TRAEFIK_ENABLE: &str = "traefik.enable";
/// The network labels both Traefik versions read, in order of precedence.
const TRAEFIK_NETWORK: [&str; 2] = ["traefik.docker.network", "traefik.swarm.network"];

/// Whether some dialect acts on `key`.
fn is_known(key: &str) -> bool {
    key == TRAEFIK_ENABLE
        || TRAEFIK_NETWORK.contains(&key)
        || sticky::LABELS.iter().any(|l| l.key == key)
        || traefik_v1::LABELS.contains(&key)
        || traefik_v2::is_known(key)
}

/// A label's value through its one parser; the error names the label.
fn value<T>(label: &str, parsed: Result<T, ValueError>) -> Result<T, LabelError> {
    parsed.map_err(|source| LabelError::Value { label: label.to_owned(), source })
}

/// A routing rule label, in either Traefik syntax.
fn route(label: &str, text: &str) -> Result<Route, LabelError> {
    Route::parse(text).map_err(|source| LabelError::Rule { label: label.to_owned(), source })
}

/// The `<prefix>.path`, `.interval` and `.timeout` health labels (the same three in every dialect).
fn apply_health(health: &mut HealthLabels, labels: &Labels, prefix: &str) -> Result<(), LabelError> {
    if let Some(v) = labels.get(&format!("{prefix}.path")) {
        health.path = Some(v.clone());
    }
    for (field, slot) in [("interval", &mut health.interval), ("timeout", &mut health.timeout)] {
        let key = format!("{prefix}.{field}");
        if let Some(v) = labels.get(&key) {
            *slot = Some(value(&key, values::duration(v))?);
        }
    }
    Ok(())
}

/// Traefik's generated cookie name: `_` and the first 5 hex digits of `SHA-1("_TRAEFIK_BACKEND_" + name)`.
///
/// For the classic v1 recipe (service `whoami-service`) the backend is `backend-whoami-service`
/// and the name is `_a49bc`.
#[must_use]
pub fn traefik_cookie_name(backend: &str) -> String {
    let digest = Sha1::digest(format!("_TRAEFIK_BACKEND_{backend}").as_bytes());
    let hex = digest.iter().take(3).fold(String::with_capacity(6), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    format!("_{}", &hex[..5])
}

/// Traefik v1's name normalization: runs of characters other than letters and digits become `-`.
#[must_use]
pub fn normalize_v1(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
}

/// Cookie names are RFC 6265 tokens: anything else becomes `_` (as Traefik does).
#[must_use]
pub fn sanitize_cookie_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "!#$%&'*+-.^`|~_".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests;
