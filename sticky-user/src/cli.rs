//! The command line: every clap type of `sticky` (subcommands and their flags, http, tcp and Swarm
//! alike), with help texts and environment variables. Parsing only: what the values mean and whether
//! they fit together is [`crate::config`]'s job, and its defaults are the ones the help shows.
#![expect(clippy::doc_markdown, reason = "the doc comments are clap's --help text, read in a terminal, not rustdoc")]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::values;

/// sticky: a sticky-session load balancer for Docker Swarm, with an eBPF fast path.
///
/// Every flag can also be set through the environment variable named in its help (STICKY_...).
/// Logging: RUST_LOG (e.g. `info`, `sticky=debug`).
#[derive(Debug, Parser)]
#[command(name = "sticky", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sticky-session balancer: one service from --backend flags, several from --config FILE,
    /// or every Swarm service that opts in by labels with --docker.
    ///
    /// Durations are written like 500ms, 2s, 1.5s, 1m30s, 12h (a bare number is seconds).
    Run(Box<RunArgs>),
    /// Start three whoami backends and the balancer on loopback, print what to curl, serve until Ctrl-C.
    Demo(DemoArgs),
    /// A tiny demo app: every request gets `200 I'm NAME`.
    Whoami(WhoamiArgs),
    /// Attach the packet classifier to an interface and print its counters (a diagnostic of the eBPF data path).
    Inspect(InspectArgs),
    /// Hold listening sockets for `sticky run --listen-from`, so that sticky can be replaced without
    /// refusing a connection.
    ///
    /// The holder binds every --listen address and never accepts on it. Each `sticky run
    /// --listen-from PATH` asks it for the addresses of its listeners (--listen, --listen-tls, the
    /// ports of tcp services) and receives the sockets themselves over the unix socket PATH
    /// (SCM_RIGHTS): old and new sticky accept from one queue, and when the old one stops, the socket
    /// and the connections waiting in it stay. A new holder first takes every socket over from the
    /// running one (so they never close), then renames its own unix socket over PATH. If the holder
    /// dies, each sticky hands out its copies of the sockets at PATH until a holder takes them back.
    ///
    /// In Swarm (deploy/stack.yml) it runs on the host network, so clients' addresses are kept and
    /// no port is published, and shares a volume with sticky for PATH.
    Hold(HoldArgs),
}

/// `sticky hold`.
#[derive(Clone, Debug, Args)]
pub struct HoldArgs {
    /// Address to bind and hold, IP:PORT; repeat (or comma-separate in the variable) for more, e.g.
    /// 0.0.0.0:80, 0.0.0.0:443 and a tcp service's port. Each is named by this address: sticky asks
    /// for exactly what its --listen / --listen-tls / sticky.listen.port say.
    #[arg(long = "listen", env = "STICKY_HOLD_LISTEN", value_name = "ADDR", value_delimiter = ',', required = true)]
    pub listen: Vec<SocketAddr>,
    /// The unix socket sticky asks on (`sticky run --listen-from PATH`); its directory must exist (a
    /// volume shared with sticky). Mode 0600: root only.
    #[arg(long, env = "STICKY_HOLD_SOCKET", value_name = "PATH", default_value = "/run/sticky-hold/hold.sock")]
    pub socket: PathBuf,
}

/// `sticky demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Address of the balancer.
    #[arg(long, env = "STICKY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Worker threads of the balancer.
    #[arg(long, env = "STICKY_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Admin listener: the dashboard at http://ADDR/, /metrics, /api/backends. [default: none]
    #[arg(long, env = "STICKY_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

/// `sticky whoami`.
#[derive(Clone, Debug, Args)]
pub struct WhoamiArgs {
    /// Address to listen on.
    #[arg(long, env = "STICKY_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// Name in the response body (default: the host name, i.e. a container's id).
    #[arg(long, env = "STICKY_NAME")]
    pub name: Option<String>,
    /// On SIGTERM: stop accepting at once, close each open connection after its next response,
    /// and exit after this long (e.g. 500ms; keep it below Swarm's --stop-grace-period).
    #[arg(long, env = "STICKY_GRACE", default_value = "500ms", value_parser = values::duration)]
    pub grace: Duration,
}

/// `sticky inspect`.
#[derive(Clone, Debug, Args)]
pub struct InspectArgs {
    /// Interface to attach to.
    #[arg(long, env = "STICKY_IFACE")]
    pub iface: String,
    /// Attach at XDP in this mode instead of tc ingress.
    #[arg(long, env = "STICKY_XDP")]
    pub xdp: Option<XdpModeArg>,
    /// Seconds between two prints of the counters.
    #[arg(long, env = "STICKY_INTERVAL", default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many prints (default: until Ctrl-C).
    #[arg(long, env = "STICKY_COUNT")]
    pub count: Option<u64>,
}

/// `sticky inspect --xdp MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Let the kernel choose (native if the driver supports it).
    Auto,
    /// Generic XDP (in the stack, works on any device).
    Skb,
    /// Native XDP (in the driver).
    Native,
}

/// `sticky run --mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// HTTP reverse proxy pinning clients with a signed cookie.
    #[default]
    Http,
    /// L4 client affinity (eBPF full NAT, or the user-space fallback).
    Tcp,
}

/// The flags of `sticky run` (each also read from the `STICKY_*` variable named in its help). The
/// defaults in brackets are applied by [`crate::config`], so that an absent flag can be told apart
/// from one given at its default.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Balancer")]
pub struct RunArgs {
    /// Balancing mode: http (cookie-pinning reverse proxy) or tcp (L4 client affinity, in the
    /// kernel when eBPF can load, else in user space).
    #[arg(long, env = "STICKY_MODE", value_enum, default_value_t = RunMode::Http)]
    pub mode: RunMode,
    /// TOML file with several services, each with a host/path rule (see docs). Excludes the service flags below.
    #[arg(long, env = "STICKY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for client connections (tcp mode: the VIP:PORT, IPv4 or [IPv6]:PORT). [default: 0.0.0.0:8080]
    #[arg(long, env = "STICKY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Backend as URL (`http://HOST:PORT`) or NAME=URL; repeat for more, or comma-separate in the variable.
    /// The name is the backend's identity in cookies; without one, a keyed digest of the URL is used.
    /// tcp mode: IP:PORT or [IPv6]:PORT, of the --listen address's family (the kernel's NAT keeps it).
    #[arg(long = "backend", env = "STICKY_BACKEND", value_name = "[NAME=]URL", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Admin listener: the dashboard (GET /), /metrics (Prometheus), /api/backends and /api/overview
    /// (JSON), /api/explain and draining: ADDR:PORT, or PORT alone for 127.0.0.1:PORT. Reads are open;
    /// writes need --admin-token-file. [default: none]
    #[arg(long, env = "STICKY_ADMIN", value_name = "[ADDR:]PORT", value_parser = values::admin_addr)]
    pub admin: Option<SocketAddr>,
    /// File with the admin API's bearer token (>= 16 bytes; surrounding whitespace ignored), e.g. a
    /// Swarm secret: writes (drain, activate) over --admin need `Authorization: Bearer TOKEN`;
    /// without it they are refused there. The unix socket needs none (its mode is the check).
    #[arg(long, env = "STICKY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Refuse every admin write (drain, activate), on --admin and --admin-socket alike.
    #[arg(long, env = "STICKY_ADMIN_READ_ONLY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean)]
    pub admin_read_only: Option<bool>,
    /// Admin API on a unix socket (mode 0600) instead of or beside --admin: nothing on the network;
    /// its directory must exist; a stale socket file is replaced, a live one never. [default: none]
    #[arg(long, env = "STICKY_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// Take the listening sockets from the listener holder at this unix socket (`sticky hold`)
    /// instead of binding them: an update of sticky then refuses no connection. Waits up to 60 s for
    /// the holder at start. [default: none, sticky binds]
    #[arg(long, env = "STICKY_LISTEN_FROM", value_name = "PATH")]
    pub listen_from: Option<PathBuf>,
    /// Worker threads, each running its own event loop. [default: number of CPUs]
    #[arg(long, env = "STICKY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// File with a cookie signing secret (>= 16 bytes; trailing newline ignored), e.g. a Swarm secret.
    /// Instances with the same secrets accept each other's cookies. Repeat (or comma-separate in the
    /// variable) to rotate, newest first: the first signs, every one verifies, and a cookie verified by
    /// an older one is re-issued with the first. [default: a random secret per process]
    #[arg(long, env = "STICKY_COOKIE_KEY_FILE", value_name = "FILE", value_delimiter = ',')]
    pub cookie_key_file: Vec<PathBuf>,

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
    #[arg(long, env = "STICKY_COOKIE_SECURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Cookie")]
    pub cookie_secure: Option<bool>,
    /// Cookie HttpOnly attribute (true/false). [default: true]
    #[arg(long, env = "STICKY_COOKIE_HTTPONLY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Cookie")]
    pub cookie_httponly: Option<bool>,
    /// Cookie SameSite attribute: lax, strict or none. [default: not sent]
    #[arg(long, env = "STICKY_COOKIE_SAMESITE", value_name = "MODE", help_heading = "Cookie")]
    pub cookie_samesite: Option<String>,
    /// Cookie Max-Age (e.g. 3600, 90m, 12h); also how long sticky honours a cookie, refreshed at half-time.
    /// [default: none, a session cookie honoured until the browser drops it]
    #[arg(long, env = "STICKY_COOKIE_MAX_AGE", value_name = "DURATION", help_heading = "Cookie")]
    pub cookie_max_age: Option<String>,
    /// Server-side idle timeout (e.g. 30m): a session whose cookie was not re-issued for this long is
    /// re-balanced; an active one is re-issued at half of it. Carried in the signed cookie: every
    /// instance agrees, nothing is stored. [default: none]
    #[arg(long, env = "STICKY_COOKIE_IDLE_TIMEOUT", value_name = "DURATION", help_heading = "Cookie")]
    pub cookie_idle_timeout: Option<String>,
    /// Server-side absolute timeout (e.g. 8h): a session older than this since its first pin is
    /// re-balanced, e.g. to spread load after a scale-out. [default: none]
    #[arg(long, env = "STICKY_COOKIE_ABSOLUTE_TIMEOUT", value_name = "DURATION", help_heading = "Cookie")]
    pub cookie_absolute_timeout: Option<String>,
    /// When the pinned backend is gone, unhealthy or refuses connections, answer 503 instead of re-pinning.
    #[arg(long, env = "STICKY_STRICT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Cookie")]
    pub strict: Option<bool>,

    // ---- session policy (issue 18): affinity without a cookie, load bounds, cookie attributes ----
    /// What keeps a client on its backend (Gateway API GEP-1619 type): cookie (sticky's signed
    /// cookie); header (the hash of --cookie-affinity-header's value places the request, no cookie);
    /// client-ip (the hash of the client's address: the PROXY protocol's, or the last X-Forwarded-For
    /// hop of a --trusted-proxies peer; no cookie); learn (sticky's cookie is issued when the app sets
    /// the cookie --cookie-affinity-learn names, naming the backend that created the app's session).
    /// Hashes are Maglev over the backends' names: every instance agrees. A request without its key
    /// takes the cookie path. [default: cookie]
    #[arg(long, env = "STICKY_COOKIE_AFFINITY", value_name = "KIND", help_heading = "Session policy")]
    pub cookie_affinity: Option<String>,
    /// Header affinity's request header (GEP-1619 sessionName), e.g. X-Session-Id; its value is
    /// hashed, never parsed. Implies --cookie-affinity header.
    #[arg(long, env = "STICKY_COOKIE_AFFINITY_HEADER", value_name = "NAME", help_heading = "Session policy")]
    pub cookie_affinity_header: Option<String>,
    /// Learn affinity's application cookie, e.g. JSESSIONID. Implies --cookie-affinity learn.
    #[arg(long, env = "STICKY_COOKIE_AFFINITY_LEARN", value_name = "NAME", help_heading = "Session policy")]
    pub cookie_affinity_learn: Option<String>,
    /// Cookie Partitioned attribute (CHIPS), sent where Secure is; refused with --cookie-secure=false.
    #[arg(long, env = "STICKY_COOKIE_PARTITIONED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Session policy")]
    pub cookie_partitioned: Option<bool>,
    /// A further Set-Cookie attribute appended as written (e.g. Priority=High); repeat for more. No ';',
    /// CR, LF or control characters.
    #[arg(long = "cookie-attributes", value_name = "ATTR", help_heading = "Session policy")]
    pub cookie_attributes: Vec<String>,
    /// Requests in flight (on this instance) at which a backend takes no new sessions while another is
    /// below it. [default: no limit]
    #[arg(long, env = "STICKY_LOAD_MAX_INFLIGHT", value_name = "N", help_heading = "Session policy")]
    pub load_max_inflight: Option<u32>,
    /// A backend at --load-max-inflight also sheds its pinned sessions to the least-loaded backend
    /// (re-pin reason overloaded) instead of keeping them waiting. [default: false]
    #[arg(long, env = "STICKY_LOAD_SHED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Session policy")]
    pub load_shed: Option<bool>,
    /// Hash affinity's bounded loads: a backend above this percentage of the average in-flight
    /// requests passes the request to the next one on the ring (as HAProxy's hash-balance-factor),
    /// e.g. 150. [default: none]
    #[arg(long, env = "STICKY_LOAD_BALANCE_FACTOR", value_name = "PERCENT", help_heading = "Session policy")]
    pub load_balance_factor: Option<u32>,

    /// Splice pinned keep-alive connections in the kernel: a connection whose first request carries a
    /// valid cookie for an available backend is handed to the kernel after that request's head is
    /// forwarded. Its later requests are not inspected (no re-pin, no per-request metrics, no cookie
    /// refresh) and reach the backend UNMODIFIED: the client's own X-Forwarded-For/-Proto/Forwarded
    /// pass as sent and sticky's cookie is not stripped, so the app's view of the client address is
    /// client-controlled on them; a first request carrying forwarding fields is not spliced. Leave it
    /// off if a proxy in front multiplexes users on one connection. [default: false]
    #[arg(long, env = "STICKY_SPLICE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Kernel splice")]
    pub splice: Option<bool>,
    /// Splice upgraded (WebSocket) connections in the kernel once the backend answered 101. [default: true]
    #[arg(long, env = "STICKY_SPLICE_UPGRADES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "Kernel splice")]
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
    /// Inactivity on the client side once a request is under way: no byte of its body arrives, or it
    /// takes no byte of the response, for this long; then both sides are closed. [default: 30s]
    #[arg(long, env = "STICKY_CLIENT_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub client_timeout: Option<String>,
    /// Inactivity on the backend side once a request is sent: it takes no byte of the request body,
    /// or sends no byte of its response body, for this long; then both sides are closed. [default: 60s]
    #[arg(long, env = "STICKY_BACKEND_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub backend_timeout: Option<String>,
    /// Inactivity of an upgraded (WebSocket) connection relayed in user space: no byte either way for
    /// this long closes it (the kernel splice has no timer). [default: 1h]
    #[arg(long, env = "STICKY_TUNNEL_TIMEOUT", value_name = "DURATION", help_heading = "Limits")]
    pub tunnel_timeout: Option<String>,
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

    /// Offer HTTP/2 (ALPN h2, before http/1.1) on the TLS listener; false: HTTP/1.1 only. [default: true]
    #[arg(long, env = "STICKY_H2", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "HTTP/2")]
    pub h2: Option<bool>,
    /// Also accept HTTP/2 with prior knowledge (h2c) on the plain listener: a connection that starts
    /// with the HTTP/2 preface is served as HTTP/2, any other as HTTP/1. [default: false]
    #[arg(long, env = "STICKY_H2C", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean, help_heading = "HTTP/2")]
    pub h2c: Option<bool>,
    /// Streams an HTTP/2 client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    /// [default: 100]
    #[arg(long, env = "STICKY_H2_MAX_STREAMS", value_name = "N", help_heading = "HTTP/2")]
    pub h2_max_streams: Option<u32>,

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
    pub tls: TlsFlags,

    /// Who the client is: the PROXY protocol and trusted forwarding fields.
    #[command(flatten)]
    pub clients: ClientFlags,

    #[command(flatten)]
    pub tcp: TcpFlags,

    /// The operator's flags: the access log, the admin listener's accepted Host names.
    #[command(flatten)]
    pub ops: OpsFlags,
}

/// The operator's flags of `sticky run`: the access log and the admin listener's Host check.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Access log and admin")]
pub struct OpsFlags {
    /// Log one line per request (and per tcp connection relayed in user space): `text` (logfmt
    /// key=value) or `json` (one object a line). Fields: time, client (as resolved through the PROXY
    /// protocol and trusted proxies), proto, service, backend, pick (pinned, new, repinned, strict,
    /// no_backend) and its reason, status, bytes_in, bytes_out, duration_ms, method and path. The path
    /// is logged without its query string (queries carry tokens) and cut at 256 bytes. Written off the
    /// data path: lines a full queue or --access-log-rate cannot take are dropped and counted
    /// (sticky_access_log_dropped_total). [default: off]
    #[arg(long, env = "STICKY_ACCESS_LOG", value_name = "text|json", num_args = 0..=1, default_missing_value = "text")]
    pub access_log: Option<String>,
    /// File the access log is appended to. [default: stdout]
    #[arg(long, env = "STICKY_ACCESS_LOG_FILE", value_name = "PATH")]
    pub access_log_file: Option<PathBuf>,
    /// Log one request in N (sampling: the others are not logged, nothing is counted). [default: 1]
    #[arg(long, env = "STICKY_ACCESS_LOG_SAMPLE", value_name = "N")]
    pub access_log_sample: Option<u64>,
    /// At most this many lines a second; the excess is dropped and counted in
    /// sticky_access_log_dropped_total. [default: no limit]
    #[arg(long, env = "STICKY_ACCESS_LOG_RATE", value_name = "LINES")]
    pub access_log_rate: Option<u32>,
    /// Extra Host names the admin listener answers reads for (comma-separated or repeated), e.g. the
    /// name an operator's browser uses behind an SSH tunnel or a proxy. Reads on --admin answer only
    /// when the request's Host is the listener's own address, localhost, or one of these: a web page
    /// elsewhere cannot read the admin API through DNS rebinding. [default: none]
    #[arg(long = "admin-host", env = "STICKY_ADMIN_HOST", value_name = "NAME", value_delimiter = ',')]
    pub admin_hosts: Vec<String>,
}

/// The HTTPS flags of `sticky run`: the TLS listener, its certificates, and the flags' service's
/// redirect and HSTS.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "HTTPS")]
pub struct TlsFlags {
    /// Address of the TLS listener (HTTPS); beside --listen, which stays plain HTTP. [default: none]
    #[arg(long, env = "STICKY_LISTEN_TLS", value_name = "ADDR")]
    pub listen_tls: Option<SocketAddr>,
    /// Certificate chain (PEM, leaf first); repeat with one --tls-key each, in the same order. The
    /// first pair is the default certificate (for clients without SNI or with an unknown name).
    #[arg(long = "tls-cert", env = "STICKY_TLS_CERT", value_name = "FILE", value_delimiter = ',')]
    pub certs: Vec<PathBuf>,
    /// Private key (PEM: PKCS#8, SEC1 or PKCS#1) of the --tls-cert at the same position.
    #[arg(long = "tls-key", env = "STICKY_TLS_KEY", value_name = "FILE", value_delimiter = ',')]
    pub keys: Vec<PathBuf>,
    /// Directory scanned for pairs NAME.crt (or NAME.pem) + NAME.key, e.g. /run/secrets; re-read when
    /// files change and on SIGHUP. Repeatable.
    #[arg(long = "tls-dir", env = "STICKY_TLS_DIR", value_name = "DIR", value_delimiter = ',')]
    pub dirs: Vec<PathBuf>,
    /// What a client asking for a name no certificate covers (or no name) gets: `default` (the
    /// default certificate) or `refuse` (a handshake failure). [default: default]
    #[arg(long, env = "STICKY_TLS_UNKNOWN_SNI", value_name = "default|refuse")]
    pub tls_unknown_sni: Option<String>,
    /// Answer plain-HTTP requests with 308 to https:// (ACME HTTP-01 challenges are still answered).
    #[arg(long, env = "STICKY_REDIRECT_HTTPS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = values::boolean)]
    pub redirect_https: Option<bool>,
    /// ACME directory URL: sticky orders and renews certificates itself (e.g.
    /// https://acme-v02.api.letsencrypt.org/directory). Needs --acme-state. [default: none]
    #[arg(long, env = "STICKY_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact e-mail of the ACME account. [default: none]
    #[arg(long, env = "STICKY_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Directory of the ACME account, certificates and challenge answers; share it (a volume) between
    /// sticky instances: one orders (a lock file), every one answers and serves.
    #[arg(long, env = "STICKY_ACME_STATE", value_name = "DIR")]
    pub acme_state: Option<PathBuf>,
    /// Names to get a certificate for, comma-separated or repeated (besides those of services labelled
    /// sticky.tls / Traefik tls routers).
    #[arg(long = "acme-domain", env = "STICKY_ACME_DOMAIN", value_name = "NAMES", value_delimiter = ',')]
    pub acme_domains: Vec<String>,
    /// ACME challenge: http-01 (answered on the plain listener, port 80) or tls-alpn-01 (on the TLS
    /// listener, port 443). [default: http-01]
    #[arg(long, env = "STICKY_ACME_CHALLENGE", value_name = "http-01|tls-alpn-01")]
    pub acme_challenge: Option<String>,
    /// CA certificate (PEM) to trust for the ACME directory (a private or test CA such as pebble).
    #[arg(long, env = "STICKY_ACME_CA_ROOT", value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,
    /// Send `Strict-Transport-Security: max-age=MAX_AGE` on HTTPS responses (e.g. 365d is 31536000s;
    /// a bare number is seconds). [default: not sent]
    #[arg(long, env = "STICKY_HSTS", value_name = "MAX_AGE")]
    pub hsts: Option<String>,
}

/// Who the client is, on every listener (http, https, tcp mode in user space): the PROXY protocol
/// from a balancer in front, the forwarding fields of trusted proxies, and the PROXY protocol to the
/// backends of the flags' service.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Client address")]
pub struct ClientFlags {
    /// Sources (CIDR or address, comma-separated: 10.0.0.0/8,192.0.2.7) that must start each
    /// connection with a PROXY protocol header (v1 or v2, read within 3 s): its client is then the
    /// connection's client (affinity, logs, X-Forwarded-For). A connection from such a source without
    /// a valid header, or a header from any other source, is closed and counted
    /// (sticky_proxy_protocol_rejects_total). tcp mode with it runs in user space. [default: none]
    #[arg(long, env = "STICKY_PROXY_PROTOCOL_FROM", value_name = "CIDR,...", value_delimiter = ',')]
    pub proxy_protocol_from: Vec<String>,
    /// Proxies (CIDR or address, comma-separated) whose X-Forwarded-For and Forwarded fields are kept
    /// (sticky appends the peer); from any other client they are replaced, so a client cannot choose
    /// the address the backend sees. [default: none: every client's fields are replaced]
    #[arg(long, env = "STICKY_TRUSTED_PROXIES", value_name = "CIDR,...", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// The flags' service (http or tcp): start each backend connection with a PROXY protocol header
    /// naming the client: v2 or off. http mode: an upstream connection is then reused by the same client connection only. [default: off]
    #[arg(long, env = "STICKY_BACKEND_PROXY_PROTOCOL", value_name = "v2|off")]
    pub backend_proxy_protocol: Option<String>,
}

/// The flags only tcp mode reads, grouped under "TCP mode" in `sticky run --help`. `--listen`,
/// `--backend` and `--admin` are shared with http mode; `--affinity-timeout` and `--max-affinity`
/// also apply to Swarm services with `sticky.mode=tcp`.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "TCP mode (--mode tcp)")]
pub struct TcpFlags {
    /// A file of backends, one IP:PORT per line (`#` starts a comment), added to --backend. Re-read on
    /// SIGHUP: a backend that disappears drains (its open connections go on, it gets no new ones).
    #[arg(long, env = "STICKY_BACKENDS_FILE", value_name = "PATH")]
    pub backends_file: Option<PathBuf>,
    /// Interface to attach the kernel path to; repeat for more. Default: every interface except
    /// loopback and ports enslaved to a bridge or bond (the bridge itself is attached).
    #[arg(long = "iface", env = "STICKY_IFACES", value_name = "IFACE", value_delimiter = ',')]
    pub ifaces: Vec<String>,
    /// How long a client stays with its backend after its last new connection (e.g. `30s`, `10m`,
    /// `3h`); `0s` turns affinity off (Maglev alone, which moves clients when the backend set
    /// changes). [default: 3h]
    #[arg(long, env = "STICKY_AFFINITY_TIMEOUT", value_name = "DURATION")]
    pub affinity_timeout: Option<String>,
    /// Source address of balancer-to-backend packets (full NAT); backends must route it back here.
    /// Default: the address the kernel would use to reach the first backend. IPv4 only: an IPv6
    /// service's source is always the address the kernel would use to reach its first IPv6 backend.
    #[arg(long, env = "STICKY_SNAT_ADDR", value_name = "IPV4")]
    pub snat_addr: Option<Ipv4Addr>,
    /// Source ports of balancer-to-backend packets, LOW-HIGH inclusive. Must not overlap this host's
    /// ephemeral ports (net.ipv4.ip_local_port_range, 32768-60999 by default) or its listeners.
    /// [default: 61000-65535]
    #[arg(long, env = "STICKY_SNAT_PORTS", value_name = "LOW-HIGH")]
    pub snat_ports: Option<String>,
    /// Established flows the kernel tracks (CONNS holds two entries per flow); beyond it the least
    /// recently used are evicted and rebuilt on their next packet. [default: 65536]
    #[arg(long, env = "STICKY_MAX_FLOWS", value_name = "N")]
    pub max_flows: Option<u32>,
    /// Flows in their handshake the kernel tracks (HALF_OPEN, two entries each); a SYN flood churns
    /// only these. [default: 8192]
    #[arg(long, env = "STICKY_MAX_HALF_OPEN", value_name = "N")]
    pub max_half_open: Option<u32>,
    /// (client address, service) pairs whose affinity is remembered, kernel and fallback alike; beyond
    /// it the least recently used are forgotten (those clients re-pick through Maglev). [default: 65536]
    #[arg(long, env = "STICKY_MAX_AFFINITY", value_name = "N")]
    pub max_affinity: Option<u32>,
    /// Backend slots, over all services. [default: 1024]
    #[arg(long, env = "STICKY_MAX_BACKENDS", value_name = "N")]
    pub max_backends: Option<u32>,
    /// Services (each takes one Maglev row of 16381 slots, 64 KiB). [default: 16]
    #[arg(long, env = "STICKY_MAX_SERVICES", value_name = "N")]
    pub max_services: Option<u32>,
    /// Serve in user space even where the kernel path could load (tcp mode: the fallback proxy; http
    /// mode: no kernel splice, upgraded connections are relayed in user space).
    #[arg(long, env = "STICKY_NO_EBPF")]
    pub no_ebpf: bool,
}
