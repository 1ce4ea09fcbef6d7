//! The one place where a [`ProxyError`] becomes an HTTP response.
//!
//! Two statuses are not made here, because hyper's HTTP/1 parser answers them before any request
//! reaches sticky: **400** for a request that does not parse (bad request line, header or URI) and
//! **431** for a head larger than `--max-header-size` or with more fields than `--max-headers`
//! (both limits are configured on hyper in [`super::serve`]). Everything sticky decides itself is
//! mapped below, one case per error kind.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::ProxyBody;
use crate::policy::RepinReason;

/// Who caused an error; decides whether the status says "your fault" (4xx) or "ours/upstream" (5xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client sent something unusable.
    Client,
    /// A backend failed.
    Upstream,
    /// Sticky's own state (no route, no backend).
    Internal,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Kind {
    /// No service rule matches the request.
    #[error("no service matches this host and path")]
    NoRoute,
    /// An HTTP/1.1 request without a Host header (RFC 9112 §3.2 requires 400).
    #[error("request has no Host header")]
    MissingHost,
    /// The service has no available backend.
    #[error("no backend of service {service} is available")]
    NoBackend {
        /// Service name.
        service: String,
    },
    /// Strict service and the pinned backend is unavailable.
    #[error("pinned backend of service {service} is unavailable ({})", reason.as_str())]
    StrictUnavailable {
        /// Service name.
        service: String,
        /// Why the pin cannot be kept.
        reason: RepinReason,
    },
    /// Every connect attempt failed.
    #[error("failed to connect to backend {backend} of service {service}")]
    Connect {
        /// Service name.
        service: String,
        /// Last backend tried.
        backend: String,
        /// Whether the last failure was a timeout.
        timed_out: bool,
        /// The connect error.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The backend did not send a response head in time.
    #[error("backend {backend} did not answer within the response timeout")]
    ResponseTimeout {
        /// The backend.
        backend: String,
    },
    /// The backend connection failed after the request was sent (reset, garbage, early close).
    #[error("backend {backend} failed")]
    Upstream {
        /// The backend.
        backend: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// An error of the proxy, with the side that caused it and whether a retry could help.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ProxyError {
    /// What happened.
    #[source]
    pub kind: Kind,
    /// Who caused it.
    pub source: Source,
    /// Whether retrying on another connection could succeed (no byte of the request was sent).
    pub retry: bool,
}

impl ProxyError {
    /// An error from its kind; the side and retry flag follow from the kind.
    #[must_use]
    pub fn new(kind: Kind) -> Self {
        let (source, retry) = match &kind {
            Kind::NoRoute | Kind::NoBackend { .. } | Kind::StrictUnavailable { .. } => (Source::Internal, false),
            Kind::MissingHost => (Source::Client, false),
            Kind::Connect { .. } => (Source::Upstream, true),
            Kind::ResponseTimeout { .. } | Kind::Upstream { .. } => (Source::Upstream, false),
        };
        Self { kind, source, retry }
    }

    /// The status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            // nothing to route to: the resource does not exist on this balancer
            Kind::NoRoute => StatusCode::NOT_FOUND,
            // malformed by the HTTP/1.1 rules, caught after parsing
            Kind::MissingHost => StatusCode::BAD_REQUEST,
            // every backend is out of health or the service is empty: temporary, retry later
            Kind::NoBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // strict mode keeps the session on its backend or nowhere
            Kind::StrictUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // a gateway that could not reach its upstream in time is a 504, could not reach it at all a 502
            Kind::Connect { timed_out: true, .. } | Kind::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Kind::Connect { timed_out: false, .. } | Kind::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The short body explaining the status to a person.
    fn body(&self) -> String {
        match &self.kind {
            Kind::StrictUnavailable { .. } => format!(
                "{}: {}.\nThis service is strict: the session stays on its backend or is refused. \
                 Retry later, or drop the session cookie to start a new session on another backend.\n",
                self.status(),
                self.kind
            ),
            _ => format!("{}: {}\n", self.status(), self.kind),
        }
    }

    /// The response for this error.
    #[must_use]
    pub fn respond(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(ProxyBody::full(Bytes::from(self.body())));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status() {
        let s = |k| ProxyError::new(k).status().as_u16();
        assert_eq!(s(Kind::NoRoute), 404);
        assert_eq!(s(Kind::MissingHost), 400);
        assert_eq!(s(Kind::NoBackend { service: "a".into() }), 503);
        assert_eq!(s(Kind::StrictUnavailable { service: "a".into(), reason: RepinReason::Unhealthy }), 503);
        assert_eq!(s(Kind::Connect { service: "a".into(), backend: "b".into(), timed_out: true, source: None }), 504);
        assert_eq!(s(Kind::Connect { service: "a".into(), backend: "b".into(), timed_out: false, source: None }), 502);
        assert_eq!(s(Kind::ResponseTimeout { backend: "b".into() }), 504);
        let strict =
            ProxyError::new(Kind::StrictUnavailable { service: "web".into(), reason: RepinReason::ConnectFailed });
        assert!(strict.body().contains("strict"), "the strict 503 explains itself");
        assert_eq!(strict.source, Source::Internal);
        assert!(
            ProxyError::new(Kind::Connect { service: "a".into(), backend: "b".into(), timed_out: false, source: None })
                .retry
        );
    }
}
