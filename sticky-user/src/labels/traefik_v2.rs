//! Traefik v2/v3 labels: `traefik.http.services.<s>.loadbalancer.*` (port, sticky cookie, health
//! check) and every router's rule, `traefik.http.routers.<r>.rule`.

use super::{
    LabelError, LabeledService, Labels, apply_health, normalize_v1, route, sanitize_cookie_name, traefik_cookie_name,
    value,
};
use crate::{rule::Route, values};

const SERVICES: &str = "traefik.http.services.";
const ROUTERS: &str = "traefik.http.routers.";

/// The `loadbalancer.*` fields of a service sticky acts on.
const FIELDS: &[&str] = &[
    "server.port",
    "server.scheme",
    COOKIE,
    "sticky.cookie.name",
    "sticky.cookie.secure",
    "sticky.cookie.httponly",
    "sticky.cookie.samesite",
    "sticky.cookie.maxage",
    "sticky.cookie.path",
    "sticky.cookie.domain",
    "healthcheck.path",
    "healthcheck.interval",
    "healthcheck.timeout",
    PROXY_PROTOCOL,
];
/// The PROXY protocol version sent to the backends (Traefik's `2`; sticky sends v2 only).
const PROXY_PROTOCOL: &str = "proxyprotocol.version";
/// The field that enables the sticky cookie; the others under it set its options (and enable it too).
const COOKIE: &str = "sticky.cookie";

/// A Traefik v2/v3 label (`traefik.http.*` or `traefik.tcp.*`).
#[must_use]
pub fn is_v2(key: &str) -> bool {
    key.starts_with("traefik.http.") || key.starts_with("traefik.tcp.")
}

/// Whether sticky acts on the v2 label `key`.
#[must_use]
pub fn is_known(key: &str) -> bool {
    if let Some(rest) = key.strip_prefix(SERVICES) {
        return rest
            .split_once('.')
            .and_then(|(_, field)| field.strip_prefix("loadbalancer."))
            .is_some_and(|field| FIELDS.contains(&field));
    }
    key.strip_prefix(ROUTERS).and_then(|rest| rest.split_once('.')).is_some_and(|(_, field)| router_field(field))
}

/// The router fields sticky acts on: the rule, and the TLS ones (`tls`, `tls.certresolver`,
/// `tls.domains[n].main`, `tls.domains[n].sans`, `entrypoints`).
fn router_field(field: &str) -> bool {
    matches!(field, "rule" | "tls" | "tls.certresolver" | "entrypoints") || tls_domains_field(field).is_some()
}

/// `tls.domains[n].main` or `.sans` -> the part (`main` or `sans`).
fn tls_domains_field(field: &str) -> Option<&str> {
    let rest = field.strip_prefix("tls.domains[")?;
    let (n, part) = rest.split_once("].")?;
    (n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() && matches!(part, "main" | "sans")).then_some(part)
}

/// The routers' TLS labels: any router with `tls=true`, a certificate resolver, TLS domains, or an
/// HTTPS entry point serves the service over TLS; the domains are gathered in label order.
fn apply_tls(labels: &Labels, svc: &mut LabeledService) -> Result<(), LabelError> {
    for (k, v) in labels {
        let Some((_, field)) = k.strip_prefix(ROUTERS).and_then(|rest| rest.split_once('.')) else { continue };
        match field {
            "tls" => svc.tls.enabled |= value(k, values::boolean(v))?,
            "tls.certresolver" => {
                svc.tls.enabled = true;
                svc.tls.cert_resolver = Some(v.clone());
            }
            "entrypoints" if v.split(',').any(|e| super::TLS_ENTRYPOINTS.contains(&e.trim())) => {
                svc.tls.enabled = true;
            }
            f if tls_domains_field(f).is_some() => {
                svc.tls.enabled = true;
                for d in value(k, values::domains(v))? {
                    if !svc.tls.domains.contains(&d) {
                        svc.tls.domains.push(d);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies the Traefik v2/v3 labels; returns whether they enable stickiness (`None`: they say
/// nothing about it). `provider` names cookies as Traefik does (`<service>@<provider>`).
///
/// # Errors
/// A label's value does not parse.
pub fn apply(
    service_name: &str,
    provider: &str,
    labels: &Labels,
    svc: &mut LabeledService,
) -> Result<Option<bool>, LabelError> {
    // Traefik names a service `<s>` in `traefik.http.services.<s>.*`; without such labels the
    // service is named after the Swarm service. sticky balances one service per Swarm service: the
    // first `<s>` in label order (the others are reported as ignored by the caller's log).
    let lb_names: Vec<&str> =
        labels.keys().filter_map(|k| k.strip_prefix(SERVICES)?.split_once('.').map(|(s, _)| s)).collect();
    let lb_name = lb_names.first().copied();
    if let Some(other) = lb_names.iter().find(|n| Some(**n) != lb_name) {
        svc.ignored.push(format!("{SERVICES}{other}.* (only one service per Swarm service)"));
    }
    let key = |field: &str| format!("{SERVICES}{}.loadbalancer.{field}", lb_name.unwrap_or("?"));
    let lb = |field: &str| lb_name.and_then(|_| labels.get(&key(field)));
    let boolean = |field: &str| lb(field).map(|v| value(&key(field), values::boolean(v))).transpose();

    // sticky.proxyprotocol wins (it is applied after the Traefik dialects)
    if let Some(v) = lb(PROXY_PROTOCOL) {
        svc.proxy_protocol = Some(value(&key(PROXY_PROTOCOL), values::proxy_protocol(v))?);
    }
    if let Some(v) = lb("server.port") {
        svc.port = Some(value(&key("server.port"), values::port(v))?);
    }
    if let Some(v) = lb("server.scheme") {
        svc.backend_protocol = Some(value(&key("server.scheme"), values::backend_protocol(v))?);
    }
    // Every router's rule routes here (their `service` fields can only name this service).
    let mut routes = Vec::new();
    for (k, v) in labels {
        if k.strip_prefix(ROUTERS).and_then(|rest| rest.split_once('.')).is_some_and(|(_, field)| field == "rule") {
            routes.push(route(k, v)?);
        }
    }
    if let Some(first) = routes.first().cloned() {
        svc.route = if routes.len() == 1 {
            first
        } else {
            Route {
                strip_prefix: routes.iter().any(|r| r.strip_prefix),
                rule: crate::rule::Rule::Or(routes.into_iter().map(|r| r.rule).collect()),
            }
        };
    }
    if lb_name.is_some() {
        apply_health(&mut svc.health, labels, &key("healthcheck"))?;
    }
    apply_tls(labels, svc)?;

    let options: Vec<&str> = FIELDS.iter().copied().filter(|f| f.starts_with(COOKIE) && *f != COOKIE).collect();
    let any_option = options.iter().any(|f| lb(f).is_some());
    // `...sticky.cookie=true` or any cookie option enables it; `=false` alone disables it.
    let enabled = match boolean(COOKIE)? {
        None if !any_option => return Ok(None),
        None => true,
        Some(on) => on || any_option,
    };
    if enabled {
        let name = match lb("sticky.cookie.name") {
            Some(n) => sanitize_cookie_name(n),
            None => traefik_cookie_name(&format!(
                "{}@{provider}",
                lb_name.map_or_else(|| normalize_v1(service_name), str::to_owned)
            )),
        };
        let c = &mut svc.cookie;
        c.name = Some(name);
        c.secure = boolean("sticky.cookie.secure")?.or(c.secure);
        c.http_only = boolean("sticky.cookie.httponly")?.or(c.http_only);
        if let Some(v) = lb("sticky.cookie.samesite") {
            c.same_site = Some(value(&key("sticky.cookie.samesite"), values::same_site(v))?);
        }
        if let Some(v) = lb("sticky.cookie.maxage") {
            c.max_age = value(&key("sticky.cookie.maxage"), values::max_age_seconds(v))?;
        }
        if let Some(v) = lb("sticky.cookie.path") {
            c.path = Some(v.clone());
        }
        if let Some(v) = lb("sticky.cookie.domain") {
            c.domain = Some(v.clone());
        }
    }
    Ok(Some(enabled))
}
