//! One parser per kind of value (duration, boolean, port, port range, `SameSite`, address, name,
//! backend URL): flags, the TOML file and Swarm labels read each kind through the same function, so
//! the three accept the same spellings (pure).
//!
//! Errors say what was given and what is expected; the caller adds where it was given (a flag, a
//! file key, a label), which only it knows.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::model::SameSite;

/// A value that does not parse: what was given and what is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl ValueError {
    /// `given` does not parse; `expected` says what would.
    #[must_use]
    pub fn new(given: &str, expected: &str) -> Self {
        Self(format!("{given:?}: expected {expected}"))
    }
}

/// A duration: `500ms`, `2s`, `1.5s`, `1m30s`, `12h`; a bare number (`10`, `0.5`) is seconds.
///
/// # Errors
/// Anything else, or a negative or too large value.
pub fn duration(text: &str) -> Result<Duration, ValueError> {
    let t = text.trim();
    let bad = || ValueError::new(text, "a duration such as 500ms, 2s, 1.5s, 1m30s or 12h (a bare number is seconds)");
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs).ok_or_else(bad);
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    // a decimal number with one unit (humantime takes whole numbers only): 1.5s, 0.5h
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    seconds(n * scale).ok_or_else(bad)
}

fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 { Duration::try_from_secs_f64(secs).ok() } else { None }
}

/// What a TLS client asking for an unknown name gets: `default` or `refuse` (`reject` too).
///
/// # Errors
/// Anything else.
pub fn unknown_sni(text: &str) -> Result<crate::tls::resolver::UnknownName, ValueError> {
    use crate::tls::resolver::UnknownName;
    match text.trim().to_ascii_lowercase().as_str() {
        "default" => Ok(UnknownName::Default),
        "refuse" | "reject" => Ok(UnknownName::Reject),
        _ => Err(ValueError::new(text, "default (the default certificate) or refuse (a handshake failure)")),
    }
}

/// What a service's tasks speak (`sticky.backend.protocol`, a service's `backend_protocol`, Traefik's
/// `server.scheme`): `http` (HTTP/1.1) or `h2c` (HTTP/2 with prior knowledge, gRPC).
///
/// # Errors
/// Anything else (`https`: TLS to the tasks is not supported).
pub fn backend_protocol(text: &str) -> Result<crate::model::BackendProtocol, ValueError> {
    use crate::model::BackendProtocol;
    match text.trim().to_ascii_lowercase().as_str() {
        "http" | "http1" | "http/1.1" => Ok(BackendProtocol::Http1),
        "h2c" => Ok(BackendProtocol::H2c),
        _ => Err(ValueError::new(text, "http (HTTP/1.1) or h2c (HTTP/2 with prior knowledge, gRPC)")),
    }
}

/// Domain names, comma-separated (`a.example,b.example`; `*.example` for a wildcard), lowercase.
///
/// # Errors
/// An empty list or name, or a name with characters a host name cannot hold.
pub fn domains(text: &str) -> Result<Vec<String>, ValueError> {
    let names: Vec<String> = text.split(',').map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
    let valid = |n: &str| {
        let n = n.strip_prefix("*.").unwrap_or(n);
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if names.iter().all(|n| valid(n)) {
        Ok(names)
    } else {
        Err(ValueError::new(text, "domain names separated by commas, such as a.example,*.b.example"))
    }
}

/// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
///
/// # Errors
/// Anything else.
pub fn boolean(text: &str) -> Result<bool, ValueError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ValueError::new(text, "true or false")),
    }
}

/// What a service sends its backends first: `v2` (or Traefik's `2`) or `off`.
///
/// # Errors
/// Anything else (v1 is not sent).
pub fn proxy_protocol(text: &str) -> Result<crate::proxy_protocol::Version, ValueError> {
    crate::proxy_protocol::Version::parse(text).map_err(|_| ValueError::new(text, "v2 (or 2) or off"))
}

/// A TCP port, 1 to 65535.
///
/// # Errors
/// Not a number in that range.
pub fn port(text: &str) -> Result<u16, ValueError> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| ValueError::new(text, "a port 1-65535"))
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port (inclusive).
    pub high: u16,
}

/// A port range `LOW-HIGH` with 1 <= LOW <= HIGH.
///
/// # Errors
/// Not two ports joined by `-`, or LOW above HIGH.
pub fn port_range(text: &str) -> Result<PortRange, ValueError> {
    let bad = || ValueError::new(text, "LOW-HIGH with 1 <= LOW <= HIGH <= 65535");
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let (low, high) = (port(low).map_err(|_| bad())?, port(high).map_err(|_| bad())?);
    if low > high {
        return Err(bad());
    }
    Ok(PortRange { low, high })
}

/// The `SameSite` attribute: `lax`, `strict` or `none`, in any case.
///
/// # Errors
/// Anything else.
pub fn same_site(text: &str) -> Result<SameSite, ValueError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        "none" => Ok(SameSite::None),
        _ => Err(ValueError::new(text, "one of lax, strict, none")),
    }
}

/// A Max-Age in whole seconds, as Traefik's labels write it: 0 or negative means a session cookie
/// (`None`).
///
/// # Errors
/// Not a whole number.
pub fn max_age_seconds(text: &str) -> Result<Option<Duration>, ValueError> {
    let secs: i64 = text.trim().parse().map_err(|_| ValueError::new(text, "a number of seconds"))?;
    Ok(u64::try_from(secs).ok().filter(|s| *s > 0).map(Duration::from_secs))
}

/// A point in time in RFC 3339: a full date-time with its offset (`2027-03-31T18:00:00Z`,
/// `2027-03-31T20:00:00+02:00`, fractions of a second ignored; `t`, `z` and a space in place of the
/// `T` also read), or a full date alone (`2027-03-31`), which means that day's start in UTC.
///
/// # Errors
/// Anything else, a date or time out of range (month 13, February 30, hour 24), or a time before 1970.
pub fn rfc3339(text: &str) -> Result<SystemTime, ValueError> {
    let bad = || ValueError::new(text, "an RFC 3339 date-time such as 2027-03-31T18:00:00Z (or a date: 2027-03-31)");
    let bytes = text.trim().as_bytes();
    let digits = |b: &[u8]| -> Option<i64> {
        (!b.is_empty() && b.iter().all(u8::is_ascii_digit))
            .then(|| b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad());
    }
    let (year, month, day) = (digits(&bytes[0..4]), digits(&bytes[5..7]), digits(&bytes[8..10]));
    let (Some(year), Some(month), Some(day)) = (year, month, day) else { return Err(bad()) };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    let rest = &bytes[10..];
    if !rest.is_empty() {
        // time-hour ":" time-minute ":" time-second [time-secfrac] time-offset
        if rest.len() < 10 || !matches!(rest[0], b'T' | b't' | b' ') || rest[3] != b':' || rest[6] != b':' {
            return Err(bad());
        }
        let (hour, minute, second) = (digits(&rest[1..3]), digits(&rest[4..6]), digits(&rest[7..9]));
        let (Some(hour), Some(minute), Some(second)) = (hour, minute, second) else { return Err(bad()) };
        // a leap second (60) reads as the next second
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        let mut offset = &rest[9..];
        if let Some(frac) = offset.strip_prefix(b".") {
            let figures = frac.iter().take_while(|b| b.is_ascii_digit()).count();
            if figures == 0 {
                return Err(bad());
            }
            offset = &frac[figures..];
        }
        let offset_secs = match offset {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
                let (Some(oh), Some(om)) = (digits(&[*oh1, *oh2]), digits(&[*om1, *om2])) else { return Err(bad()) };
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let east = oh * 3600 + om * 60;
                if *sign == b'+' { east } else { -east }
            }
            _ => return Err(bad()),
        };
        secs += hour * 3600 + minute * 60 + second - offset_secs;
    }
    u64::try_from(secs).map(|s| UNIX_EPOCH + Duration::from_secs(s)).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A point in time as RFC 3339 in UTC, to the second (`2027-03-31T18:00:00Z`), for log lines.
#[must_use]
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A socket address, `IP:PORT` (IPv6 in brackets).
///
/// # Errors
/// Not an address.
pub fn socket_addr(text: &str) -> Result<SocketAddr, ValueError> {
    text.trim().parse().map_err(|_| ValueError::new(text, "an address like 0.0.0.0:8080"))
}

/// The admin listener's address: `ADDR:PORT`, or `PORT` alone for loopback (`127.0.0.1:PORT`).
///
/// # Errors
/// Neither an address nor a port.
pub fn admin_addr(text: &str) -> Result<SocketAddr, ValueError> {
    let t = text.trim();
    match t.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => t.parse().map_err(|_| ValueError::new(text, "a port (loopback) or an address like 127.0.0.1:9090")),
    }
}

/// A tcp-mode backend: IPv4 `IP:PORT`, optionally written `tcp://IP:PORT`.
///
/// # Errors
/// Not an IPv4 address and port.
pub fn tcp_backend(text: &str) -> Result<SocketAddr, ValueError> {
    let t = text.trim();
    t.strip_prefix("tcp://").unwrap_or(t).parse().map_err(|_| ValueError::new(text, "an IP:PORT or [IPv6]:PORT"))
}

/// A name of a backend or service: 1 to 64 of `A-Z a-z 0-9 - _ .`.
///
/// # Errors
/// Empty, too long, or another character.
pub fn name(text: &str) -> Result<&str, ValueError> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(text) } else { Err(ValueError(format!("name {text:?} must be 1-64 characters of A-Z a-z 0-9 - _ ."))) }
}

/// A backend weight for new sessions, 1 to 100.
///
/// # Errors
/// Out of range.
pub fn weight(weight: u32) -> Result<u32, ValueError> {
    if (1..=100).contains(&weight) {
        Ok(weight)
    } else {
        Err(ValueError(format!("weight {weight} is out of range 1..=100")))
    }
}

/// A backend given by URL, before discovery names and resolves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUrl {
    /// The name given with `NAME=URL`; none = derived from the URL with the cookie key.
    pub name: Option<String>,
    /// Port (80 if the URL has none).
    pub port: u16,
    /// Host part without port and brackets.
    pub host: String,
    /// Weight for new sessions.
    pub weight: u32,
    /// The URL as written (for messages, and the seed of a derived name).
    pub url: String,
}

/// A backend URL `http://HOST[:PORT][/]`, optionally `NAME=` before it; weight 1.
///
/// # Errors
/// Anything but a plain http URL of a host, or a bad name.
pub fn backend_url(text: &str) -> Result<BackendUrl, ValueError> {
    let (name, url) = match text.split_once('=') {
        Some((n, u)) if !n.contains("://") => (Some(name(n.trim())?.to_owned()), u.trim()),
        _ => (None, text.trim()),
    };
    let uri: http::Uri =
        url.parse().map_err(|e| ValueError(format!("{url:?} is not a URL ({e}); expected http://HOST:PORT")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(ValueError(format!(
                "{url:?}: scheme {other} is not supported; backends are plain http://HOST:PORT"
            )));
        }
        None => return Err(ValueError(format!("{url:?} has no scheme; expected http://HOST:PORT"))),
    }
    let authority = uri.authority().ok_or_else(|| ValueError(format!("{url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(ValueError(format!("{url:?}: credentials in backend URLs are not supported")));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ValueError(format!(
            "{url:?}: a backend URL cannot have a path or query; requests keep their own path"
        )));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(80);
    Ok(BackendUrl { name, port, host, weight: 1, url: url.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_spellings_of_flags_files_and_labels() {
        let d = |s: &str| duration(s).expect("must parse");
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("1.5s"), Duration::from_millis(1500), "labels wrote decimals");
        assert_eq!(d("1m30s"), Duration::from_secs(90), "flags wrote compound durations");
        assert_eq!(d("10"), Duration::from_secs(10));
        assert_eq!(d(" 0.5 "), Duration::from_millis(500));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        for bad in ["-1s", "-1", "s", "5 parsecs", "", "inf", "1e400"] {
            assert!(duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn small_values_parse_and_say_what_they_expect() {
        assert_eq!((boolean("Yes"), boolean("off")), (Ok(true), Ok(false)));
        assert!(boolean("maybe").expect_err("must be refused").to_string().contains("true or false"));
        assert_eq!(port("8080"), Ok(8080));
        assert!(port("0").is_err() && port("65536").is_err() && port("http").is_err());
        assert_eq!(port_range("61000-65535"), Ok(PortRange { low: 61000, high: 65535 }));
        assert!(port_range("5-4").is_err() && port_range("0-4").is_err() && port_range("61000").is_err());
        assert_eq!(same_site("None"), Ok(SameSite::None));
        assert!(same_site("sometimes").is_err());
        assert_eq!(max_age_seconds("0"), Ok(None), "0 means a session cookie");
        assert_eq!(max_age_seconds("60"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(tcp_backend("tcp://198.51.100.1:80"), Ok("198.51.100.1:80".parse().expect("address")));
        assert_eq!(tcp_backend("[2001:db8::1]:80"), Ok("[2001:db8::1]:80".parse().expect("address")));
        assert!(tcp_backend("2001:db8::1:80").is_err(), "an IPv6 address needs brackets before the port");
        assert!(name("a b").is_err() && name("").is_err() && name("web-1.a_b").is_ok());
        assert!(weight(0).is_err() && weight(101).is_err() && weight(3).is_ok());
    }

    #[test]
    fn backend_urls() {
        let b = backend_url("b1=http://[::1]:81/").expect("valid");
        assert_eq!((b.name.as_deref(), b.host.as_str(), b.port), (Some("b1"), "::1", 81));
        assert_eq!(backend_url("http://a").expect("valid").port, 80);
        assert!(backend_url("https://a:1").expect_err("refused").to_string().contains("scheme https is not supported"));
        assert!(backend_url("http://a:1/path").expect_err("refused").to_string().contains("cannot have a path"));
        assert!(backend_url("http://u@a:1").is_err() && backend_url("a:1").is_err());
        assert!(backend_url("bad name=http://a:1").expect_err("refused").to_string().contains("name \"bad name\""));
    }

    #[test]
    fn rfc3339_dates_and_date_times() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        // 2027-03-31T18:00:00Z = 1806516000 (date -d 2027-03-31T18:00:00Z +%s)
        assert_eq!(rfc3339("2027-03-31T18:00:00Z"), Ok(at(1_806_516_000)));
        assert_eq!(rfc3339("2027-03-31t18:00:00z"), Ok(at(1_806_516_000)), "lower case T and Z");
        assert_eq!(rfc3339("2027-03-31 18:00:00Z"), Ok(at(1_806_516_000)), "a space for the T");
        assert_eq!(rfc3339("2027-03-31T20:00:00+02:00"), Ok(at(1_806_516_000)), "an offset");
        assert_eq!(rfc3339("2027-03-31T17:30:00-00:30"), Ok(at(1_806_516_000)), "a negative offset");
        assert_eq!(rfc3339("2027-03-31T18:00:00.999Z"), Ok(at(1_806_516_000)), "fractions ignored");
        assert_eq!(rfc3339(" 2027-03-31 "), Ok(at(1_806_451_200)), "a date is its start in UTC");
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Ok(UNIX_EPOCH));
        assert_eq!(rfc3339("2028-02-29"), Ok(at(1_835_395_200)), "a leap day");
        assert_eq!(rfc3339("2000-03-01"), Ok(at(951_868_800)), "2000 is a leap year: the day after Feb 29");
        assert_eq!(format_rfc3339(at(1_806_516_000)), "2027-03-31T18:00:00Z");
        for bad in [
            "",
            "2027-03-31T18:00:00",
            "2027-03-31T18:00Z",
            "2027-13-01",
            "2027-02-29",
            "2100-02-29",
            "2027-04-31",
            "2027-03-31T24:00:00Z",
            "2027-03-31T18:60:00Z",
            "2027-03-31T18:00:00+24:00",
            "2027-03-31T18:00:00.Z",
            "2027-03-31X18:00:00Z",
            "31/03/2027",
            "1969-12-31",
            "tomorrow",
            "2027-3-31",
        ] {
            let e = rfc3339(bad).expect_err(bad);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,24}") {
            let _ = (duration(&s), boolean(&s), port_range(&s), backend_url(&s), max_age_seconds(&s), rfc3339(&s));
        }
    }
}
