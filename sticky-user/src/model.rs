//! What sticky balances, as plain data: http and tcp services, their options and their backends,
//! and the one validation of those options, whatever source (flags, file, labels) they come from.
//!
//! Discovery produces a [`Catalog`]; [`crate::state`] compiles its http services into the routing
//! table the proxy reads, and [`crate::tcp`] serves its tcp services. Nothing here does I/O.

use std::{
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// A service's stable identity: the Swarm service id, or the name of a statically configured service.
///
/// It keys the per-service live state (health, counters) across catalog updates and is mixed into
/// every cookie, so a cookie of one service means nothing to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub Arc<str>);

/// A backend's stable identity within its service: the Swarm task id, or a static backend's name.
///
/// Cookies name a backend by a keyed digest of this (never by its address or list position), so it
/// must stay the same for as long as the backend is the same process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub Arc<str>);

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::rule::Rule;

/// The `SameSite` attribute of the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax`
    Lax,
    /// `SameSite=Strict`
    Strict,
    /// `SameSite=None` (browsers require Secure with it)
    None,
}

/// An option whose value cannot be used, named by its section and key (`cookie`, `samesite`) so
/// that each source can say where it was written (`--cookie-samesite`, `services[0].cookie.samesite`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{section}.{key}: {message}")]
pub struct SpecError {
    /// `cookie` or `health`.
    pub section: &'static str,
    /// The option within the section, as the file spells it (`max_age`, `backoff_min`).
    pub key: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

fn spec_error(section: &'static str, key: &'static str, message: impl Into<String>) -> SpecError {
    SpecError { section, key, message: message.into() }
}

/// How the sticky cookie is named and which attributes its `Set-Cookie` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches (HttpOnly, Partitioned, stickiness, legacy), not a state"
)]
pub struct CookieSpec {
    /// Cookie name (an RFC 6265 token).
    pub name: String,
    /// `Path` attribute.
    pub path: String,
    /// `Domain` attribute; none = host-only cookie.
    pub domain: Option<String>,
    /// `Secure` attribute: `Some(true)` always, `Some(false)` never, `None` (the default) on
    /// connections that came over TLS only, so a service served on both listeners keeps its cookie
    /// on plain HTTP and gets `Secure` on HTTPS.
    pub secure: Option<bool>,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `SameSite` attribute; none = not sent.
    pub same_site: Option<SameSite>,
    /// `Max-Age`, whole seconds; none = a session cookie. Also the server-side lifetime of a cookie.
    pub max_age: Option<Duration>,
    /// Server-side idle timeout (GEP-1619 `idleTimeout`): a session whose cookie was not re-issued
    /// for this long is re-balanced; an active one is re-issued at half of it. None: no limit.
    pub idle_timeout: Option<Duration>,
    /// Server-side absolute timeout (GEP-1619 `absoluteTimeout`): a session older than this since
    /// its first pin is re-balanced (to spread load after a scale-out). None: no limit.
    pub absolute_timeout: Option<Duration>,
    /// Whether clients are pinned at all. False (Traefik labels that do not enable stickiness): no
    /// cookie is read or set, and every request gets a new pick.
    pub enabled: bool,
    /// Honour a Traefik v1/v2 cookie value (`http://IP:PORT`) that names a current backend and
    /// answer it with sticky's cookie: clients of a service moved from Traefik keep their session.
    /// Every request that carries one is honoured, so while this is on a client can choose a task
    /// by its address: [`Self::legacy_until`] ends the migration window.
    pub legacy_traefik: bool,
    /// End of the migration window (`sticky.cookie.legacy.until`): from then on Traefik values are
    /// ignored like any invalid cookie. None: no end (Traefik-compatible, and logged as a warning).
    pub legacy_until: Option<SystemTime>,
    /// `Partitioned` attribute (CHIPS); needs `Secure`.
    pub partitioned: bool,
    /// Further attributes appended as written (`Priority=High`), validated: no `;`, CR, LF or other
    /// control characters.
    pub extra: Vec<String>,
    /// What finds a session's backend besides this cookie (GEP-1619 `type`, and sticky's own kinds).
    pub affinity: Affinity,
    /// Load bounds on pinning.
    pub load: LoadSpec,
}

/// How a request finds its session's backend (issue 18; Gateway API GEP-1619 `type: Cookie|Header`).
///
/// Every kind but [`Affinity::Cookie`] is derived by Maglev hashing of a key over the service's
/// backends ([`crate::policy::hash`]): no server state, the same answer on every instance that sees
/// the same backends. A request without its key falls back to the cookie path (a valid sticky cookie
/// pins; without one, round robin and a new cookie).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Affinity {
    /// sticky's signed cookie only (default).
    #[default]
    Cookie,
    /// The value of this request header (GEP-1619 `type: Header`, `sessionName`), hashed, never parsed.
    Header(String),
    /// The client's address (after the PROXY protocol, or the last `X-Forwarded-For` hop of a trusted proxy).
    ClientIp,
    /// The application's own session cookie of this name: sticky's cookie is issued when a response
    /// sets it (the backend that created the app's session is signed into sticky's cookie); a request
    /// carrying the app's cookie but no valid sticky cookie is placed by the hash of its value.
    Learn(String),
}

/// The kind of [`Affinity`], as a label or file value names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityKind {
    /// `cookie`
    Cookie,
    /// `header`
    Header,
    /// `client-ip`
    ClientIp,
    /// `learn`
    Learn,
}

impl AffinityKind {
    /// Parses `cookie`, `header`, `client-ip` (or `clientip`, `ip`) or `learn`.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "cookie" => Ok(Self::Cookie),
            "header" => Ok(Self::Header),
            "client-ip" | "clientip" | "ip" => Ok(Self::ClientIp),
            "learn" => Ok(Self::Learn),
            _ => Err(format!("{v:?}: expected cookie, header, client-ip or learn")),
        }
    }
}

impl Affinity {
    /// The affinity of a kind and the names given with it: a header name alone means `header`, an
    /// application cookie name alone means `learn`.
    ///
    /// # Errors
    /// A kind without its name, a name for another kind, or a name that is not a token.
    pub fn from_parts(
        kind: Option<AffinityKind>,
        header: Option<&str>,
        learn: Option<&str>,
    ) -> Result<Self, SpecError> {
        let kind = match (kind, header, learn) {
            (Some(k), _, _) => k,
            (None, Some(_), None) => AffinityKind::Header,
            (None, None, Some(_)) => AffinityKind::Learn,
            (None, None, None) => AffinityKind::Cookie,
            (None, Some(_), Some(_)) => {
                return Err(spec_error(
                    "cookie",
                    "affinity_header",
                    "a header and a learned cookie cannot both be set",
                ));
            }
        };
        let named = |key: &'static str, name: Option<&str>| match name.map(str::trim) {
            Some(n) if is_token(n) => Ok(n.to_owned()),
            Some(n) => Err(spec_error("cookie", key, format!("{n:?} is not a valid name (an RFC 9110 token)"))),
            None => Err(spec_error("cookie", key, "this affinity needs the name of what it follows")),
        };
        match kind {
            AffinityKind::Header if learn.is_none() => Ok(Self::Header(named("affinity_header", header)?)),
            AffinityKind::Learn if header.is_none() => Ok(Self::Learn(named("affinity_learn", learn)?)),
            AffinityKind::Cookie | AffinityKind::ClientIp if header.is_none() && learn.is_none() => {
                Ok(if kind == AffinityKind::Cookie { Self::Cookie } else { Self::ClientIp })
            }
            _ => Err(spec_error(
                "cookie",
                "affinity",
                "a header or learned cookie name is set for another affinity kind",
            )),
        }
    }

    /// The label's spelling of the kind.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Header(_) => "header",
            Self::ClientIp => "client-ip",
            Self::Learn(_) => "learn",
        }
    }

    /// Whether sticky's cookie is never set: header and client-ip affinity pin by their key alone.
    #[must_use]
    pub fn cookieless(&self) -> bool {
        matches!(self, Self::Header(_) | Self::ClientIp)
    }
}

/// Load bounds on pinning (issue 18): a saturated backend takes no new sessions, and may shed pinned ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSpec {
    /// In-flight requests (on this instance) at which a backend counts as saturated: it takes no new
    /// sessions while another backend is below it. None: no limit.
    pub max_inflight: Option<u32>,
    /// A saturated backend's pinned sessions move to the least-loaded backend (re-pin reason
    /// `overloaded`) instead of waiting on it.
    pub shed: bool,
    /// Hash affinity (header, client-ip, learn): a backend with more than this percentage of the
    /// average in-flight requests is skipped for the next one on the ring (bounded loads, as HAProxy's
    /// `hash-balance-factor` and Envoy's). None: no bound.
    pub balance_factor: Option<u32>,
}

/// An RFC 9110 token (header names, cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Default for CookieSpec {
    fn default() -> Self {
        Self {
            name: "sticky".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: None,
            http_only: true,
            same_site: None,
            max_age: None,
            idle_timeout: None,
            absolute_timeout: None,
            enabled: true,
            legacy_traefik: false,
            legacy_until: None,
            partitioned: false,
            extra: Vec::new(),
            affinity: Affinity::Cookie,
            load: LoadSpec::default(),
        }
    }
}

impl CookieSpec {
    /// Whether a Traefik cookie value is honoured at `now`: legacy on, and `now` before the end of
    /// its window if it has one (the end itself is outside). Pure, so the proxy, discovery and the
    /// tests all ask the same question.
    #[must_use]
    pub fn legacy_honoured(&self, now: SystemTime) -> bool {
        self.legacy_traefik && self.legacy_until.is_none_or(|until| now < until)
    }

    /// Checks that browsers accept the cookie as configured: the name an RFC 6265 token, path and
    /// domain free of spaces, `;` and control characters, `SameSite=None` only with `Secure`, a
    /// Max-Age above zero.
    ///
    /// # Errors
    /// The first option at fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        // RFC 6265 cookie-name is an RFC 7230 token
        let token = is_token;
        let attribute = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';');
        if !token(&self.name) {
            let message = format!("{:?} is not a valid cookie name (letters, digits, !#$%&'*+-.^_`|~)", self.name);
            return Err(spec_error("cookie", "name", message));
        }
        if !self.path.starts_with('/') || !attribute(&self.path) {
            let message = format!("{:?} must start with / and hold no spaces, ';' or control characters", self.path);
            return Err(spec_error("cookie", "path", message));
        }
        if let Some(d) = self.domain.as_deref().filter(|d| !attribute(d)) {
            return Err(spec_error("cookie", "domain", format!("{d:?} is not a domain")));
        }
        if self.same_site == Some(SameSite::None) && self.secure != Some(true) {
            let message = "SameSite=None needs Secure (browsers drop the cookie otherwise); set secure too";
            return Err(spec_error("cookie", "samesite", message));
        }
        if self.max_age.is_some_and(|d| d.is_zero()) {
            return Err(spec_error("cookie", "max_age", "must be longer than 0"));
        }
        if self.idle_timeout.is_some_and(|d| d.as_secs() < 2) {
            return Err(spec_error(
                "cookie",
                "idle_timeout",
                "must be at least 2s (sessions are re-issued at half of it)",
            ));
        }
        if self.absolute_timeout.is_some_and(|d| d.as_secs() < 1) {
            return Err(spec_error("cookie", "absolute_timeout", "must be at least 1s"));
        }
        self.validate_prefixes()?;
        if self.partitioned && self.secure == Some(false) {
            return Err(spec_error(
                "cookie",
                "partitioned",
                "Partitioned (CHIPS) needs Secure; do not turn secure off",
            ));
        }
        for extra in &self.extra {
            if extra.trim().is_empty() || extra.bytes().any(|b| b == b';' || b.is_ascii_control()) {
                let message =
                    format!("{extra:?}: an attribute must not be empty or hold ';', CR, LF or control characters");
                return Err(spec_error("cookie", "attributes", message));
            }
        }
        if let Affinity::Learn(app) = &self.affinity
            && *app == self.name
        {
            return Err(spec_error("cookie", "affinity_learn", "the learned cookie must not be sticky's own cookie"));
        }
        if self.load.max_inflight == Some(0) {
            return Err(spec_error("load", "max_inflight", "must be at least 1"));
        }
        if self.load.balance_factor.is_some_and(|f| f < 101) {
            return Err(spec_error(
                "load",
                "balance_factor",
                "a percentage above 100 (e.g. 150: 1.5 times the average)",
            ));
        }
        Ok(())
    }

    /// The cookie name prefixes browsers enforce (RFC 6265bis 4.1.3): `__Secure-` needs `Secure`;
    /// `__Host-` needs `Secure`, `Path=/` and no `Domain`. A cookie that breaks them is dropped by the
    /// browser, so sticky refuses the configuration instead.
    fn validate_prefixes(&self) -> Result<(), SpecError> {
        let lower = self.name.to_ascii_lowercase();
        let host = lower.starts_with("__host-");
        if !host && !lower.starts_with("__secure-") {
            return Ok(());
        }
        if self.secure != Some(true) {
            let message = format!("{:?}: a __Host-/__Secure- cookie needs secure=true", self.name);
            return Err(spec_error("cookie", "secure", message));
        }
        if host && self.domain.is_some() {
            return Err(spec_error(
                "cookie",
                "domain",
                format!("{:?}: a __Host- cookie must have no Domain", self.name),
            ));
        }
        if host && self.path != "/" {
            return Err(spec_error("cookie", "path", format!("{:?}: a __Host- cookie needs Path=/", self.name)));
        }
        Ok(())
    }
}

/// Active health checking of a service's backends (passive checking is always on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// Path of the HTTP GET check; none = no active check.
    pub path: Option<String>,
    /// Time between two checks of one backend.
    pub interval: Duration,
    /// A check that has no response head within this time fails.
    pub timeout: Duration,
    /// Consecutive failed checks that take a healthy backend out.
    pub fall: u32,
    /// Consecutive passed checks that bring a failed backend back.
    pub rise: u32,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        Self { path: None, interval: Duration::from_secs(5), timeout: Duration::from_secs(2), fall: 2, rise: 2 }
    }
}

impl HealthCheckSpec {
    /// Checks that the checks can run: a path from the root, an interval and a timeout above zero,
    /// at least one check to fall and to rise.
    ///
    /// # Errors
    /// The first option at fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(p) = self.path.as_deref().filter(|p| !p.starts_with('/')) {
            return Err(spec_error("health", "path", format!("{p:?} must start with /")));
        }
        if self.interval.is_zero() {
            return Err(spec_error("health", "interval", "must be longer than 0"));
        }
        if self.timeout.is_zero() {
            return Err(spec_error("health", "timeout", "must be longer than 0"));
        }
        if self.fall == 0 {
            return Err(spec_error("health", "fall", "must be at least 1"));
        }
        if self.rise == 0 {
            return Err(spec_error("health", "rise", "must be at least 1"));
        }
        Ok(())
    }
}

/// Passive health: how long a backend that refused or timed out a connection is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffSpec {
    /// Pause after the first failure.
    pub min: Duration,
    /// Upper bound of the pause, which doubles with each failure in a row.
    pub max: Duration,
}

impl Default for BackoffSpec {
    fn default() -> Self {
        Self { min: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

impl BackoffSpec {
    /// Checks that a failed backend is paused at all, and never for less than the first pause.
    ///
    /// # Errors
    /// The first option at fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.min.is_zero() {
            return Err(spec_error("health", "backoff_min", "must be longer than 0"));
        }
        if self.max < self.min {
            return Err(spec_error("health", "backoff_max", "must not be shorter than backoff_min"));
        }
        Ok(())
    }
}

/// Which of a service's connections the kernel relays once they are pinned (see
/// [`crate::splice`]): user space then no longer sees their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpliceSpec {
    /// Keep-alive HTTP connections whose first request carries a valid cookie for an available
    /// backend: spliced after that request's head is forwarded. Later requests on the connection are
    /// not inspected (no re-pin, no per-request metrics, no Set-Cookie refresh), so a client that
    /// multiplexes users on one connection (a proxy in front) must leave this off. Default: off.
    pub pinned: bool,
    /// Upgraded connections (WebSocket), after the backend's 101. Default: on.
    pub upgrades: bool,
}

impl Default for SpliceSpec {
    fn default() -> Self {
        Self { pinned: false, upgrades: true }
    }
}

impl SpliceSpec {
    /// The options as given (flag, file key or label), each missing one at its default.
    #[must_use]
    pub fn with(pinned: Option<bool>, upgrades: Option<bool>) -> Self {
        let default = Self::default();
        Self { pinned: pinned.unwrap_or(default.pinned), upgrades: upgrades.unwrap_or(default.upgrades) }
    }
}

/// Everything about an http service except its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Stable identity.
    pub id: ServiceId,
    /// Human name (logs, metrics, admin API).
    pub name: String,
    /// Which requests this service takes.
    pub rule: Rule,
    /// Among services whose rules match, the highest priority wins; default: [`Rule::default_priority`].
    pub priority: i64,
    /// Cookie name and attributes.
    pub cookie: CookieSpec,
    /// Pinned backend unavailable: 503 instead of a re-pin.
    pub strict: bool,
    /// Active health check.
    pub health: HealthCheckSpec,
    /// Passive health back-off.
    pub backoff: BackoffSpec,
    /// What the kernel splice takes over.
    pub splice: SpliceSpec,
    /// HTTPS: the names it needs certificates for, the redirect from plain HTTP, HSTS.
    pub tls: TlsSpec,
    /// What the tasks speak (`sticky.backend.protocol`, Traefik's `server.scheme`).
    pub backend_protocol: BackendProtocol,
    /// What each backend connection starts with: a PROXY protocol v2 header naming the client, or
    /// nothing. With v2, an upstream connection is reused by the same client connection only (a header
    /// describes one client).
    pub proxy_protocol: crate::proxy_protocol::Version,
}

/// The protocol sticky speaks to a service's tasks (issue 15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendProtocol {
    /// HTTP/1.1 (every client's requests, HTTP/2 ones translated).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (gRPC): HTTP/2 clients' streams are multiplexed on pooled
    /// connections, trailers pass. HTTP/1 clients' requests still go as HTTP/1.1 (sticky's HTTP/1
    /// engine does not translate to HTTP/2; a gRPC client speaks HTTP/2).
    H2c,
}

impl BackendProtocol {
    /// The label and file value: `http` or `h2c`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http",
            Self::H2c => "h2c",
        }
    }
}

/// A service's HTTPS options (issue 19). Every service answers on both listeners (plain and TLS);
/// these say what it asks of the TLS side and of its plain side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSpec {
    /// The service asked for TLS (`sticky.tls=true`, a Traefik router with `tls=true`, the
    /// `websecure`/`https` entry point): its names need certificates.
    pub enabled: bool,
    /// Names a certificate must cover (`sticky.tls.domains`, Traefik's `tls.domains[n]`); empty: the
    /// rule's hosts.
    pub domains: Vec<String>,
    /// Traefik's `tls.certresolver` (ACME), kept to report it; certificates come from sticky's own.
    pub cert_resolver: Option<String>,
    /// Plain-HTTP requests get `308 Permanent Redirect` to `https://` (ACME HTTP-01 answers excepted).
    pub redirect: bool,
    /// `Strict-Transport-Security: max-age=N` on responses over TLS; none: not sent.
    pub hsts: Option<u64>,
}

/// Whether a backend takes new sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AdminState {
    /// Takes new sessions and serves its pinned ones.
    #[default]
    Active,
    /// Serves its pinned sessions, takes no new ones (a Swarm task being shut down, or drained by hand).
    Draining,
}

/// One backend as discovery sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity (task id, or static name).
    pub id: BackendId,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Share of new sessions relative to the service's other backends (>= 1).
    pub weight: u32,
    /// What discovery says about new sessions (a manual drain through the admin API adds to it).
    pub admin: AdminState,
}

impl ServiceSpec {
    /// Checks every option (cookie, health, back-off) as [`CookieSpec::validate`] and its
    /// siblings do.
    ///
    /// # Errors
    /// The first option at fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.cookie.validate()?;
        self.health.validate()?;
        self.backoff.validate()
    }
}

/// An http service and its current backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpService {
    /// The service.
    pub spec: ServiceSpec,
    /// Its backends, in no particular order.
    pub backends: Vec<Backend>,
}

/// A tcp-mode service: clients of one address kept on one backend each (affinity, then Maglev).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpService {
    /// Stable identity (Swarm service id, or `default` for the flags' service).
    pub id: ServiceId,
    /// Human name (logs, metrics).
    pub name: String,
    /// Where clients connect: the VIP the kernel path matches, or the address the user-space path
    /// binds (`0.0.0.0:PORT` for Swarm services).
    pub vip: SocketAddr,
    /// The backends (order and duplicates do not matter).
    pub backends: Vec<SocketAddr>,
    /// How long a client's affinity is trusted after its last new connection; zero turns affinity
    /// off (Maglev alone still keeps a client on one backend while the set does not change).
    pub affinity_timeout: Duration,
    /// What each backend connection starts with (a PROXY protocol v2 header, or nothing); a service
    /// with a header is served in user space (the kernel's NAT cannot insert bytes into a stream).
    pub proxy_protocol: crate::proxy_protocol::Version,
    /// Every backend with its identity and drain state, for the admin API and drain: `backends`
    /// are the active ones' addresses; Swarm's draining tasks are here only.
    pub members: Vec<TcpMember>,
    /// Which path serves it under `--docker` (label `sticky.tcp.path`); `--mode tcp` decides by flags.
    pub path: TcpPath,
}

/// One backend of a tcp service as the admin API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpMember {
    /// Stable identity (Swarm task id or slot; the address for static backends).
    pub id: String,
    /// Address.
    pub addr: SocketAddr,
    /// True if discovery drains it (Swarm: desired state not `running`).
    pub draining: bool,
}

impl TcpMember {
    /// Static backends: each named by its address.
    #[must_use]
    pub fn by_address(backends: &[SocketAddr]) -> Vec<Self> {
        backends.iter().map(|a| Self { id: a.to_string(), addr: *a, draining: false }).collect()
    }
}

/// Which of tcp mode's paths serves a Swarm tcp service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpPath {
    /// A relay in sticky's process on a socket from the listener holder (the default: sticky's
    /// own updates are seamless).
    #[default]
    User,
    /// The tc program inside sticky's container, for a port sticky's service publishes in host
    /// mode: packets are translated in the kernel and keep flowing while sticky's process is
    /// stopped, at the price of stop-first updates of sticky.
    Kernel,
}

impl TcpService {
    /// A service named after its VIP (for tests and tools that have no other name for it).
    #[must_use]
    pub fn at(vip: SocketAddr, backends: Vec<SocketAddr>, affinity_timeout: Duration) -> Self {
        let name = vip.to_string();
        Self {
            id: ServiceId(name.as_str().into()),
            name,
            vip,
            members: TcpMember::by_address(&backends),
            backends,
            affinity_timeout,
            proxy_protocol: crate::proxy_protocol::Version::Off,
            path: TcpPath::User,
        }
    }
}

/// One complete view published by discovery: every service sticky balances, with its backends.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Catalog {
    /// The http services (the proxy).
    pub http: Vec<HttpService>,
    /// The tcp services (tcp mode).
    pub tcp: Vec<TcpService>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching_and_priority_follow_traefik() {
        let api = Rule::And(vec![Rule::Host(vec!["Example.com".into()]), Rule::PathPrefix(vec!["/api".into()])]);
        assert!(api.matches(Some("example.COM"), "/api/x"));
        assert!(!api.matches(Some("example.com"), "/web"));
        assert!(!api.matches(None, "/api"));
        assert_eq!(api.to_traefik(), "Host(`Example.com`) && PathPrefix(`/api`)");
        assert!(api.default_priority() > Rule::Always.default_priority());
        let any = Rule::Or(vec![Rule::Host(vec!["a".into()]), api.clone()]);
        assert!(any.matches(Some("a"), "/"));
        assert_eq!(any.to_traefik(), "Host(`a`) || (Host(`Example.com`) && PathPrefix(`/api`))");
        assert!(Rule::Always.matches(None, "/anything"));
    }

    #[test]
    fn options_are_validated_the_same_whatever_their_source() {
        assert_eq!(CookieSpec::default().validate(), Ok(()));
        let key = |spec: CookieSpec| spec.validate().expect_err("the option must be refused").key;
        assert_eq!(key(CookieSpec { name: "a b".into(), ..CookieSpec::default() }), "name");
        assert_eq!(key(CookieSpec { path: "app".into(), ..CookieSpec::default() }), "path");
        assert_eq!(key(CookieSpec { domain: Some("a;b".into()), ..CookieSpec::default() }), "domain");
        assert_eq!(key(CookieSpec { same_site: Some(SameSite::None), ..CookieSpec::default() }), "samesite");
        assert_eq!(key(CookieSpec { max_age: Some(Duration::ZERO), ..CookieSpec::default() }), "max_age");
        let none_secure = CookieSpec { same_site: Some(SameSite::None), secure: Some(true), ..CookieSpec::default() };
        assert_eq!(none_secure.validate(), Ok(()), "SameSite=None is fine with Secure");

        assert_eq!(HealthCheckSpec::default().validate(), Ok(()));
        let zero = HealthCheckSpec { interval: Duration::ZERO, ..HealthCheckSpec::default() };
        let e = zero.validate().expect_err("a zero interval must be refused, from a flag or a label alike");
        assert_eq!((e.section, e.key), ("health", "interval"));
        assert_eq!(
            HealthCheckSpec { fall: 0, ..HealthCheckSpec::default() }.validate().map_err(|e| e.key),
            Err("fall")
        );
        let backoff = BackoffSpec { min: Duration::from_secs(2), max: Duration::from_secs(1) };
        assert_eq!(backoff.validate().map_err(|e| e.key), Err("backoff_max"));
    }

    #[test]
    fn cookie_prefixes_partitioned_and_extra_attributes_are_validated() {
        let secure = |name: &str| CookieSpec { name: name.into(), secure: Some(true), ..CookieSpec::default() };
        let key = |spec: CookieSpec| spec.validate().expect_err("the option must be refused").key;
        assert_eq!(secure("__Host-s").validate(), Ok(()));
        assert_eq!(secure("__Secure-s").validate(), Ok(()));
        assert_eq!(key(CookieSpec { name: "__Host-s".into(), ..CookieSpec::default() }), "secure", "secure unset");
        assert_eq!(key(CookieSpec { name: "__secure-s".into(), ..CookieSpec::default() }), "secure", "any case");
        assert_eq!(key(CookieSpec { domain: Some("example.com".into()), ..secure("__Host-s") }), "domain");
        assert_eq!(key(CookieSpec { path: "/app".into(), ..secure("__Host-s") }), "path");
        assert_eq!(CookieSpec { domain: Some("example.com".into()), ..secure("__Secure-s") }.validate(), Ok(()));
        assert_eq!(key(CookieSpec { partitioned: true, secure: Some(false), ..CookieSpec::default() }), "partitioned");
        assert_eq!(CookieSpec { partitioned: true, ..CookieSpec::default() }.validate(), Ok(()), "Secure on TLS");
        for bad in ["a;b", "a\r\nSet-Cookie: x=1", "", " ", "a\x7f"] {
            let spec = CookieSpec { extra: vec![bad.into()], ..CookieSpec::default() };
            assert_eq!(key(spec), "attributes", "{bad:?}");
        }
        assert_eq!(CookieSpec { extra: vec!["Priority=High".into()], ..CookieSpec::default() }.validate(), Ok(()));
    }

    #[test]
    fn affinity_kinds_and_names_combine_or_are_refused() {
        let parts = |k: Option<&str>, h: Option<&str>, l: Option<&str>| {
            Affinity::from_parts(k.map(|k| AffinityKind::parse(k).expect("a kind")), h, l)
        };
        assert_eq!(parts(None, None, None), Ok(Affinity::Cookie));
        assert_eq!(parts(Some("header"), Some("X-Session-Id"), None), Ok(Affinity::Header("X-Session-Id".into())));
        assert_eq!(parts(None, Some("X-Session-Id"), None), Ok(Affinity::Header("X-Session-Id".into())), "implied");
        assert_eq!(parts(Some("client-ip"), None, None), Ok(Affinity::ClientIp));
        assert_eq!(parts(None, None, Some("JSESSIONID")), Ok(Affinity::Learn("JSESSIONID".into())));
        assert_eq!(parts(Some("header"), None, None).map_err(|e| e.key), Err("affinity_header"));
        assert_eq!(parts(Some("header"), Some("X Id"), None).map_err(|e| e.key), Err("affinity_header"));
        assert_eq!(parts(Some("client-ip"), Some("X-Id"), None).map_err(|e| e.key), Err("affinity"));
        assert!(parts(None, Some("X-Id"), Some("JSESSIONID")).is_err());
        assert!(AffinityKind::parse("sourceip").is_err());
        let own = CookieSpec { affinity: Affinity::Learn("sticky".into()), ..CookieSpec::default() };
        assert_eq!(own.validate().map_err(|e| e.key), Err("affinity_learn"), "sticky's own cookie cannot be learned");
        let zero =
            CookieSpec { load: LoadSpec { max_inflight: Some(0), ..LoadSpec::default() }, ..CookieSpec::default() };
        assert_eq!(zero.validate().map_err(|e| e.key), Err("max_inflight"));
        let flat =
            CookieSpec { load: LoadSpec { balance_factor: Some(100), ..LoadSpec::default() }, ..CookieSpec::default() };
        assert_eq!(flat.validate().map_err(|e| e.key), Err("balance_factor"));
    }

    #[test]
    fn legacy_cookies_are_honoured_only_inside_their_window() {
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_806_516_000);
        let before = until - Duration::from_secs(1);
        let after = until + Duration::from_secs(1);
        let spec = |legacy_traefik, legacy_until| CookieSpec { legacy_traefik, legacy_until, ..CookieSpec::default() };
        assert!(!CookieSpec::default().legacy_honoured(before), "off by default");
        assert!(spec(true, None).legacy_honoured(after), "no end: always (Traefik-compatible)");
        assert!(spec(true, Some(until)).legacy_honoured(before));
        assert!(!spec(true, Some(until)).legacy_honoured(until), "the end itself is outside the window");
        assert!(!spec(true, Some(until)).legacy_honoured(after));
        assert!(!spec(false, Some(until)).legacy_honoured(before), "off wins over a window");
    }
}
