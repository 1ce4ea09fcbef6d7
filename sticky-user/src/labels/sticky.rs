//! sticky's own labels, `sticky.*`: one table ([`LABELS`]) of key, README help and what the value
//! sets, read by the parser, by the README test and by the "not understood" report.

use super::{Identity, LabelError, LabeledService, Labels, Mode, route, sanitize_cookie_name, value};
use crate::values::{self, ValueError};

/// `sticky.enable`: read by [`super::parse`] to decide whether the service opted in.
pub const ENABLE: &str = "sticky.enable";
/// `sticky.traefik.provider`: read by [`super::traefik_v2`] to name cookies as Traefik does.
pub const TRAEFIK_PROVIDER: &str = "sticky.traefik.provider";

/// One label: its key, its row in the README, and what its value sets.
pub struct Label {
    /// The label's key.
    pub key: &'static str,
    /// Its meaning, as the README's table gives it.
    pub help: &'static str,
    apply: fn(&mut LabeledService, &str) -> Result<(), ValueError>,
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

/// Labels read elsewhere ([`ENABLE`], [`TRAEFIK_PROVIDER`]) or by [`route`] set nothing here.
#[expect(clippy::unnecessary_wraps, reason = "the signature of every entry of the table")]
fn nothing(_: &mut LabeledService, _: &str) -> Result<(), ValueError> {
    Ok(())
}

/// Every `sticky.*` label sticky understands.
pub const LABELS: &[Label] = &[
    Label {
        key: ENABLE,
        help: "true: balance this service with sticky (false: ignore it even with Traefik labels)",
        apply: nothing,
    },
    Label { key: "sticky.mode", help: "http (default) or tcp", apply: |s, v| mode(v).map(|x| s.mode = x) },
    Label {
        key: "sticky.port",
        help: "port the tasks listen on",
        apply: |s, v| values::port(v).map(|x| s.port = Some(x)),
    },
    Label {
        key: "sticky.network",
        help: "network whose task addresses sticky uses (needed when the service has several)",
        apply: |s, v| {
            s.network = Some(v.to_owned());
            Ok(())
        },
    },
    Label {
        key: RULE,
        help: "routing rule, Traefik v1 or v2 syntax, e.g. Host(`app.example`) && PathPrefix(`/`)",
        apply: nothing,
    },
    Label {
        key: "sticky.sticky",
        help: "false: balance without pinning (default true)",
        apply: |s, v| values::boolean(v).map(|x| s.sticky = x),
    },
    Label {
        key: "sticky.cookie.name",
        help: "cookie name (default: sticky, or Traefik's generated name with Traefik labels)",
        apply: |s, v| {
            s.cookie.name = Some(sanitize_cookie_name(v));
            Ok(())
        },
    },
    Label {
        key: "sticky.cookie.path",
        help: "cookie Path (default /)",
        apply: |s, v| {
            s.cookie.path = Some(v.to_owned());
            Ok(())
        },
    },
    Label {
        key: "sticky.cookie.domain",
        help: "cookie Domain (default: none, host-only)",
        apply: |s, v| {
            s.cookie.domain = Some(v.to_owned());
            Ok(())
        },
    },
    Label {
        key: "sticky.cookie.secure",
        help: "true: Secure attribute",
        apply: |s, v| values::boolean(v).map(|x| s.cookie.secure = Some(x)),
    },
    Label {
        key: "sticky.cookie.httponly",
        help: "true: HttpOnly attribute (default true)",
        apply: |s, v| values::boolean(v).map(|x| s.cookie.http_only = Some(x)),
    },
    Label {
        key: "sticky.cookie.samesite",
        help: "lax, strict or none",
        apply: |s, v| values::same_site(v).map(|x| s.cookie.same_site = Some(x)),
    },
    Label {
        key: "sticky.cookie.maxage",
        help: "cookie Max-Age in seconds (default: session cookie)",
        apply: |s, v| values::max_age_seconds(v).map(|x| s.cookie.max_age = x),
    },
    Label {
        key: "sticky.cookie.idletimeout",
        help: "server-side idle timeout, e.g. 30m: a session not seen for this long is re-balanced (default: none)",
        apply: |s, v| values::duration(v).map(|x| s.cookie.idle_timeout = Some(x)),
    },
    Label {
        key: "sticky.cookie.absolutetimeout",
        help: "server-side absolute timeout, e.g. 8h: a session older than this is re-balanced (default: none)",
        apply: |s, v| values::duration(v).map(|x| s.cookie.absolute_timeout = Some(x)),
    },
    Label {
        key: "sticky.cookie.identity",
        help: "task (default): the cookie names the task; slot: the replica slot (node for global services), so a rolling update's replacement keeps the sessions. Changing it on a live service invalidates every cookie issued before (each client is re-pinned once; sticky logs a warning)",
        apply: |s, v| identity(v).map(|x| s.cookie.identity = x),
    },
    Label {
        key: "sticky.cookie.legacy",
        help: "true: a Traefik cookie value http://IP:PORT naming a current task is honoured and answered with sticky's cookie, on every request that carries one, so a client can pick a task by its address while it is on (default: true with Traefik labels or sticky.cookie.legacy.until, with a warning in the log)",
        apply: |s, v| values::boolean(v).map(|x| s.cookie.legacy = Some(x)),
    },
    Label {
        key: "sticky.cookie.legacy.until",
        help: "end of the Traefik cookie migration window, RFC 3339 (2027-03-31T18:00:00Z, or a date: its start in UTC); from then on Traefik values are ignored (default: no end, as Traefik would honour them)",
        apply: |s, v| values::rfc3339(v).map(|x| s.cookie.legacy_until = Some(x)),
    },
    Label {
        key: "sticky.cookie.partitioned",
        help: "true: Partitioned attribute (CHIPS: a third-party cookie kept per top-level site); needs sticky.cookie.secure=true",
        apply: |s, v| values::boolean(v).map(|x| s.cookie.partitioned = Some(x)),
    },
    Label {
        key: "sticky.cookie.attributes",
        help: "further Set-Cookie attributes, ;-separated, appended as written (e.g. Priority=High); no CR, LF or control characters",
        apply: |s, v| {
            s.cookie.extra = v.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect();
            Ok(())
        },
    },
    Label {
        key: "sticky.affinity",
        help: "what keeps a client on its task (Gateway API GEP-1619 type): cookie (default, sticky's signed cookie); header (the hash of sticky.affinity.header's value, no cookie); client-ip (the hash of the client's address, no cookie); learn (sticky's cookie is issued when the app sets the cookie sticky.affinity.learn; a request with the app's cookie but no sticky cookie goes by its hash). Hashes are Maglev over the tasks, the same on every instance; a request without its key falls back to the cookie",
        apply: |s, v| {
            crate::model::AffinityKind::parse(v)
                .map(|k| s.cookie.affinity = Some(k))
                .map_err(|_| ValueError::new(v, "cookie, header, client-ip or learn"))
        },
    },
    Label {
        key: "sticky.affinity.header",
        help: "header affinity: the request header whose value places the request (GEP-1619 sessionName), e.g. X-Session-Id; implies sticky.affinity=header",
        apply: |s, v| {
            s.cookie.affinity_header = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Label {
        key: "sticky.affinity.learn",
        help: "learn affinity: the application's session cookie, e.g. JSESSIONID; implies sticky.affinity=learn",
        apply: |s, v| {
            s.cookie.affinity_learn = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Label {
        key: "sticky.backend.maxinflight",
        help: "requests in flight (per sticky instance) at which a task takes no new sessions while another task is below it (default: no limit)",
        apply: |s, v| count(v).map(|x| s.cookie.load.max_inflight = Some(x)),
    },
    Label {
        key: "sticky.backend.shed",
        help: "true: a task at sticky.backend.maxinflight also sheds pinned sessions to the least-loaded task (re-pin reason overloaded); default false: they wait",
        apply: |s, v| values::boolean(v).map(|x| s.cookie.load.shed = x),
    },
    Label {
        key: "sticky.backend.balancefactor",
        help: "hash affinity: a task above this percentage of the average in-flight requests passes the request to the next task on the ring (bounded loads, as HAProxy's hash-balance-factor), e.g. 150 (default: none)",
        apply: |s, v| count(v).map(|x| s.cookie.load.balance_factor = Some(x)),
    },
    Label {
        key: "sticky.strict",
        help: "true: when the pinned task is gone, answer 503 instead of re-pinning",
        apply: |s, v| values::boolean(v).map(|x| s.strict = x),
    },
    Label {
        key: "sticky.tls",
        help: "true: the service is served over HTTPS: its names need certificates (on the TLS listener, --listen-tls)",
        apply: |s, v| values::boolean(v).map(|x| s.tls.enabled = x),
    },
    Label {
        key: "sticky.tls.domains",
        help: "names its certificate must cover, comma-separated (default: the rule's hosts); implies sticky.tls",
        apply: |s, v| {
            values::domains(v).map(|d| {
                s.tls.enabled = true;
                s.tls.domains = d;
            })
        },
    },
    Label {
        key: "sticky.tls.redirect",
        help: "true: answer plain-HTTP requests with 308 to https:// (ACME HTTP-01 challenges still answered)",
        apply: |s, v| values::boolean(v).map(|x| s.tls.redirect = Some(x)),
    },
    Label {
        key: "sticky.tls.hsts",
        help: "Strict-Transport-Security max-age on HTTPS responses, e.g. 365d (default: not sent)",
        apply: |s, v| values::duration(v).map(|x| s.tls.hsts = Some(x)),
    },
    Label {
        key: "sticky.backend.protocol",
        help: "what the tasks speak: http (HTTP/1.1, default) or h2c (HTTP/2 with prior knowledge, for gRPC: HTTP/2 clients' streams multiplexed, trailers passed)",
        apply: |s, v| values::backend_protocol(v).map(|x| s.backend_protocol = Some(x)),
    },
    Label {
        key: "sticky.splice",
        help: "true: after the first request of a keep-alive connection with a valid cookie, relay the connection in the kernel (later requests are not inspected; leave off behind a proxy that multiplexes users)",
        apply: |s, v| values::boolean(v).map(|x| s.splice = Some(x)),
    },
    Label {
        key: "sticky.splice.upgrades",
        help: "false: relay upgraded (WebSocket) connections in user space instead of the kernel (default true)",
        apply: |s, v| values::boolean(v).map(|x| s.splice_upgrades = Some(x)),
    },
    Label {
        key: "sticky.healthcheck.path",
        help: "HTTP path for the active health check (default: passive checks only)",
        apply: |s, v| {
            s.health.path = Some(v.to_owned());
            Ok(())
        },
    },
    Label {
        key: "sticky.healthcheck.interval",
        help: "time between probes, e.g. 5s",
        apply: |s, v| values::duration(v).map(|x| s.health.interval = Some(x)),
    },
    Label {
        key: "sticky.healthcheck.timeout",
        help: "time a probe may take, e.g. 2s",
        apply: |s, v| values::duration(v).map(|x| s.health.timeout = Some(x)),
    },
    Label {
        key: "sticky.affinity.timeout",
        help: "tcp mode: client affinity lifetime after its last connection, e.g. 30m",
        apply: |s, v| values::duration(v).map(|x| s.affinity_timeout = Some(x)),
    },
    Label {
        key: "sticky.listen.port",
        help: "tcp mode: the port sticky listens on for this service",
        apply: |s, v| values::port(v).map(|x| s.listen_port = Some(x)),
    },
    Label {
        key: "sticky.tcp.path",
        help: "tcp mode: user (default: relayed by sticky's process on a port from the holder) or kernel (the tc program in sticky's container NATs the port sticky's service publishes in host mode; serves while sticky's process is stopped; stop-first updates of sticky)",
        apply: |s, v| tcp_path(v).map(|x| s.tcp_path = Some(x)),
    },
    Label {
        key: "sticky.proxyprotocol",
        help: "v2: each backend connection starts with a PROXY protocol v2 header naming the client (http mode: an upstream connection is then reused by the same client connection only); off (default)",
        apply: |s, v| values::proxy_protocol(v).map(|x| s.proxy_protocol = Some(x)),
    },
    Label {
        key: TRAEFIK_PROVIDER,
        help: "provider name in Traefik v2/v3 generated cookie names: docker (default) or swarm",
        apply: nothing,
    },
];

/// `sticky.rule`: a rule has its own parser and error.
const RULE: &str = "sticky.rule";

/// Applies every `sticky.*` label of `labels` that [`LABELS`] knows (the others are reported by
/// [`super::parse`]).
///
/// # Errors
/// A label's value does not parse.
pub fn apply(labels: &Labels, svc: &mut LabeledService) -> Result<(), LabelError> {
    for (key, v) in labels {
        if key == RULE {
            svc.route = route(key, v)?;
        } else if let Some(label) = LABELS.iter().find(|l| l.key == key) {
            value(key, (label.apply)(svc, v))?;
        }
    }
    Ok(())
}

fn mode(v: &str) -> Result<Mode, ValueError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "http" => Ok(Mode::Http),
        "tcp" => Ok(Mode::Tcp),
        _ => Err(ValueError::new(v, "http or tcp")),
    }
}

fn tcp_path(v: &str) -> Result<crate::model::TcpPath, ValueError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "user" => Ok(crate::model::TcpPath::User),
        "kernel" => Ok(crate::model::TcpPath::Kernel),
        _ => Err(ValueError::new(v, "user or kernel")),
    }
}

fn identity(v: &str) -> Result<Identity, ValueError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "task" => Ok(Identity::Task),
        "slot" => Ok(Identity::Slot),
        _ => Err(ValueError::new(v, "task or slot")),
    }
}

fn count(v: &str) -> Result<u32, ValueError> {
    v.trim().parse().map_err(|_| ValueError::new(v, "a whole number"))
}
