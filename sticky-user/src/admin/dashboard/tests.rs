//! The embedded assets: served with their types and a strict policy, and nothing fetched from elsewhere.

use super::*;

#[test]
fn assets_are_served_with_their_type_and_policy() {
    for (name, kind) in [
        ("", "text/html"),
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = asset(name);
        assert_eq!(r.status(), StatusCode::OK, "{name:?} must be served");
        let got = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(got.starts_with(kind), "{name:?} must be {kind}, is {got}");
        let csp = r.headers().get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{name:?}: {csp}");
    }
    assert_eq!(asset("other.js").status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_page_loads_nothing_from_elsewhere() {
    for (name, text) in
        [("index.html", INDEX), ("dashboard.js", SCRIPT), ("dashboard.css", STYLE), ("favicon.svg", ICON)]
    {
        // the only absolute URL allowed is the SVG namespace, which is a name, never fetched
        let outside = text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !outside.contains("http://") && !outside.contains("https://") && !outside.contains("//cdn"),
            "{name} must not reference another host"
        );
        assert!(!text.contains("innerHTML"), "{name}: API values are set as text, never as markup");
    }
    for path in ["/dashboard.js", "/dashboard.css", "/favicon.svg"] {
        assert!(INDEX.contains(path), "the page links {path}");
    }
}
