//! The flags' own services: the one http service of `--backend` and the service flags (read in the
//! file's shape, so both go through the same validation), and the one tcp service of `--mode tcp`.

use std::path::PathBuf;

use super::{
    ConfigError, ServiceConfig, TcpServiceConfig,
    file::{self, FileCookie, FileDuration, FileHealth},
    invalid,
};
use crate::{
    cli::RunArgs,
    model::{Rule, ServiceId, ServiceSpec, SpliceSpec},
    values,
};

/// Name and id of the service the flags describe (http and tcp alike).
pub const SERVICE: &str = "default";

/// The first service flag given, if any (they exclude `--config` and `--docker`).
pub(super) fn service_flag_given(args: &RunArgs) -> Option<&'static str> {
    let given = [
        (!args.backends.is_empty(), "--backend"),
        (args.cookie_name.is_some(), "--cookie-name"),
        (args.cookie_path.is_some(), "--cookie-path"),
        (args.cookie_domain.is_some(), "--cookie-domain"),
        (args.cookie_secure.is_some(), "--cookie-secure"),
        (args.cookie_httponly.is_some(), "--cookie-httponly"),
        (args.cookie_samesite.is_some(), "--cookie-samesite"),
        (args.cookie_max_age.is_some(), "--cookie-max-age"),
        (args.cookie_idle_timeout.is_some(), "--cookie-idle-timeout"),
        (args.cookie_absolute_timeout.is_some(), "--cookie-absolute-timeout"),
        (args.strict.is_some(), "--strict"),
        (args.cookie_affinity.is_some(), "--cookie-affinity"),
        (args.cookie_affinity_header.is_some(), "--cookie-affinity-header"),
        (args.cookie_affinity_learn.is_some(), "--cookie-affinity-learn"),
        (args.cookie_partitioned.is_some(), "--cookie-partitioned"),
        (!args.cookie_attributes.is_empty(), "--cookie-attributes"),
        (args.load_max_inflight.is_some(), "--load-max-inflight"),
        (args.load_shed.is_some(), "--load-shed"),
        (args.load_balance_factor.is_some(), "--load-balance-factor"),
        (args.splice.is_some(), "--splice"),
        (args.splice_upgrades.is_some(), "--splice-upgrades"),
        (args.health_path.is_some(), "--health-path"),
        (args.health_interval.is_some(), "--health-interval"),
        (args.health_timeout.is_some(), "--health-timeout"),
        (args.health_fall.is_some(), "--health-fall"),
        (args.health_rise.is_some(), "--health-rise"),
        (args.backoff_min.is_some(), "--backoff-min"),
        (args.backoff_max.is_some(), "--backoff-max"),
        (args.tls.redirect_https.is_some(), "--redirect-https"),
        (args.tls.hsts.is_some(), "--hsts"),
        (args.clients.backend_proxy_protocol.is_some(), "--backend-proxy-protocol"),
    ];
    given.iter().find(|(g, _)| *g).map(|(_, n)| *n)
}

/// The flag of a service option: (section, key) -> `--cookie-max-age`, `--backoff-min`.
fn flag_name(section: &str, key: &str) -> String {
    let key = key.replace('_', "-");
    // the passive back-off flags are --backoff-min/--backoff-max, not --health-backoff-min
    if key.starts_with("backoff") { format!("--{key}") } else { format!("--{section}-{key}") }
}

/// A duration flag through the one parser.
pub(super) fn duration(flag: &str, text: Option<&String>) -> Result<Option<std::time::Duration>, ConfigError> {
    text.map(|t| file::value(flag, values::duration(t))).transpose()
}

/// The one http service described by the flags.
pub(super) fn http_service(args: &RunArgs) -> Result<ServiceConfig, ConfigError> {
    if args.backends.is_empty() {
        return Err(invalid("--backend", "at least one backend is needed (or --config FILE)"));
    }
    let text = |d: &Option<String>| d.clone().map(FileDuration::Text);
    let cookie = FileCookie {
        name: args.cookie_name.clone(),
        path: args.cookie_path.clone(),
        domain: args.cookie_domain.clone(),
        secure: args.cookie_secure,
        httponly: args.cookie_httponly,
        samesite: args.cookie_samesite.clone(),
        max_age: text(&args.cookie_max_age),
        idle_timeout: text(&args.cookie_idle_timeout),
        absolute_timeout: text(&args.cookie_absolute_timeout),
        partitioned: args.cookie_partitioned,
        attributes: (!args.cookie_attributes.is_empty()).then(|| args.cookie_attributes.clone()),
        affinity: args.cookie_affinity.clone(),
        affinity_header: args.cookie_affinity_header.clone(),
        affinity_learn: args.cookie_affinity_learn.clone(),
    };
    let load = file::FileLoad {
        max_inflight: args.load_max_inflight,
        shed: args.load_shed,
        balance_factor: args.load_balance_factor,
    };
    let health = FileHealth {
        path: args.health_path.clone(),
        interval: text(&args.health_interval),
        timeout: text(&args.health_timeout),
        fall: args.health_fall,
        rise: args.health_rise,
        backoff_min: text(&args.backoff_min),
        backoff_max: text(&args.backoff_max),
    };
    let cookie = file::cookie_spec(&cookie, &load, &flag_name)?;
    let (health, backoff) = file::health_spec(&health, &flag_name)?;
    let backends = args
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| file::value(&format!("--backend #{} ({b})", i + 1), values::backend_url(b)))
        .collect::<Result<Vec<_>, _>>()?;
    let rule = Rule::Always;
    let spec = ServiceSpec {
        id: ServiceId(SERVICE.into()),
        name: SERVICE.into(),
        priority: rule.default_priority(),
        rule,
        cookie,
        strict: args.strict.unwrap_or(false),
        health,
        backoff,
        splice: SpliceSpec::with(args.splice, args.splice_upgrades),
        tls: file::tls_spec(args.tls.redirect_https, duration("--hsts", args.tls.hsts.as_ref())?),
        backend_protocol: crate::model::BackendProtocol::default(),
        proxy_protocol: backend_proxy_protocol(args)?,
    };
    Ok(ServiceConfig { spec, backends })
}

/// The one tcp service of `--mode tcp`: `--listen` is its VIP:PORT (IPv4 or `[IPv6]:PORT`), each
/// `--backend` an `IP:PORT` of the same family (`tcp://` allowed), `--backends-file` more of them.
pub(super) fn tcp_service(args: &RunArgs) -> Result<TcpServiceConfig, ConfigError> {
    let Some(vip) = args.listen else {
        return Err(invalid("--listen", "a VIP:PORT is required with --mode tcp"));
    };
    let backends = args
        .backends
        .iter()
        .map(|b| file::value(&format!("--backend {b:?}"), values::tcp_backend(b)))
        .collect::<Result<Vec<_>, _>>()?;
    let backends_file: Option<PathBuf> = args.tcp.backends_file.clone();
    if backends.is_empty() && backends_file.is_none() {
        return Err(invalid("--backend", "no backend: give --backend IP:PORT or --backends-file PATH"));
    }
    if let Some(b) = backends.iter().find(|b: &&std::net::SocketAddr| b.is_ipv6() != vip.is_ipv6()) {
        // The kernel's full NAT keeps the address family; the user-space relay could cross it, but one
        // service behaves the same on both paths.
        return Err(invalid("--backend", format!("{b}: a backend must have the --listen address's family ({vip})")));
    }
    let proxy_protocol = backend_proxy_protocol(args)?;
    Ok(TcpServiceConfig { vip, backends, backends_file, proxy_protocol })
}

/// `--backend-proxy-protocol`: what the flags' service (http or tcp) sends its backends first.
fn backend_proxy_protocol(args: &RunArgs) -> Result<crate::proxy_protocol::Version, ConfigError> {
    args.clients.backend_proxy_protocol.as_deref().map_or(Ok(crate::proxy_protocol::Version::Off), |v| {
        file::value("--backend-proxy-protocol", values::proxy_protocol(v))
    })
}
