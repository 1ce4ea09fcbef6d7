use std::{fmt::Write as _, net::SocketAddr};

use super::{MAX_LINE, MAX_SOCKETS, ProtocolError, Request, Response, VERSION, select};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a test address must parse")
}

#[test]
fn requests_round_trip() {
    for request in [
        Request::Get(vec![addr("0.0.0.0:80")]),
        Request::Get(vec![addr("0.0.0.0:80"), addr("[::]:443"), addr("127.0.0.1:5432")]),
        Request::All,
    ] {
        let line = request.encode();
        assert!(line.ends_with('\n') && line.starts_with("sticky-hold/1 "), "{line:?}");
        assert_eq!(Request::parse(&line), Ok(request));
    }
}

#[test]
fn responses_round_trip() {
    for response in [
        Response::Ok(vec![addr("0.0.0.0:80"), addr("0.0.0.0:443")]),
        Response::Ok(vec![]),
        Response::Err("not held: 0.0.0.0:8443 (held: 0.0.0.0:80)".to_owned()),
    ] {
        assert_eq!(Response::parse(&response.encode()), Ok(response));
    }
}

#[test]
fn error_messages_stay_one_bounded_line() {
    let line = Response::Err(format!("two\nlines {}", "é".repeat(MAX_LINE))).encode();
    assert!(line.len() <= MAX_LINE, "{}", line.len());
    assert_eq!(line.matches('\n').count(), 1, "one line");
    assert!(matches!(Response::parse(&line), Ok(Response::Err(m)) if m.starts_with("two lines")));
}

#[test]
fn other_versions_and_foreign_lines_are_refused_by_name() {
    assert_eq!(Request::parse("sticky-hold/2 get 0.0.0.0:80\n"), Err(ProtocolError::Version { got: "2".to_owned() }));
    assert_eq!(Response::parse("sticky-hold/0 ok\n"), Err(ProtocolError::Version { got: "0".to_owned() }));
    assert!(matches!(Request::parse("GET / HTTP/1.1\r\n"), Err(ProtocolError::NotOurs { .. })));
    assert!(matches!(Request::parse(""), Err(ProtocolError::NotOurs { .. })));
    let message = ProtocolError::Version { got: "2".to_owned() }.to_string();
    assert!(message.contains("sticky-hold/2") && message.contains(&format!("sticky-hold/{VERSION}")), "{message}");
}

#[test]
fn malformed_requests_are_refused() {
    assert_eq!(Request::parse("sticky-hold/1 get :80\n"), Err(ProtocolError::Address { word: ":80".to_owned() }));
    assert_eq!(Request::parse("sticky-hold/1 get\n"), Err(ProtocolError::Count { count: 0 }));
    let many = (0..=MAX_SOCKETS).fold(String::new(), |mut line, p| {
        let _ = write!(line, " 127.0.0.1:{}", 1000 + p);
        line
    });
    assert_eq!(
        Request::parse(&format!("sticky-hold/1 get{many}\n")),
        Err(ProtocolError::Count { count: MAX_SOCKETS + 1 })
    );
    assert!(matches!(Request::parse("sticky-hold/1 put 0.0.0.0:80"), Err(ProtocolError::Verb { .. })));
    assert!(matches!(Response::parse("sticky-hold/1 get 0.0.0.0:80"), Err(ProtocolError::Verb { .. })));
    assert_eq!(Request::parse(&"x".repeat(MAX_LINE + 1)), Err(ProtocolError::Length));
}

#[test]
fn select_answers_in_the_order_asked_and_names_what_is_missing() {
    let held = [addr("0.0.0.0:80"), addr("0.0.0.0:443")];
    assert_eq!(select(&held, &Request::Get(vec![addr("0.0.0.0:443"), addr("0.0.0.0:80")])), Ok(vec![1, 0]));
    assert_eq!(select(&held, &Request::All), Ok(vec![0, 1]));
    let err = select(&held, &Request::Get(vec![addr("0.0.0.0:80"), addr("0.0.0.0:5432")])).expect_err("5432 not held");
    assert!(err.contains("not held: 0.0.0.0:5432"), "{err}");
    assert!(err.contains("held: 0.0.0.0:80, 0.0.0.0:443"), "{err}");
    assert!(err.contains("--listen 0.0.0.0:5432"), "says what to add: {err}");
    let none = select(&[], &Request::Get(vec![addr("0.0.0.0:80")])).expect_err("nothing held");
    assert!(none.contains("held: none"), "{none}");
}
