//! Traefik v1 labels, as in the classic Swarm sticky-session recipe: the tasks' port, the frontend
//! rule, stickiness and its cookie name, the health check.

use super::{
    LabelError, LabeledService, Labels, apply_health, normalize_v1, route, sanitize_cookie_name, traefik_cookie_name,
    value,
};
use crate::values;

const PORT: &str = "traefik.port";
const RULE: &str = "traefik.frontend.rule";
const BACKEND: &str = "traefik.backend";
const STICKINESS: &str = "traefik.backend.loadbalancer.stickiness";
const COOKIE_NAME: &str = "traefik.backend.loadbalancer.stickiness.cookieName";
/// Older Traefik v1 spelling of [`STICKINESS`].
const STICKY: &str = "traefik.backend.loadbalancer.sticky";
const HEALTH: &str = "traefik.backend.healthcheck";
/// The frontend's entry points: `https` among them serves the service over TLS.
const ENTRYPOINTS: &str = "traefik.frontend.entryPoints";

/// Every Traefik v1 label sticky acts on (the network labels both versions share are
/// [`super::parse`]'s).
pub const LABELS: &[&str] = &[
    PORT,
    RULE,
    BACKEND,
    STICKINESS,
    COOKIE_NAME,
    STICKY,
    "traefik.backend.healthcheck.path",
    "traefik.backend.healthcheck.interval",
    "traefik.backend.healthcheck.timeout",
    ENTRYPOINTS,
];

/// A Traefik v1 label: `traefik.*` outside v2's `http`/`tcp`/`udp` namespaces, except the labels
/// both versions share (`enable`, the network).
#[must_use]
pub fn is_v1(key: &str) -> bool {
    key.starts_with("traefik.")
        && !["traefik.http.", "traefik.tcp.", "traefik.udp."].iter().any(|p| key.starts_with(p))
        && !matches!(key, "traefik.enable" | "traefik.docker.network" | "traefik.swarm.network")
}

/// Applies the Traefik v1 labels; returns whether they enable stickiness (`None`: they say nothing
/// about it).
///
/// # Errors
/// A label's value does not parse.
pub fn apply(service_name: &str, labels: &Labels, svc: &mut LabeledService) -> Result<Option<bool>, LabelError> {
    let get = |k: &str| labels.get(k).map(String::as_str);
    let boolean = |k: &str| get(k).map(|v| value(k, values::boolean(v))).transpose();
    if let Some(v) = get(PORT) {
        svc.port = Some(value(PORT, values::port(v))?);
    }
    if let Some(v) = get(RULE) {
        svc.route = route(RULE, v)?;
    }
    if let Some(v) = get(ENTRYPOINTS)
        && v.split(',').any(|e| super::TLS_ENTRYPOINTS.contains(&e.trim()))
    {
        svc.tls.enabled = true;
    }
    let enabled = match (boolean(STICKINESS)?, boolean(STICKY)?) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    };
    if enabled == Some(true) {
        svc.cookie.name = Some(match get(COOKIE_NAME) {
            Some(name) => sanitize_cookie_name(name),
            None => traefik_cookie_name(&format!("backend-{}", normalize_v1(get(BACKEND).unwrap_or(service_name)))),
        });
    }
    apply_health(&mut svc.health, labels, HEALTH)?;
    Ok(enabled)
}
