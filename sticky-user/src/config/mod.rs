//! `sticky run`'s flags (and `STICKY_*` variables) and its TOML file, validated into one [`Config`]:
//! which parts run (the http proxy, tcp mode, Swarm discovery), with what settings and which
//! statically given services (pure: reading files is left to the caller).
//!
//! Precedence: a flag (or its variable) over the file over the built-in default ([`defaults`]).
//! The http service settings (backends, cookie, health, strict) come either from flags (one service
//! matching every request, [`flags`]) or from the file (several services, each with a host/path
//! rule, [`file`]), never from both. Errors name the field (`services[1].cookie.samesite`,
//! `--cookie-max-age`).

mod file;
mod flags;
pub mod ops;

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

pub use flags::SERVICE;

use crate::{
    cli::{RunArgs, RunMode},
    model::ServiceSpec,
    values::{self, BackendUrl, PortRange},
};

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

/// Built-in defaults; `sticky run --help` shows the same values (a test holds them together).
pub mod defaults {
    use std::time::Duration;

    use crate::values::PortRange;

    /// `--listen`
    pub const LISTEN: std::net::SocketAddr =
        std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 8080));
    /// `--connect-timeout`
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// `--response-timeout`
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `--idle-timeout`
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `--client-timeout`
    pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
    /// `--backend-timeout`
    pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(60);
    /// `--tunnel-timeout`
    pub const TUNNEL_TIMEOUT: Duration = Duration::from_secs(3600);
    /// `--shutdown-timeout`
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    /// `--max-header-size`
    pub const MAX_HEADER_SIZE: usize = 32 * 1024;
    /// `--max-headers`
    pub const MAX_HEADERS: usize = 100;
    /// `--max-connections`
    pub const MAX_CONNECTIONS: usize = 20_000;
    /// `--max-spliced`
    pub const MAX_SPLICED: u32 = sticky_common::maps::SPLICE_MAX_ENTRIES / 2;
    /// `--h2-max-streams`: HAProxy's and Envoy's 100 (nginx: 128).
    pub const H2_MAX_STREAMS: u32 = 100;
    /// `--docker-host`
    pub const DOCKER_HOST: &str = "unix:///var/run/docker.sock";
    /// `--docker-interval`
    pub const DOCKER_INTERVAL: Duration = Duration::from_millis(500);
    /// `--affinity-timeout`
    pub const AFFINITY_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
    /// `--snat-ports`: above Linux's default ephemeral range (32768-60999).
    pub const SNAT_PORTS: PortRange = PortRange { low: 61000, high: 65535 };
    /// `--max-flows`: `CONNS` holds two entries per flow.
    pub const MAX_FLOWS: u32 = sticky_common::maps::CONNS_MAX_ENTRIES / 2;
    /// `--max-half-open`: `HALF_OPEN` holds two entries per flow.
    pub const MAX_HALF_OPEN: u32 = sticky_common::maps::HALF_OPEN_MAX_ENTRIES / 2;
    /// `--max-affinity`
    pub const MAX_AFFINITY: u32 = sticky_common::maps::AFFINITY_MAX_ENTRIES;
    /// `--max-backends`
    pub const MAX_BACKENDS: u32 = sticky_common::maps::BACKENDS_MAX_ENTRIES;
    /// `--max-services`
    pub const MAX_SERVICES: u32 = sticky_common::maps::SERVICES_MAX_ENTRIES;
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

/// HTTP/2 on the listeners (`--h2`, `--h2c`, `--h2-max-streams`, `[http2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2 {
    /// Offer `h2` by ALPN on the TLS listener (before `http/1.1`).
    pub tls: bool,
    /// Accept HTTP/2 with prior knowledge on the plain listener (the connection preface decides).
    pub h2c: bool,
    /// Streams a client may have open at once on one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Self { tls: true, h2c: false, max_concurrent_streams: defaults::H2_MAX_STREAMS }
    }
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
    /// Client inactivity once a request is under way (its body, or taking the response); then closed.
    pub client: Duration,
    /// Backend inactivity once a request is sent (taking its body, or sending the response body).
    pub backend: Duration,
    /// Inactivity of an upgraded connection relayed in user space.
    pub tunnel: Duration,
    /// On SIGTERM/SIGINT: how long requests in flight may take to finish before the process exits.
    pub shutdown: Duration,
}

/// One statically configured http service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Everything but the backends.
    pub spec: ServiceSpec,
    /// The backends.
    pub backends: Vec<BackendUrl>,
}

/// The statically configured tcp service of `--mode tcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpServiceConfig {
    /// The VIP and port clients connect to.
    pub vip: SocketAddr,
    /// `--backend` addresses.
    pub backends: Vec<SocketAddr>,
    /// `--backends-file`: more backends, re-read on SIGHUP.
    pub backends_file: Option<PathBuf>,
    /// `--backend-proxy-protocol`: a PROXY protocol header first on each backend connection.
    pub proxy_protocol: crate::proxy_protocol::Version,
}

/// The TLS listener (`--listen-tls`, `[tls]`): where, which certificates, what an unknown name gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// Where certificates come from, in order: the explicit pairs (the first is the default
    /// certificate), then the directories.
    pub sources: Vec<crate::tls::source::Source>,
    /// A name no certificate covers (or no SNI): the default certificate or a handshake failure.
    pub unknown_sni: crate::tls::resolver::UnknownName,
    /// Certificates ordered by sticky itself, if any.
    pub acme: Option<AcmeConfig>,
}

/// ACME (`--acme-directory`, `[tls.acme]`): where to order, the account, the shared state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory: String,
    /// The account's contact e-mail.
    pub email: Option<String>,
    /// Account, certificates (`certs/`, also a certificate source) and challenge answers.
    pub state: PathBuf,
    /// Names ordered besides the services' own.
    pub domains: Vec<String>,
    /// How the CA validates the names.
    pub challenge: crate::tls::challenge::Kind,
    /// A CA root to trust for the directory (a test CA).
    pub ca_root: Option<PathBuf>,
}

/// The http proxy: listener, threads, cookie key, limits and its statically given services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Client listener (plain HTTP).
    pub listen: SocketAddr,
    /// The TLS listener, if any.
    pub tls: Option<TlsConfig>,
    /// Worker threads, each with its own event loop.
    pub workers: usize,
    /// File holding the cookie secret; none = a random secret (with a warning).
    pub key_files: Vec<PathBuf>,
    /// Per-connection limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// HTTP/2 on the listeners.
    pub h2: Http2,
    /// Services, in file order (none with `--docker`: they are discovered).
    pub services: Vec<ServiceConfig>,
    /// Who may say who the client is (PROXY protocol sources, trusted proxies).
    pub clients: ClientTrust,
}

/// Capacities of tcp mode's tables (the kernel maps, and the fallback's affinity table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Established flows tracked by the kernel.
    pub max_flows: u32,
    /// Flows in their handshake tracked by the kernel.
    pub max_half_open: u32,
    /// Clients whose affinity is remembered (per service in user space).
    pub max_affinity: u32,
    /// Backend slots, over all services.
    pub max_backends: u32,
    /// Services.
    pub max_services: u32,
}

/// tcp mode: how its services are served, and the one given by flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// `--mode tcp`'s service (none with `--docker`: services come from labels).
    pub service: Option<TcpServiceConfig>,
    /// Affinity lifetime of services that do not set their own.
    pub affinity_timeout: Duration,
    /// Interfaces to attach the kernel path to (empty: every interface but loopback and bridge ports).
    pub ifaces: Vec<String>,
    /// Source address of the packets the kernel path sends to backends (none: the one the kernel
    /// picks towards the first backend).
    pub snat_addr: Option<Ipv4Addr>,
    /// Source ports of the packets the kernel path sends to backends.
    pub snat_ports: PortRange,
    /// Table capacities.
    pub limits: TcpLimits,
    /// Whether the kernel path may be tried (with `--docker`: for the services labelled
    /// `sticky.tcp.path=kernel`; the others are relayed in user space).
    pub kernel: bool,
    /// Who may say who the client is: with PROXY protocol sources, tcp mode runs in user space (the
    /// kernel's NAT cannot strip a header from a stream).
    pub clients: ClientTrust,
}

/// `sticky run --docker`: where and how often to ask the Docker API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// The daemon's socket (`unix://...`).
    pub host: String,
    /// Re-list period without events.
    pub interval: Duration,
}

/// The validated configuration of `sticky run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Admin listener (`/metrics`, `/api/backends`), if any; one for every part that runs.
    pub admin: Option<SocketAddr>,
    /// Admin API on a unix socket (`--admin-socket`), if any: the same API, beside or instead of `admin`.
    pub admin_socket: Option<PathBuf>,
    /// The admin token's file (`--admin-token-file`), if any: TCP writes need its bearer token.
    pub admin_token_file: Option<PathBuf>,
    /// `--admin-read-only`: every admin write refused.
    pub admin_read_only: bool,
    /// The http proxy (none with `--mode tcp`).
    pub http: Option<HttpConfig>,
    /// tcp mode (none in http mode without `--docker`).
    pub tcp: Option<TcpConfig>,
    /// Swarm discovery (`--docker`), the source of both parts' services.
    pub swarm: Option<SwarmConfig>,
    /// Do not load eBPF (`--no-ebpf`): no kernel splice, tcp mode in user space.
    pub no_ebpf: bool,
    /// Where the services come from (the dashboard says it).
    pub source: Source,
    /// The listener holder's unix socket (`--listen-from`): listening sockets are taken from it
    /// instead of bound.
    pub listen_from: Option<PathBuf>,
    /// The access log (`--access-log`), if on.
    pub access_log: Option<ops::Settings>,
    /// Extra Host names admin reads answer for (`--admin-host`).
    pub admin_hosts: Vec<String>,
}

/// Where `sticky run`'s services come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Source {
    /// `--backend` (http) or `--mode tcp`'s flags.
    #[default]
    Flags,
    /// `--config FILE`.
    File,
    /// Swarm service labels (`--docker`).
    Swarm,
}

impl Source {
    /// As the admin API writes it: `flags`, `file`, `swarm`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flags => "flags",
            Self::File => "file",
            Self::Swarm => "swarm",
        }
    }
}

/// Who may say who the client is (`--proxy-protocol-from`, `--trusted-proxies`, or the file's keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTrust {
    /// Sources whose connections must start with a PROXY protocol header (empty: none is read).
    pub proxy_protocol_from: crate::cidr::Cidrs,
    /// Peers whose `X-Forwarded-For`/`Forwarded` fields are kept (empty: every client's are replaced).
    pub trusted_proxies: crate::cidr::Cidrs,
}

/// Builds the configuration from flags and, if `--config` was given, the file's text.
///
/// # Errors
/// A [`ConfigError`] naming the first field at fault.
pub fn build(args: &RunArgs, file_text: Option<&str>) -> Result<Config, ConfigError> {
    let swarm = swarm(args)?;
    let file = match (&args.config, file_text) {
        (Some(path), Some(text)) => {
            if let Some(flag) = flags::service_flag_given(args) {
                return Err(invalid(flag, "cannot be combined with --config: set service options in the file"));
            }
            Some(file::parse(path, text)?)
        }
        _ => None,
    };
    let admin = match args.admin {
        Some(a) => Some(a),
        None => file
            .as_ref()
            .and_then(|f| f.admin.as_deref())
            .map(|t| file::value("admin", values::admin_addr(t)))
            .transpose()?,
    };
    let admin_token_file =
        args.admin_token_file.clone().or_else(|| file.as_ref().and_then(|f| f.admin_token_file.clone()));
    let admin_read_only =
        args.admin_read_only.or_else(|| file.as_ref().and_then(|f| f.admin_read_only)).unwrap_or(false);
    // the flag wins over the file
    let admin_socket = args.admin_socket.clone().or_else(|| file.as_ref().and_then(|f| f.admin_socket.clone()));
    let source = match (&swarm, &file) {
        (Some(_), _) => Source::Swarm,
        (None, Some(_)) => Source::File,
        (None, None) => Source::Flags,
    };
    let clients = clients(args, file.as_ref())?;
    let access_log = ops::access_log(args, file.as_ref())?;
    let admin_hosts = ops::admin_hosts(args, file.as_ref());
    let (http, tcp) = match (args.mode, &swarm) {
        (RunMode::Http, None) => (Some(http(args, file, &clients)?), None),
        (RunMode::Http, Some(_)) => {
            (Some(http(args, file, &clients)?), Some(tcp(args, None, !args.tcp.no_ebpf, &clients)?))
        }
        (RunMode::Tcp, _) => (None, Some(tcp(args, Some(flags::tcp_service(args)?), !args.tcp.no_ebpf, &clients)?)),
    };
    Ok(Config {
        admin,
        admin_socket,
        admin_token_file,
        admin_read_only,
        http,
        tcp,
        swarm,
        no_ebpf: args.tcp.no_ebpf,
        source,
        listen_from: args.listen_from.clone(),
        access_log,
        admin_hosts,
    })
}

/// `--proxy-protocol-from` and `--trusted-proxies`, each over its file key.
fn clients(args: &RunArgs, file: Option<&file::FileConfig>) -> Result<ClientTrust, ConfigError> {
    let list = |flag: &str, given: &[String], key: &str, filed: Option<&file::OneOrMany>| {
        let (field, entries) = if given.is_empty() {
            (key, filed.cloned().map(file::OneOrMany::into_vec).unwrap_or_default())
        } else {
            (flag, given.to_vec())
        };
        crate::cidr::Cidrs::parse(&entries.join(",")).map_err(|e| invalid(field, e.to_string()))
    };
    let c = &args.clients;
    Ok(ClientTrust {
        proxy_protocol_from: list(
            "--proxy-protocol-from",
            &c.proxy_protocol_from,
            "proxy_protocol_from",
            file.and_then(|f| f.proxy_protocol_from.as_ref()),
        )?,
        trusted_proxies: list(
            "--trusted-proxies",
            &c.trusted_proxies,
            "trusted_proxies",
            file.and_then(|f| f.trusted_proxies.as_ref()),
        )?,
    })
}

/// The Swarm settings of `--docker` (none without it), which excludes the static service options.
fn swarm(args: &RunArgs) -> Result<Option<SwarmConfig>, ConfigError> {
    if !args.docker {
        return Ok(None);
    }
    if args.mode != RunMode::Http {
        return Err(invalid(
            "--mode",
            "cannot be combined with --docker: each service's mode comes from its sticky.mode label",
        ));
    }
    if args.config.is_some() {
        return Err(invalid("--config", "cannot be combined with --docker: services come from Swarm labels"));
    }
    if let Some(flag) = flags::service_flag_given(args) {
        return Err(invalid(flag, "cannot be combined with --docker: set service options with sticky.* labels"));
    }
    let interval = flags::duration("--docker-interval", args.docker_interval.as_ref())?;
    let interval = positive("--docker-interval", interval.unwrap_or(defaults::DOCKER_INTERVAL))?;
    let host = args.docker_host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| defaults::DOCKER_HOST.into());
    Ok(Some(SwarmConfig { host, interval }))
}

fn positive(field: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() { Err(invalid(field, "must be longer than 0")) } else { Ok(d) }
}

/// The http proxy's settings: flags over the file over the defaults; its services from the file,
/// the flags, or (`--docker`) none yet.
fn http(args: &RunArgs, file: Option<file::FileConfig>, clients: &ClientTrust) -> Result<HttpConfig, ConfigError> {
    let f = file.as_ref();
    let listen = match args.listen {
        Some(a) => a,
        None => file::address("listen", f.and_then(|f| f.listen.as_deref()))?.unwrap_or(defaults::LISTEN),
    };
    let workers = args
        .workers
        .or(f.and_then(|f| f.workers))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if !(1..=1024).contains(&workers) {
        return Err(invalid("workers", format!("{workers} is out of range 1..=1024")));
    }
    let key_files = if args.cookie_key_file.is_empty() {
        f.and_then(|f| f.cookie_key_file.as_ref()).map(file::KeyFiles::paths).unwrap_or_default()
    } else {
        args.cookie_key_file.clone()
    };
    if key_files.len() > crate::cookie::MAX_KEYS {
        return Err(invalid(
            "cookie-key-file",
            format!("{} files given; at most {} keys (newest first)", key_files.len(), crate::cookie::MAX_KEYS),
        ));
    }
    let tls = tls(&args.tls, f.and_then(|f| f.tls.as_ref()))?;
    let limits = limits(args, f.map(|f| &f.limits))?;
    let timeouts = timeouts(args, f.map(|f| &f.timeouts))?;
    let h2 = h2(args, f.map(|f| &f.http2))?;
    let services = match file {
        Some(file) => {
            if file.services.is_empty() {
                return Err(invalid("services", "the file defines no [[services]]"));
            }
            let services = file
                .services
                .into_iter()
                .enumerate()
                .map(|(i, s)| file::service(i, s))
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
        None => vec![flags::http_service(args)?],
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
    Ok(HttpConfig { listen, tls, workers, key_files, limits, timeouts, h2, services, clients: clients.clone() })
}

/// The TLS listener: flags over the file's `[tls]` table (certificate lists are taken whole from one
/// or the other). Certificates without a listener, or a listener without certificates, are errors.
fn tls(args: &crate::cli::TlsFlags, ft: Option<&file::FileTls>) -> Result<Option<TlsConfig>, ConfigError> {
    use crate::tls::source::{self, Source};
    let listen = match args.listen_tls {
        Some(a) => Some(a),
        None => file::address("tls.listen", ft.and_then(|t| t.listen.as_deref()))?,
    };
    let (pairs, pairs_field) = if args.certs.is_empty() && args.keys.is_empty() {
        (ft.map(|t| t.certificates.clone()).unwrap_or_default(), "tls.certificates")
    } else {
        let pairs = source::pairs(&args.certs, &args.keys).map_err(|e| invalid("--tls-cert", e.to_string()))?;
        (pairs, "--tls-cert")
    };
    let dirs = if args.dirs.is_empty() { ft.map(|t| t.dirs.clone()).unwrap_or_default() } else { args.dirs.clone() };
    if let Some(p) = pairs.iter().find(|p| p.cert.as_os_str().is_empty() || p.key.as_os_str().is_empty()) {
        return Err(invalid(pairs_field, format!("{p:?}: a certificate and a key path are both needed")));
    }
    let unknown_sni = match (&args.tls_unknown_sni, ft.and_then(|t| t.unknown_sni.as_deref())) {
        (Some(text), _) => file::value("--tls-unknown-sni", values::unknown_sni(text))?,
        (None, Some(text)) => file::value("tls.unknown_sni", values::unknown_sni(text))?,
        (None, None) => crate::tls::resolver::UnknownName::Default,
    };
    let acme = acme(args, ft.and_then(|t| t.acme.as_ref()))?;
    let Some(listen) = listen else {
        if acme.is_some() {
            return Err(invalid(
                "--acme-directory",
                "ACME needs a TLS listener: add --listen-tls ADDR (or tls.listen)",
            ));
        }
        if !pairs.is_empty() || !dirs.is_empty() {
            let field = if dirs.is_empty() { pairs_field } else { "--tls-dir" };
            return Err(invalid(
                field,
                "certificates are given but no TLS listener: add --listen-tls ADDR (or tls.listen)",
            ));
        }
        return Ok(None);
    };
    if pairs.is_empty() && dirs.is_empty() && acme.is_none() {
        return Err(invalid(
            "--listen-tls",
            "a TLS listener needs certificates: give --tls-cert FILE --tls-key FILE, --tls-dir DIR or --acme-directory URL (or tls.certificates / tls.dirs / tls.acme)",
        ));
    }
    let sources = pairs.into_iter().map(Source::Pair).chain(dirs.into_iter().map(Source::Dir)).collect();
    Ok(Some(TlsConfig { listen, sources, unknown_sni, acme }))
}

/// ACME: the flags over the file's `[tls.acme]` table (taken whole from one or the other).
fn acme(args: &crate::cli::TlsFlags, fa: Option<&file::FileAcme>) -> Result<Option<AcmeConfig>, ConfigError> {
    use crate::tls::challenge::Kind;
    let (directory, email, state, domains, challenge, ca_root, field) = match (&args.acme_directory, fa) {
        (Some(d), _) => (
            d.clone(),
            args.acme_email.clone(),
            args.acme_state.clone(),
            args.acme_domains.clone(),
            args.acme_challenge.clone(),
            args.acme_ca_root.clone(),
            "--acme",
        ),
        (None, Some(f)) => (
            f.directory.clone(),
            f.email.clone(),
            f.state.clone(),
            f.domains.clone(),
            f.challenge.clone(),
            f.ca_root.clone(),
            "tls.acme",
        ),
        (None, None) => {
            let given = args.acme_email.is_some()
                || args.acme_state.is_some()
                || !args.acme_domains.is_empty()
                || args.acme_challenge.is_some();
            if given {
                return Err(invalid("--acme-directory", "the other --acme-* flags need --acme-directory URL"));
            }
            return Ok(None);
        }
    };
    if !(directory.starts_with("https://") || directory.starts_with("http://")) {
        return Err(invalid(format!("{field}-directory"), format!("{directory:?} is not an http(s) URL")));
    }
    let Some(state) = state else {
        return Err(invalid(
            format!("{field}-state"),
            "ACME needs a state directory (a volume shared by the instances)",
        ));
    };
    let challenge = match challenge.as_deref().map(str::trim) {
        None | Some("http-01") => Kind::Http01,
        Some("tls-alpn-01") => Kind::TlsAlpn01,
        Some(other) => {
            return Err(invalid(format!("{field}-challenge"), format!("{other:?} is not http-01 or tls-alpn-01")));
        }
    };
    let mut names = Vec::new();
    for d in &domains {
        names.extend(file::value(&format!("{field}-domain"), values::domains(d))?);
    }
    Ok(Some(AcmeConfig { directory, email, state, domains: names, challenge, ca_root }))
}

/// HTTP/2: the flags over the file's `[http2]` table.
fn h2(args: &RunArgs, f: Option<&file::FileHttp2>) -> Result<Http2, ConfigError> {
    let default = Http2::default();
    let settings = Http2 {
        tls: args.h2.or(f.and_then(|f| f.tls)).unwrap_or(default.tls),
        h2c: args.h2c.or(f.and_then(|f| f.h2c)).unwrap_or(default.h2c),
        max_concurrent_streams: args
            .h2_max_streams
            .or(f.and_then(|f| f.max_concurrent_streams))
            .unwrap_or(default.max_concurrent_streams),
    };
    if !(1..=10_000).contains(&settings.max_concurrent_streams) {
        return Err(invalid(
            "h2_max_streams",
            format!("{} is out of range 1..=10000", settings.max_concurrent_streams),
        ));
    }
    Ok(settings)
}

fn limits(args: &RunArgs, fl: Option<&file::FileLimits>) -> Result<Limits, ConfigError> {
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
    Ok(limits)
}

fn timeouts(args: &RunArgs, ft: Option<&file::FileTimeouts>) -> Result<Timeouts, ConfigError> {
    let pick = |flag: &str, key: &str, given: Option<&String>, filed: Option<&file::FileDuration>, default| {
        let d = match flags::duration(flag, given)? {
            Some(d) => Some(d),
            None => file::duration(&format!("timeouts.{key}"), filed)?,
        };
        positive(flag, d.unwrap_or(default))
    };
    Ok(Timeouts {
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
        client: pick(
            "--client-timeout",
            "client",
            args.client_timeout.as_ref(),
            ft.and_then(|t| t.client.as_ref()),
            defaults::CLIENT_TIMEOUT,
        )?,
        backend: pick(
            "--backend-timeout",
            "backend",
            args.backend_timeout.as_ref(),
            ft.and_then(|t| t.backend.as_ref()),
            defaults::BACKEND_TIMEOUT,
        )?,
        tunnel: pick(
            "--tunnel-timeout",
            "tunnel",
            args.tunnel_timeout.as_ref(),
            ft.and_then(|t| t.tunnel.as_ref()),
            defaults::TUNNEL_TIMEOUT,
        )?,
        shutdown: pick(
            "--shutdown-timeout",
            "shutdown",
            args.shutdown_timeout.as_ref(),
            ft.and_then(|t| t.shutdown.as_ref()),
            defaults::SHUTDOWN_TIMEOUT,
        )?,
    })
}

/// tcp mode's settings, with `service` (the flags' one, in `--mode tcp`).
fn tcp(
    args: &RunArgs,
    service: Option<TcpServiceConfig>,
    kernel: bool,
    clients: &ClientTrust,
) -> Result<TcpConfig, ConfigError> {
    let t = &args.tcp;
    let affinity_timeout =
        flags::duration("--affinity-timeout", t.affinity_timeout.as_ref())?.unwrap_or(defaults::AFFINITY_TIMEOUT);
    let snat_ports = match &t.snat_ports {
        Some(text) => file::value("--snat-ports", values::port_range(text))?,
        None => defaults::SNAT_PORTS,
    };
    let limits = TcpLimits {
        max_flows: t.max_flows.unwrap_or(defaults::MAX_FLOWS),
        max_half_open: t.max_half_open.unwrap_or(defaults::MAX_HALF_OPEN),
        max_affinity: t.max_affinity.unwrap_or(defaults::MAX_AFFINITY),
        max_backends: t.max_backends.unwrap_or(defaults::MAX_BACKENDS),
        max_services: t.max_services.unwrap_or(defaults::MAX_SERVICES),
    };
    Ok(TcpConfig {
        service,
        affinity_timeout,
        ifaces: t.ifaces.clone(),
        snat_addr: t.snat_addr,
        snat_ports,
        limits,
        kernel,
        clients: clients.clone(),
    })
}

#[cfg(test)]
mod tests;
