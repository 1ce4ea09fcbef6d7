//! The one place where a [`ProxyError`] becomes a status: every answer sticky writes itself (400,
//! 404, 431, 502, 503, 504) is decided here and written by [`super::respond`]. The codec's errors
//! arrive with their side (see the table in [`super::h1`]): a request head or body the client got
//! wrong is a 400 (431 over a limit), a response the backend got wrong a 502.

use http::StatusCode;

use super::h1::{BodyError, RequestError, ResponseError};
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
    /// The backend connection failed after the request was sent (reset, early close).
    #[error("backend {backend} failed")]
    Upstream {
        /// The backend.
        backend: String,
        /// The socket error, or what the backend did.
        #[source]
        source: std::io::Error,
    },
    /// The backend's response head is malformed (or a 101 without the right accept).
    #[error("backend {backend} sent an invalid response: {source}")]
    BadResponse {
        /// The backend.
        backend: String,
        /// What the codec refused.
        #[source]
        source: ResponseError,
    },
    /// The client's request head is malformed or over a limit.
    #[error("invalid request: {0}")]
    BadRequest(#[source] RequestError),
    /// The client's request body is not framed as it said (a malformed chunked body).
    #[error("invalid request body: {0}")]
    BadRequestBody(#[source] BodyError),
}

impl ProxyError {
    /// The status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            // nothing to route to: the resource does not exist on this balancer
            Self::NoRoute => StatusCode::NOT_FOUND,
            // malformed by the HTTP/1.1 rules
            Self::BadRequest(e) if e.is_over_limit() => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::MissingHost | Self::BadRequestBody(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            // every backend is out of health or the service is empty: temporary, retry later;
            // strict mode keeps the session on its backend or nowhere
            Self::NoBackend { .. } | Self::StrictUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // a gateway that could not reach its upstream in time is a 504, could not reach it at all a 502
            Self::Connect { timed_out: true, .. } | Self::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect { timed_out: false, .. } | Self::Upstream { .. } | Self::BadResponse { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The short body explaining the status to a person.
    #[must_use]
    pub fn body(&self) -> String {
        match self {
            Self::StrictUnavailable { .. } => format!(
                "{}: {self}.\nThis service is strict: the session stays on its backend or is refused. \
                 Retry later, or drop the session cookie to start a new session on another backend.\n",
                self.status(),
            ),
            _ => format!("{}: {self}\n", self.status()),
        }
    }

    /// Whether the client connection must close after the answer (its bytes cannot be trusted to
    /// frame a next request).
    #[must_use]
    pub fn closes(&self) -> bool {
        matches!(self, Self::BadRequest(_) | Self::BadRequestBody(_) | Self::MissingHost)
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
        // the codec's errors keep their side: the client's head and body 400 (431 over a limit), the backend's 502
        assert_eq!(s(ProxyError::BadRequest(RequestError::DuplicateHost)), 400);
        assert_eq!(
            s(ProxyError::BadRequest(RequestError::Head(crate::proxy::h1::HeadError::TooLarge { max: 8192 }))),
            431
        );
        assert_eq!(s(ProxyError::BadRequestBody(BodyError::Truncated)), 400);
        assert_eq!(s(ProxyError::BadResponse { backend: "b".into(), source: ResponseError::WebSocketAccept }), 502);
        assert!(ProxyError::BadRequestBody(BodyError::Truncated).closes() && !ProxyError::NoRoute.closes());
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
