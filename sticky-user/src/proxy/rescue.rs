//! The one place where a [`ProxyError`] becomes an HTTP response.
//!
//! Two statuses are not made here, because hyper's HTTP/1 parser answers them before any request
//! reaches sticky: **400** for a request that does not parse (bad request line, header or URI) and
//! **431** for a head larger than `--max-header-size` or with more fields than `--max-headers`
//! (both limits are configured on hyper in [`super::server::serve`]). Everything sticky decides itself is
//! mapped below, one case per error kind.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ProxyBody;
use crate::policy::RepinReason;

/// What went wrong with a request; each case is answered with its own status ([`ProxyError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
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

impl ProxyError {
    /// The status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            // nothing to route to: the resource does not exist on this balancer
            Self::NoRoute => StatusCode::NOT_FOUND,
            // malformed by the HTTP/1.1 rules, caught after parsing
            Self::MissingHost => StatusCode::BAD_REQUEST,
            // every backend is out of health or the service is empty: temporary, retry later;
            // strict mode keeps the session on its backend or nowhere
            Self::NoBackend { .. } | Self::StrictUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // a gateway that could not reach its upstream in time is a 504, could not reach it at all a 502
            Self::Connect { timed_out: true, .. } | Self::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect { timed_out: false, .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The short body explaining the status to a person.
    fn body(&self) -> String {
        match self {
            Self::StrictUnavailable { .. } => format!(
                "{}: {self}.\nThis service is strict: the session stays on its backend or is refused. \
                 Retry later, or drop the session cookie to start a new session on another backend.\n",
                self.status(),
            ),
            _ => format!("{}: {self}\n", self.status()),
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
        let s = |e: ProxyError| e.status().as_u16();
        assert_eq!(s(ProxyError::NoRoute), 404);
        assert_eq!(s(ProxyError::MissingHost), 400);
        assert_eq!(s(ProxyError::NoBackend { service: "a".into() }), 503);
        assert_eq!(s(ProxyError::StrictUnavailable { service: "a".into(), reason: RepinReason::Unhealthy }), 503);
        assert_eq!(
            s(ProxyError::Connect { service: "a".into(), backend: "b".into(), timed_out: true, source: None }),
            504
        );
        assert_eq!(
            s(ProxyError::Connect { service: "a".into(), backend: "b".into(), timed_out: false, source: None }),
            502
        );
        assert_eq!(s(ProxyError::ResponseTimeout { backend: "b".into() }), 504);
        let strict = ProxyError::StrictUnavailable { service: "web".into(), reason: RepinReason::ConnectFailed };
        assert!(strict.body().contains("strict"), "the strict 503 explains itself");
        assert!(s(ProxyError::NoRoute) == 404 && ProxyError::NoRoute.body().starts_with("404 Not Found: "));
    }
}
