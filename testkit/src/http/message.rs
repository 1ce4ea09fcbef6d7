//! HTTP messages as tests look at them: a response (status, headers, body) and a request a test server
//! received, with the questions tests ask (a header, a cookie, which whoami backend answered).

use std::borrow::Cow;

/// A response as the client read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A request as a test server read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target, e.g. `/ws?x=1`.
    pub path: String,
    /// Headers in order, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }

    /// Every value of header `name` (lowercase), in order.
    #[must_use]
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// `name=value` of every `Set-Cookie`, attributes dropped.
    #[must_use]
    pub fn set_cookies(&self) -> Vec<&str> {
        self.header_values("set-cookie").into_iter().map(|v| v.split(';').next().unwrap_or_default().trim()).collect()
    }

    /// The value of cookie `name` that this response sets, if any.
    #[must_use]
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies().into_iter().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// The body as text (invalid UTF-8 replaced).
    #[must_use]
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as text, owned.
    #[must_use]
    pub fn into_text(self) -> String {
        String::from_utf8(self.body).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The backend that answered, if `sticky whoami` did: a 200 whose body starts with `I'm NAME`.
    #[must_use]
    pub fn whoami(&self) -> Option<&str> {
        if self.status != 200 {
            return None;
        }
        let text = std::str::from_utf8(&self.body).ok()?;
        text.lines().next()?.strip_prefix("I'm ")
    }
}

impl std::fmt::Debug for Response {
    // The body as text: panic messages of failed assertions show what the server said.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}

impl Request {
    /// The first value of header `name` (lowercase).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::Response;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn cookies_are_read_by_exact_name_without_attributes() {
        let r = response(
            200,
            &[("set-cookie", "app=b1; Path=/"), ("set-cookie", "sticky=AbC-_9; Path=/; HttpOnly"), ("x", "y")],
            "",
        );
        assert_eq!(r.cookie("sticky"), Some("AbC-_9"));
        assert_eq!(r.cookie("app"), Some("b1"));
        assert_eq!(r.cookie("stick"), None, "a name must not match a longer cookie's prefix");
        assert_eq!(r.set_cookies(), vec!["app=b1", "sticky=AbC-_9"]);
        assert_eq!(r.header_values("set-cookie").len(), 2);
        assert_eq!(r.header("x"), Some("y"));
    }

    #[test]
    fn whoami_names_the_backend_of_a_200_only() {
        assert_eq!(response(200, &[], "I'm b2\nGET / HTTP/1.1\n").whoami(), Some("b2"));
        assert_eq!(response(503, &[], "I'm b2\n").whoami(), None, "an error page is no backend's answer");
        assert_eq!(response(404, &[], "404 page not found\n").whoami(), None);
        assert_eq!(response(200, &[], "b1\n").whoami(), None, "nginx's bench bodies are not whoami's");
    }
}
