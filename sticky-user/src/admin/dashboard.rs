//! The dashboard at `GET /`: one page, its script and style, embedded in the binary (no CDN, works
//! offline), and the `/api/overview` document it polls every second.
//!
//! The page is plain HTML with a small hand-written script (`dashboard/dashboard.js`): it polls
//! `/api/overview`, computes request and error rates from successive documents (sparklines of the
//! last two minutes), draws the sessions of each service's backends as a stacked bar, and drains or
//! activates a backend with the same `POST` as `curl` (JSON, and `Authorization: Bearer` when the API
//! asks for a token, kept in the tab's `sessionStorage`). Every value from the API is inserted as
//! text, never as markup (service and backend names come from Swarm labels), and a strict
//! `Content-Security-Policy` allows only the listener's own script, style and requests.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

use super::{Admin, access::Writes, report};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const ICON: &str = include_str!("dashboard/favicon.svg");

/// Only this listener's own files and requests; no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The embedded file at `name` (`""` is the page itself); 404 for any other name.
#[must_use]
pub fn asset(name: &str) -> Response<Full<Bytes>> {
    let (body, kind) = match name {
        "" => (INDEX, "text/html; charset=utf-8"),
        "dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return respond(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"), "text/plain; charset=utf-8"),
    };
    respond(StatusCode::OK, Bytes::from_static(body.as_bytes()), kind)
}

/// `GET /api/overview`, built on a blocking thread: tcp mode's kernel maps are walked to count them.
pub async fn overview(admin: Arc<Admin>, writes: Writes) -> Response<Full<Bytes>> {
    let built = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&report::overview(admin.routing.as_deref(), writes, &admin.view))
    })
    .await;
    match built {
        Ok(Ok(body)) => respond(StatusCode::OK, body.into(), "application/json"),
        _ => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"failed to build the overview\n"),
            "text/plain; charset=utf-8",
        ),
    }
}

fn respond(status: StatusCode, body: Bytes, kind: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests;
