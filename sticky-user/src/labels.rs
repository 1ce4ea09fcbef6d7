//! Swarm service labels -> what sticky should do with the service (pure).
//!
//! Three label sets are understood, and may be mixed (sticky's own labels win):
//! - sticky's own `sticky.*` (see [`STICKY_LABELS`] and the README's table);
//! - Traefik v1, as in the classic Swarm sticky-session recipe: `traefik.port`, `traefik.docker.network`,
//!   `traefik.frontend.rule`, `traefik.backend.loadbalancer.stickiness[.cookieName]`,
//!   `traefik.backend.loadbalancer.sticky`, `traefik.backend`, `traefik.backend.healthcheck.*`;
//! - Traefik v2/v3: `traefik.http.services.<s>.loadbalancer.server.port`,
//!   `...loadbalancer.sticky.cookie[.name|.secure|.httponly|.samesite|.maxage|.path|.domain]`,
//!   `...loadbalancer.healthcheck.*`, `traefik.http.routers.<r>.rule`.
//!
//! A label in the `sticky.` or `traefik.` namespace that sticky does not act on is reported in
//! [`LabeledService::ignored`] (the caller logs each once), never silently dropped. With Traefik
//! labels and no cookie name, the cookie is named as Traefik names it, so existing clients keep
//! their session cookie's name across the migration.

use std::{collections::BTreeMap, time::Duration};

use sha1::{Digest as _, Sha1};

pub use crate::model::SameSite;
use crate::rule::{Route, RuleError};

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
pub enum Source {
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
    /// What the cookie names (`sticky.cookie.identity`).
    pub identity: Identity,
    /// Whether a Traefik cookie value (`http://IP:PORT`) is honoured once (`sticky.cookie.legacy`;
    /// `None`: yes when Traefik labels are present).
    pub legacy: Option<bool>,
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

/// What the labels of one Swarm service ask sticky to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledService {
    /// Balancing mode.
    pub mode: Mode,
    /// The tasks' port to send to; `None` if no label gives it (the caller may use the only exposed port).
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
    /// tcp mode: how long a client's affinity to a task lasts after its last connection.
    pub affinity_timeout: Option<Duration>,
    /// tcp mode: the port sticky listens on for this service.
    pub listen_port: Option<u16>,
    /// Which label sets contributed.
    pub sources: Vec<Source>,
    /// Labels in sticky's or Traefik's namespace that sticky does not act on (log each once).
    pub ignored: Vec<String>,
}

/// A label whose value sticky cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The value does not parse.
    #[error("label {label}={value:?}: {reason}")]
    Value {
        /// Label key.
        label: String,
        /// Label value.
        value: String,
        /// What was expected.
        reason: &'static str,
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

/// sticky's own labels, documented in the README.
pub const STICKY_LABELS: &[(&str, &str)] = &[
    ("sticky.enable", "true: balance this service with sticky (false: ignore it even with Traefik labels)"),
    ("sticky.mode", "http (default) or tcp"),
    ("sticky.port", "port the tasks listen on"),
    ("sticky.network", "network whose task addresses sticky uses (needed when the service has several)"),
    ("sticky.rule", "routing rule, Traefik v1 or v2 syntax, e.g. Host(`app.example`) && PathPrefix(`/`)"),
    ("sticky.sticky", "false: balance without pinning (default true)"),
    ("sticky.cookie.name", "cookie name (default: sticky, or Traefik's generated name with Traefik labels)"),
    ("sticky.cookie.path", "cookie Path (default /)"),
    ("sticky.cookie.domain", "cookie Domain (default: none, host-only)"),
    ("sticky.cookie.secure", "true: Secure attribute"),
    ("sticky.cookie.httponly", "true: HttpOnly attribute (default true)"),
    ("sticky.cookie.samesite", "lax, strict or none"),
    ("sticky.cookie.maxage", "cookie Max-Age in seconds (default: session cookie)"),
    (
        "sticky.cookie.identity",
        "task (default): the cookie names the task; slot: the replica slot (node for global services), so a rolling update's replacement keeps the sessions",
    ),
    (
        "sticky.cookie.legacy",
        "true: a Traefik cookie value http://IP:PORT naming a current task is honoured once and replaced by sticky's cookie (default: true with Traefik labels)",
    ),
    ("sticky.strict", "true: when the pinned task is gone, answer 503 instead of re-pinning"),
    (
        "sticky.splice",
        "true: after the first request of a keep-alive connection with a valid cookie, relay the connection in the kernel (later requests are not inspected; leave off behind a proxy that multiplexes users)",
    ),
    (
        "sticky.splice.upgrades",
        "false: relay upgraded (WebSocket) connections in user space instead of the kernel (default true)",
    ),
    ("sticky.healthcheck.path", "HTTP path for the active health check (default: passive checks only)"),
    ("sticky.healthcheck.interval", "time between probes, e.g. 5s"),
    ("sticky.healthcheck.timeout", "time a probe may take, e.g. 2s"),
    ("sticky.affinity.timeout", "tcp mode: client affinity lifetime after its last connection, e.g. 30m"),
    ("sticky.listen.port", "tcp mode: the port sticky listens on for this service"),
    ("sticky.traefik.provider", "provider name in Traefik v2/v3 generated cookie names: docker (default) or swarm"),
];

/// Reads a service's labels. `Ok(None)`: the service did not opt in (no sticky or Traefik labels,
/// or an explicit `sticky.enable=false`/`traefik.enable=false`).
///
/// # Errors
/// A label sticky acts on has an unusable value (the message names the label).
pub fn parse(service_name: &str, labels: &BTreeMap<String, String>) -> Result<Option<LabeledService>, LabelError> {
    let get = |k: &str| labels.get(k).map(String::as_str);
    let sticky_enable = get("sticky.enable").map(|v| boolean("sticky.enable", v)).transpose()?;
    let traefik_enable = get("traefik.enable").map(|v| boolean("traefik.enable", v)).transpose()?;
    let has_sticky = labels.keys().any(|k| k.starts_with("sticky."));
    let has_v1 = labels.keys().any(|k| is_v1(k));
    let has_v2 = labels.keys().any(|k| k.starts_with("traefik.http.") || k.starts_with("traefik.tcp."));
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
        affinity_timeout: None,
        listen_port: None,
        sources: Vec::new(),
        ignored: Vec::new(),
    };
    let mut traefik_sticky: Option<bool> = None;
    if has_v1 {
        svc.sources.push(Source::TraefikV1);
        traefik_sticky = apply_v1(service_name, labels, &mut svc)?;
    }
    if has_v2 {
        svc.sources.push(Source::TraefikV2);
        let provider = get("sticky.traefik.provider").unwrap_or("docker");
        if let Some(s) = apply_v2(service_name, provider, labels, &mut svc)? {
            traefik_sticky = Some(traefik_sticky.unwrap_or(false) || s);
        }
    }
    if has_v1 || has_v2 {
        // Faithful to Traefik: its labels pin only when they enable stickiness (sticky.* may override).
        svc.sticky = traefik_sticky.unwrap_or(false);
    }
    if has_sticky {
        svc.sources.push(Source::Sticky);
        apply_sticky(labels, &mut svc)?;
    }
    for key in labels.keys() {
        let known = key == "sticky.enable" || key == "traefik.enable" || is_acted_on(key);
        if !known && (key.starts_with("sticky.") || key.starts_with("traefik.")) {
            svc.ignored.push(key.clone());
        }
    }
    Ok(Some(svc))
}

/// A Traefik v1 label: `traefik.*` outside v2's `http`/`tcp`/`udp` namespaces, except the labels
/// both versions share (`enable`, the network).
fn is_v1(key: &str) -> bool {
    key.starts_with("traefik.")
        && !["traefik.http.", "traefik.tcp.", "traefik.udp."].iter().any(|p| key.starts_with(p))
        && !matches!(key, "traefik.enable" | "traefik.docker.network" | "traefik.swarm.network")
}

/// Whether `key` is one of the labels [`parse`] reads.
fn is_acted_on(key: &str) -> bool {
    const V1: &[&str] = &[
        "traefik.port",
        "traefik.docker.network",
        "traefik.swarm.network",
        "traefik.frontend.rule",
        "traefik.backend",
        "traefik.backend.loadbalancer.stickiness",
        "traefik.backend.loadbalancer.stickiness.cookieName",
        "traefik.backend.loadbalancer.sticky",
        "traefik.backend.healthcheck.path",
        "traefik.backend.healthcheck.interval",
        "traefik.backend.healthcheck.timeout",
    ];
    if V1.contains(&key) || STICKY_LABELS.iter().any(|(k, _)| *k == key) {
        return true;
    }
    if let Some(rest) = key.strip_prefix("traefik.http.services.") {
        return rest.split_once('.').is_some_and(|(_, field)| {
            matches!(
                field,
                "loadbalancer.server.port"
                    | "loadbalancer.sticky.cookie"
                    | "loadbalancer.sticky.cookie.name"
                    | "loadbalancer.sticky.cookie.secure"
                    | "loadbalancer.sticky.cookie.httponly"
                    | "loadbalancer.sticky.cookie.samesite"
                    | "loadbalancer.sticky.cookie.maxage"
                    | "loadbalancer.sticky.cookie.path"
                    | "loadbalancer.sticky.cookie.domain"
                    | "loadbalancer.healthcheck.path"
                    | "loadbalancer.healthcheck.interval"
                    | "loadbalancer.healthcheck.timeout"
            )
        });
    }
    if let Some(rest) = key.strip_prefix("traefik.http.routers.") {
        return rest.split_once('.').is_some_and(|(_, field)| field == "rule");
    }
    false
}

/// Traefik v1 labels; returns whether they enable stickiness (`None`: they say nothing about it).
fn apply_v1(
    service_name: &str,
    labels: &BTreeMap<String, String>,
    svc: &mut LabeledService,
) -> Result<Option<bool>, LabelError> {
    let get = |k: &str| labels.get(k).map(String::as_str);
    if let Some(v) = get("traefik.port") {
        svc.port = Some(port("traefik.port", v)?);
    }
    if let Some(v) = get("traefik.docker.network").or_else(|| get("traefik.swarm.network")) {
        svc.network = Some(v.to_owned());
    }
    if let Some(v) = get("traefik.frontend.rule") {
        svc.route =
            Route::parse(v).map_err(|source| LabelError::Rule { label: "traefik.frontend.rule".into(), source })?;
    }
    let stickiness = get("traefik.backend.loadbalancer.stickiness")
        .map(|v| boolean("traefik.backend.loadbalancer.stickiness", v))
        .transpose()?;
    let sticky_old = get("traefik.backend.loadbalancer.sticky")
        .map(|v| boolean("traefik.backend.loadbalancer.sticky", v))
        .transpose()?;
    let enabled = match (stickiness, sticky_old) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    };
    if enabled == Some(true) {
        svc.cookie.name = Some(match get("traefik.backend.loadbalancer.stickiness.cookieName") {
            Some(name) => sanitize_cookie_name(name),
            None => traefik_cookie_name(&format!(
                "backend-{}",
                normalize_v1(get("traefik.backend").unwrap_or(service_name))
            )),
        });
    }
    apply_health(&mut svc.health, labels, "traefik.backend.healthcheck")?;
    Ok(enabled)
}

/// Traefik v2/v3 labels; returns whether they enable stickiness.
fn apply_v2(
    service_name: &str,
    provider: &str,
    labels: &BTreeMap<String, String>,
    svc: &mut LabeledService,
) -> Result<Option<bool>, LabelError> {
    // Traefik names a service `<s>` in `traefik.http.services.<s>.*`; without such labels the
    // service is named after the Swarm service. sticky balances one service per Swarm service: the
    // first `<s>` in label order (the others are reported as ignored by the caller's log).
    let lb_names: Vec<&str> = labels
        .keys()
        .filter_map(|k| k.strip_prefix("traefik.http.services.")?.split_once('.').map(|(s, _)| s))
        .collect();
    let lb_name = lb_names.first().copied();
    if let Some(other) = lb_names.iter().find(|n| Some(**n) != lb_name) {
        svc.ignored.push(format!("traefik.http.services.{other}.* (only one service per Swarm service)"));
    }
    let lb = |field: &str| lb_name.and_then(|s| labels.get(&format!("traefik.http.services.{s}.loadbalancer.{field}")));
    let label = |field: &str| format!("traefik.http.services.{}.loadbalancer.{field}", lb_name.unwrap_or("?"));

    if let Some(v) = lb("server.port") {
        svc.port = Some(port(&label("server.port"), v)?);
    }
    if let Some(v) = labels.get("traefik.docker.network").or_else(|| labels.get("traefik.swarm.network")) {
        svc.network = Some(v.clone());
    }
    // Every router's rule routes here (their `service` fields can only name this service).
    let mut routes = Vec::new();
    for (key, value) in labels {
        if let Some(rest) = key.strip_prefix("traefik.http.routers.")
            && rest.ends_with(".rule")
        {
            routes.push(Route::parse(value).map_err(|source| LabelError::Rule { label: key.clone(), source })?);
        }
    }
    if let Some(first) = routes.first().cloned() {
        svc.route = if routes.len() == 1 {
            first
        } else {
            Route {
                strip_prefix: routes.iter().any(|r| r.strip_prefix),
                priority: routes.iter().map(|r| r.priority).max().unwrap_or(0),
                rule: crate::rule::Rule::Or(routes.into_iter().map(|r| r.rule).collect()),
            }
        };
    }

    if let Some(s) = lb_name {
        apply_health(&mut svc.health, labels, &format!("traefik.http.services.{s}.loadbalancer.healthcheck"))?;
    }
    let cookie_fields = [
        "sticky.cookie",
        "sticky.cookie.name",
        "sticky.cookie.secure",
        "sticky.cookie.httponly",
        "sticky.cookie.samesite",
        "sticky.cookie.maxage",
        "sticky.cookie.path",
        "sticky.cookie.domain",
    ];
    if !cookie_fields.iter().any(|f| lb(f).is_some()) {
        return Ok(None);
    }
    // `...sticky.cookie=true` or any cookie option enables it; `=false` alone disables it.
    let enabled = match lb("sticky.cookie") {
        Some(v) => boolean(&label("sticky.cookie"), v)? || cookie_fields[1..].iter().any(|f| lb(f).is_some()),
        None => true,
    };
    if enabled {
        let name = match lb("sticky.cookie.name") {
            Some(n) => sanitize_cookie_name(n),
            None => traefik_cookie_name(&format!(
                "{}@{provider}",
                lb_name.map_or_else(|| normalize_v1(service_name), str::to_owned)
            )),
        };
        svc.cookie.name = Some(name);
        if let Some(v) = lb("sticky.cookie.secure") {
            svc.cookie.secure = Some(boolean(&label("sticky.cookie.secure"), v)?);
        }
        if let Some(v) = lb("sticky.cookie.httponly") {
            svc.cookie.http_only = Some(boolean(&label("sticky.cookie.httponly"), v)?);
        }
        if let Some(v) = lb("sticky.cookie.samesite") {
            svc.cookie.same_site = Some(same_site(&label("sticky.cookie.samesite"), v)?);
        }
        if let Some(v) = lb("sticky.cookie.maxage") {
            svc.cookie.max_age = max_age(&label("sticky.cookie.maxage"), v)?;
        }
        if let Some(v) = lb("sticky.cookie.path") {
            svc.cookie.path = Some(v.clone());
        }
        if let Some(v) = lb("sticky.cookie.domain") {
            svc.cookie.domain = Some(v.clone());
        }
    }
    Ok(Some(enabled))
}

fn apply_sticky(labels: &BTreeMap<String, String>, svc: &mut LabeledService) -> Result<(), LabelError> {
    for (key, value) in labels {
        let Some(field) = key.strip_prefix("sticky.") else { continue };
        let v = value.as_str();
        match field {
            "mode" => {
                svc.mode = match v.to_ascii_lowercase().as_str() {
                    "http" => Mode::Http,
                    "tcp" => Mode::Tcp,
                    _ => return Err(value_err(key, v, "expected http or tcp")),
                }
            }
            "port" => svc.port = Some(port(key, v)?),
            "network" => svc.network = Some(v.to_owned()),
            "rule" => svc.route = Route::parse(v).map_err(|source| LabelError::Rule { label: key.clone(), source })?,
            "sticky" => svc.sticky = boolean(key, v)?,
            "cookie.name" => svc.cookie.name = Some(sanitize_cookie_name(v)),
            "cookie.path" => svc.cookie.path = Some(v.to_owned()),
            "cookie.domain" => svc.cookie.domain = Some(v.to_owned()),
            "cookie.secure" => svc.cookie.secure = Some(boolean(key, v)?),
            "cookie.httponly" => svc.cookie.http_only = Some(boolean(key, v)?),
            "cookie.samesite" => svc.cookie.same_site = Some(same_site(key, v)?),
            "cookie.maxage" => svc.cookie.max_age = max_age(key, v)?,
            "cookie.identity" => {
                svc.cookie.identity = match v.trim().to_ascii_lowercase().as_str() {
                    "task" => Identity::Task,
                    "slot" => Identity::Slot,
                    _ => return Err(value_err(key, v, "expected task or slot")),
                }
            }
            "cookie.legacy" => svc.cookie.legacy = Some(boolean(key, v)?),
            "strict" => svc.strict = boolean(key, v)?,
            "splice" => svc.splice = Some(boolean(key, v)?),
            "splice.upgrades" => svc.splice_upgrades = Some(boolean(key, v)?),
            "healthcheck.path" => svc.health.path = Some(v.to_owned()),
            "healthcheck.interval" => svc.health.interval = Some(duration(key, v)?),
            "healthcheck.timeout" => svc.health.timeout = Some(duration(key, v)?),
            "affinity.timeout" => svc.affinity_timeout = Some(duration(key, v)?),
            "listen.port" => svc.listen_port = Some(port(key, v)?),
            _ => {}
        }
    }
    Ok(())
}

fn apply_health(health: &mut HealthLabels, labels: &BTreeMap<String, String>, prefix: &str) -> Result<(), LabelError> {
    if let Some(v) = labels.get(&format!("{prefix}.path")) {
        health.path = Some(v.clone());
    }
    for (field, slot) in [("interval", &mut health.interval), ("timeout", &mut health.timeout)] {
        let key = format!("{prefix}.{field}");
        if let Some(v) = labels.get(&key) {
            *slot = Some(duration(&key, v)?);
        }
    }
    Ok(())
}

/// Traefik's generated cookie name: `_` and the first 5 hex digits of SHA-1("_TRAEFIK_BACKEND_" + name).
///
/// For the classic v1 recipe (service `whoami-service`) the backend is `backend-whoami-service`
/// and the name is `_a49bc`.
#[must_use]
pub fn traefik_cookie_name(backend: &str) -> String {
    let digest = Sha1::digest(format!("_TRAEFIK_BACKEND_{backend}").as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
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

fn value_err(label: &str, value: &str, reason: &'static str) -> LabelError {
    LabelError::Value { label: label.to_owned(), value: value.to_owned(), reason }
}

fn boolean(label: &str, v: &str) -> Result<bool, LabelError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(value_err(label, v, "expected true or false")),
    }
}

fn port(label: &str, v: &str) -> Result<u16, LabelError> {
    v.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| value_err(label, v, "expected a port 1-65535"))
}

fn same_site(label: &str, v: &str) -> Result<SameSite, LabelError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        "none" => Ok(SameSite::None),
        _ => Err(value_err(label, v, "expected lax, strict or none")),
    }
}

/// Max-Age in seconds; 0 or negative means a session cookie (Traefik's convention for 0).
fn max_age(label: &str, v: &str) -> Result<Option<Duration>, LabelError> {
    let secs: i64 = v.trim().parse().map_err(|_| value_err(label, v, "expected a number of seconds"))?;
    Ok(u64::try_from(secs).ok().filter(|s| *s > 0).map(Duration::from_secs))
}

/// A duration: `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
fn duration(label: &str, v: &str) -> Result<Duration, LabelError> {
    parse_duration(v).ok_or_else(|| value_err(label, v, "expected a duration such as 500ms, 5s, 2m or 1h"))
}

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare number of seconds.
#[must_use]
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn seed_recipe_labels_give_traefiks_cookie_name() {
        let svc = parse(
            "whoami-service",
            &labels(&[
                ("traefik.docker.network", "whoaminet"),
                ("traefik.port", "8000"),
                ("traefik.frontend.rule", "PathPrefix:/"),
                ("traefik.backend.loadbalancer.stickiness", "true"),
            ]),
        )
        .unwrap()
        .expect("traefik labels opt in");
        assert_eq!(svc.port, Some(8000));
        assert_eq!(svc.network.as_deref(), Some("whoaminet"));
        assert!(svc.sticky);
        assert_eq!(svc.cookie.name.as_deref(), Some("_a49bc"), "the name the seed tutorial's curl shows");
        assert!(svc.route.rule.matches(Some("localhost"), "/anything"));
        assert_eq!(svc.sources, vec![Source::TraefikV1]);
        assert!(svc.ignored.is_empty(), "{:?}", svc.ignored);
    }

    #[test]
    fn v1_cookie_name_label_and_old_sticky_flag() {
        let svc = parse(
            "app",
            &labels(&[
                ("traefik.backend.loadbalancer.sticky", "true"),
                ("traefik.backend.loadbalancer.stickiness.cookieName", "my cookie"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert!(svc.sticky);
        assert_eq!(svc.cookie.name.as_deref(), Some("my_cookie"));
    }

    #[test]
    fn traefik_labels_without_stickiness_balance_without_pinning() {
        let svc = parse("app", &labels(&[("traefik.port", "80")])).unwrap().unwrap();
        assert!(!svc.sticky);
        assert_eq!(svc.cookie.name, None);
    }

    #[test]
    fn v2_labels() {
        let svc = parse(
            "stack_web",
            &labels(&[
                ("traefik.enable", "true"),
                ("traefik.http.routers.web.rule", "Host(`web.example`)"),
                ("traefik.http.routers.web.entrypoints", "http"),
                ("traefik.http.services.web.loadbalancer.server.port", "8080"),
                ("traefik.http.services.web.loadbalancer.sticky.cookie.httponly", "true"),
                ("traefik.http.services.web.loadbalancer.sticky.cookie.samesite", "strict"),
                ("traefik.http.services.web.loadbalancer.sticky.cookie.maxage", "3600"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(svc.port, Some(8080));
        assert!(svc.sticky);
        assert_eq!(svc.cookie.name.as_deref(), Some(traefik_cookie_name("web@docker").as_str()));
        assert_eq!(svc.cookie.http_only, Some(true));
        assert_eq!(svc.cookie.same_site, Some(SameSite::Strict));
        assert_eq!(svc.cookie.max_age, Some(Duration::from_secs(3600)));
        assert!(svc.route.rule.matches(Some("web.example"), "/"));
        assert!(!svc.route.rule.matches(Some("other.example"), "/"));
        assert_eq!(svc.ignored, vec!["traefik.http.routers.web.entrypoints".to_owned()]);
    }

    #[test]
    fn v2_explicit_name_and_provider_label() {
        let svc = parse(
            "web",
            &labels(&[
                ("traefik.http.services.web.loadbalancer.sticky.cookie", "true"),
                ("sticky.traefik.provider", "swarm"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(svc.cookie.name.as_deref(), Some(traefik_cookie_name("web@swarm").as_str()));
    }

    #[test]
    fn sticky_labels_override_traefik_and_cover_every_option() {
        let svc = parse(
            "db",
            &labels(&[
                ("traefik.port", "80"),
                ("traefik.backend.loadbalancer.stickiness", "true"),
                ("sticky.enable", "true"),
                ("sticky.mode", "tcp"),
                ("sticky.port", "5432"),
                ("sticky.network", "backend"),
                ("sticky.rule", "Host(`db.example`)"),
                ("sticky.cookie.name", "sid"),
                ("sticky.cookie.path", "/app"),
                ("sticky.cookie.domain", "example.com"),
                ("sticky.cookie.secure", "true"),
                ("sticky.cookie.httponly", "false"),
                ("sticky.cookie.samesite", "none"),
                ("sticky.cookie.maxage", "0"),
                ("sticky.strict", "yes"),
                ("sticky.splice", "true"),
                ("sticky.splice.upgrades", "false"),
                ("sticky.healthcheck.path", "/health"),
                ("sticky.healthcheck.interval", "2s"),
                ("sticky.healthcheck.timeout", "500ms"),
                ("sticky.affinity.timeout", "30m"),
                ("sticky.listen.port", "15432"),
                ("sticky.cookie.identity", "slot"),
                ("sticky.cookie.legacy", "false"),
                ("sticky.bogus", "1"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(svc.mode, Mode::Tcp);
        assert_eq!(svc.port, Some(5432));
        assert_eq!(svc.network.as_deref(), Some("backend"));
        assert_eq!(svc.cookie.name.as_deref(), Some("sid"));
        assert_eq!(svc.cookie.path.as_deref(), Some("/app"));
        assert_eq!(svc.cookie.domain.as_deref(), Some("example.com"));
        assert_eq!((svc.cookie.secure, svc.cookie.http_only), (Some(true), Some(false)));
        assert_eq!(svc.cookie.same_site, Some(SameSite::None));
        assert_eq!(svc.cookie.max_age, None, "0 means a session cookie");
        assert!(svc.strict);
        assert_eq!((svc.splice, svc.splice_upgrades), (Some(true), Some(false)));
        assert_eq!(svc.health.path.as_deref(), Some("/health"));
        assert_eq!(svc.health.interval, Some(Duration::from_secs(2)));
        assert_eq!(svc.health.timeout, Some(Duration::from_millis(500)));
        assert_eq!(svc.affinity_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(svc.listen_port, Some(15432));
        assert_eq!(svc.cookie.identity, Identity::Slot);
        assert_eq!(svc.cookie.legacy, Some(false));
        assert_eq!(svc.ignored, vec!["sticky.bogus".to_owned()]);
        assert_eq!(svc.sources, vec![Source::TraefikV1, Source::Sticky]);
    }

    #[test]
    fn opt_in_and_opt_out() {
        assert_eq!(parse("x", &labels(&[("com.example", "1")])).unwrap(), None);
        assert_eq!(parse("x", &labels(&[("traefik.port", "80"), ("traefik.enable", "false")])).unwrap(), None);
        assert_eq!(parse("x", &labels(&[("traefik.port", "80"), ("sticky.enable", "false")])).unwrap(), None);
        assert!(parse("x", &labels(&[("sticky.enable", "true")])).unwrap().is_some());
    }

    #[test]
    fn bad_values_name_the_label() {
        let err = parse("x", &labels(&[("sticky.port", "http")])).unwrap_err();
        assert!(err.to_string().contains("sticky.port"), "{err}");
        let err = parse("x", &labels(&[("traefik.frontend.rule", "Method:GET")])).unwrap_err();
        assert!(err.to_string().contains("traefik.frontend.rule") && err.to_string().contains("Method"), "{err}");
        assert!(parse("x", &labels(&[("sticky.cookie.samesite", "sometimes")])).is_err());
        assert!(parse("x", &labels(&[("sticky.healthcheck.interval", "5 parsecs")])).is_err());
        assert!(parse("x", &labels(&[("sticky.cookie.identity", "container")])).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn readme_documents_every_sticky_label() {
        let readme = include_str!("../../README.md");
        for (label, _) in STICKY_LABELS {
            assert!(readme.contains(&format!("| `{label}` |")), "README.md has no row for {label}");
        }
    }

    #[test]
    fn v1_normalization() {
        assert_eq!(normalize_v1("my_stack_web"), "my-stack-web");
        assert_eq!(normalize_v1("--a..b--"), "a-b");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_labels(k in "(sticky|traefik)\\.[a-z.]{0,40}", v in ".{0,20}") {
            let _ = parse("svc", &labels(&[(k.as_str(), v.as_str())]));
        }
    }
}
