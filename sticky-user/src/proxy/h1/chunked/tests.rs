use std::ops::Range;

use proptest::prelude::*;

use super::*;

const TRAILERS: usize = 4096;

/// Feeds `input` at once: (used, done, data ranges) or the error.
fn whole(input: &[u8]) -> Result<(usize, bool, Vec<Range<usize>>), ChunkedError> {
    let mut body = ChunkedBody::new(TRAILERS);
    let mut ranges = Vec::new();
    let p = body.feed_data(input, |r| ranges.push(r))?;
    Ok((p.used, p.done, merge(ranges)))
}

/// Feeds `input` cut at `cuts` (sorted offsets), as reads would deliver it.
fn split(input: &[u8], cuts: &[usize]) -> Result<(usize, bool, Vec<Range<usize>>), ChunkedError> {
    let mut body = ChunkedBody::new(TRAILERS);
    let mut ranges = Vec::new();
    let (mut start, mut used, mut done) = (0, 0, false);
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        let piece = &input[start..end];
        let p = body.feed_data(piece, |r| ranges.push(r.start + start..r.end + start))?;
        used += p.used;
        done = p.done;
        if done {
            break;
        }
        start = end;
    }
    Ok((used, done, merge(ranges)))
}

/// Adjacent ranges joined (a split cuts one data run in two).
fn merge(ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in ranges.into_iter().filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

fn refused(input: &[u8]) -> ChunkedError {
    match whole(input) {
        Err(e) => e,
        Ok(p) => panic!("{:?} must be refused, got {p:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn a_simple_body_is_complete_and_what_follows_is_not_used() {
    let body = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\n\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
    let (used, done, ranges) = whole(&input).expect("a valid body must be accepted");
    assert_eq!((used, done), (body.len(), true));
    let data: Vec<u8> = ranges.iter().flat_map(|r| input[r.clone()].to_vec()).collect();
    assert_eq!(data, b"hello world");
}

#[test]
fn every_byte_alone_gives_the_same_result() {
    let body = b"A;a=\"q\\\"x\"; b\r\n0123456789\r\n0\r\nX-Trace: abc\r\n\r\n";
    let cuts: Vec<usize> = (1..body.len()).collect();
    assert_eq!(split(body, &cuts), whole(body));
    assert_eq!(whole(body).map(|(u, d, _)| (u, d)), Ok((body.len(), true)));
}

#[test]
fn incomplete_bodies_use_everything_and_are_not_done() {
    for prefix in [&b""[..], b"5", b"5\r", b"5\r\nhel", b"5\r\nhello\r", b"5\r\nhello\r\n0\r\n", b"0\r\nA: b\r\n"] {
        let p = ChunkedBody::new(TRAILERS).feed(prefix).expect("a valid prefix must not be refused");
        assert_eq!(p, Progress { used: prefix.len(), done: false }, "{:?}", String::from_utf8_lossy(prefix));
    }
}

#[test]
fn after_the_end_nothing_more_is_used_and_errors_stick() {
    let mut done = ChunkedBody::new(TRAILERS);
    assert!(done.feed(b"0\r\n\r\n").expect("the empty body must be accepted").done);
    assert_eq!(done.feed(b"more").expect("a finished body must not fail"), Progress { used: 0, done: true });
    assert!(done.is_done());
    let mut bad = ChunkedBody::new(TRAILERS);
    let e = bad.feed(b"x").expect_err("a non-hex size must be refused");
    assert_eq!(bad.feed(b"0\r\n\r\n"), Err(e), "a refused body must stay refused");
}

#[test]
fn size_lines_are_hex_digits_only() {
    assert_eq!(refused(b"0x5\r\nhello\r\n0\r\n\r\n"), ChunkedError::SizeNotHex { at: 1, byte: b'x' });
    assert_eq!(refused(b"-5\r\n"), ChunkedError::SizeNotHex { at: 0, byte: b'-' });
    assert_eq!(refused(b"+5\r\n"), ChunkedError::SizeNotHex { at: 0, byte: b'+' });
    assert_eq!(refused(b" 5\r\n"), ChunkedError::SizeNotHex { at: 0, byte: b' ' });
    assert_eq!(refused(b"\r\n"), ChunkedError::SizeNotHex { at: 0, byte: b'\r' });
    assert_eq!(
        refused(b"5 \r\nhello\r\n"),
        ChunkedError::Extension { at: 2, byte: b'\r' },
        "whitespace must lead to ';'"
    );
    assert_eq!(refused(b"g\r\n"), ChunkedError::SizeNotHex { at: 0, byte: b'g' });
    assert_eq!(refused(b"10000000000000000\r\n"), ChunkedError::SizeOverflow { at: 16 });
    let max = b"ffffffffffffffff\r\n";
    assert_eq!(whole(max).map(|(u, d, _)| (u, d)), Ok((max.len(), false)), "u64::MAX is a valid size");
    let zeros: Vec<u8> = std::iter::repeat_n(b'0', 2000).collect();
    assert!(matches!(refused(&zeros), ChunkedError::LineTooLong { at: 1024 }));
}

#[test]
fn extensions_follow_the_grammar() {
    for ok in [
        &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
        b"5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b;c\\\"\"\r\nhello\r\n0\r\n\r\n",
        b"5\t;a=b\r\nhello\r\n0;last\r\n\r\n",
    ] {
        assert!(whole(ok).expect("a valid extension must be accepted").1, "{:?}", String::from_utf8_lossy(ok));
    }
    assert!(matches!(refused(b"5;\r\nhello"), ChunkedError::Extension { .. }), "an empty name must be refused");
    assert!(matches!(refused(b"5;a=\r\n"), ChunkedError::Extension { .. }), "an empty value must be refused");
    assert!(matches!(refused(b"5;a b\r\n"), ChunkedError::Extension { .. }));
    assert!(matches!(refused(b"5;a=\"b\r\n"), ChunkedError::Extension { .. }), "an unclosed quote must be refused");
    assert_eq!(
        refused(b"5;a\nhello\r\n"),
        ChunkedError::BareLf { at: 3 },
        "LF inside an extension is the funky-chunks case"
    );
    assert_eq!(refused(b"5;a=\"x\ny\"\r\n"), ChunkedError::BareLf { at: 6 });
    assert!(matches!(refused(b"5;a=b \r\n"), ChunkedError::Extension { .. }), "whitespace before CRLF must be refused");
}

#[test]
fn every_line_ends_in_crlf() {
    assert_eq!(refused(b"5\nhello\r\n"), ChunkedError::BareLf { at: 1 });
    assert_eq!(refused(b"5\rhello\r\n"), ChunkedError::BareCr { at: 2 });
    assert_eq!(refused(b"5\r\nhello\n0\r\n\r\n"), ChunkedError::BareLf { at: 8 });
    assert_eq!(refused(b"5\r\nhello\rX"), ChunkedError::BareCr { at: 9 });
    assert_eq!(
        refused(b"5\r\nhelloX\r\n"),
        ChunkedError::MissingCrlf { at: 8 },
        "more data than the size must be refused"
    );
    assert_eq!(refused(b"5\r\nhello\r\n0\r\n\n"), ChunkedError::BareLf { at: 13 });
    assert_eq!(refused(b"5\r\nhello\r\n0\r\n\rX"), ChunkedError::BareCr { at: 14 });
}

#[test]
fn trailers_are_fields_bounded_and_never_framing() {
    assert!(whole(b"0\r\nA: b\r\nC-D:e f\r\n\r\n").expect("valid trailers must be accepted").1);
    assert!(matches!(refused(b"0\r\nA : b\r\n\r\n"), ChunkedError::Trailer { byte: b' ', .. }));
    assert!(matches!(refused(b"0\r\nA: b\r\n c\r\n\r\n"), ChunkedError::Trailer { byte: b' ', .. }), "obs-fold");
    assert!(matches!(refused(b"0\r\nA: b\0\r\n\r\n"), ChunkedError::Trailer { byte: 0, .. }));
    assert!(matches!(refused(b"0\r\nA: b\nC: d\r\n\r\n"), ChunkedError::BareLf { .. }));
    assert!(matches!(refused(b"0\r\n: b\r\n\r\n"), ChunkedError::Trailer { byte: b':', .. }));
    for name in ["Content-Length", "transfer-encoding", "HOST"] {
        let body = format!("0\r\n{name}: 5\r\n\r\n");
        assert!(matches!(refused(body.as_bytes()), ChunkedError::ForbiddenTrailer { .. }), "{name} must be refused");
    }
    assert!(whole(b"0\r\nContent-Lengths: 5\r\nHostname: x\r\n\r\n").expect("look-alike names must pass").1);
    let mut small = ChunkedBody::new(8);
    assert_eq!(small.feed(b"0\r\nAbcdefgh: 1\r\n\r\n"), Err(ChunkedError::TrailerTooLarge { max: 8 }));
    assert!(ChunkedBody::new(8).feed(b"0\r\nA: 1\r\n\r\n").expect("eight bytes of trailers must fit").done);
}

#[test]
fn data_ranges_skip_the_framing() {
    let input = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
    let (_, _, ranges) = whole(input).expect("a valid body must be accepted");
    assert_eq!(ranges, vec![3..6, 13..15]);
}

// === property tests ===

/// One generated chunked body and where its parts are.
#[derive(Debug, Clone)]
struct Generated {
    bytes: Vec<u8>,
    data: Vec<Range<usize>>,
    /// Offsets of the CR and LF bytes of the framing (not those inside chunk data).
    crlf: Vec<usize>,
}

fn extension() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(";a".to_owned()),
        Just(";name=value".to_owned()),
        Just(" ; a = b".to_owned()),
        Just(";q=\"x y;\\\"z\"".to_owned()),
        Just(";a;b=c".to_owned()),
    ]
}

fn size_text(len: usize, upper: bool, zeros: usize) -> String {
    let hex = if upper { format!("{len:X}") } else { format!("{len:x}") };
    format!("{}{hex}", "0".repeat(zeros))
}

fn body() -> impl Strategy<Value = Generated> {
    let chunk = (proptest::collection::vec(any::<u8>(), 1..48), extension(), any::<bool>(), 0usize..3);
    let trailer = prop_oneof![Just("X-A: 1"), Just("Checksum: abc def"), Just("T:"), Just("Server-Timing: db;dur=53")];
    (proptest::collection::vec(chunk, 0..6), extension(), proptest::collection::vec(trailer, 0..3)).prop_map(
        |(chunks, last_ext, trailers)| {
            let mut g = Generated { bytes: Vec::new(), data: Vec::new(), crlf: Vec::new() };
            let crlf = |g: &mut Generated| {
                g.crlf.extend([g.bytes.len(), g.bytes.len() + 1]);
                g.bytes.extend_from_slice(b"\r\n");
            };
            for (data, ext, upper, zeros) in chunks {
                g.bytes.extend_from_slice(size_text(data.len(), upper, zeros).as_bytes());
                g.bytes.extend_from_slice(ext.as_bytes());
                crlf(&mut g);
                g.data.push(g.bytes.len()..g.bytes.len() + data.len());
                g.bytes.extend_from_slice(&data);
                crlf(&mut g);
            }
            g.bytes.push(b'0');
            g.bytes.extend_from_slice(last_ext.as_bytes());
            crlf(&mut g);
            for t in trailers {
                g.bytes.extend_from_slice(t.as_bytes());
                crlf(&mut g);
            }
            crlf(&mut g);
            g
        },
    )
}

/// The RFC 9112 §7.1 grammar read over a whole buffer with slices (a second, independent reading for
/// the differential property): the length and data ranges of the complete body `input` starts with.
fn reference(input: &[u8]) -> Option<(usize, Vec<Range<usize>>)> {
    fn crlf_at(input: &[u8], from: usize) -> Option<usize> {
        input.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|p| from + p)
    }
    fn extensions(mut s: &[u8]) -> bool {
        let bws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
        let token = |s: &[u8]| -> usize { s.iter().take_while(|&&b| syntax::is_tchar(b)).count() };
        while !s.is_empty() {
            s = &s[bws(s)..];
            let Some(rest) = s.strip_prefix(b";") else { return false };
            s = &rest[bws(rest)..];
            let n = token(s);
            if n == 0 {
                return false;
            }
            s = &s[n..];
            let after = &s[bws(s)..];
            if let Some(rest) = after.strip_prefix(b"=") {
                s = &rest[bws(rest)..];
                if let Some(mut q) = s.strip_prefix(b"\"") {
                    loop {
                        match q.split_first() {
                            Some((b'"', rest)) => {
                                s = rest;
                                break;
                            }
                            Some((b'\\', rest)) => match rest.split_first() {
                                Some((&c, rest))
                                    if c == b'\t' || c == b' ' || (0x21..=0x7e).contains(&c) || c >= 0x80 =>
                                {
                                    q = rest;
                                }
                                _ => return false,
                            },
                            Some((&c, rest))
                                if c == b'\t' || c == b' ' || c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80 =>
                            {
                                q = rest;
                            }
                            _ => return false,
                        }
                    }
                } else {
                    let n = token(s);
                    if n == 0 {
                        return false;
                    }
                    s = &s[n..];
                }
            }
        }
        true
    }
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let end = crlf_at(input, pos)?;
        let line = &input[pos..end];
        if line.len() + 1 > MAX_LINE as usize {
            return None;
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || !extensions(&line[digits..]) {
            return None;
        }
        let size = line[..digits].iter().try_fold(0u64, |n, &b| n.checked_mul(16)?.checked_add(hex(b)?))?;
        pos = end + 2;
        if size == 0 {
            break;
        }
        let data_end = pos.checked_add(usize::try_from(size).ok()?)?;
        if input.get(data_end..data_end + 2)? != b"\r\n" {
            return None;
        }
        data.push(pos..data_end);
        pos = data_end + 2;
    }
    let trailers_start = pos;
    loop {
        let end = crlf_at(input, pos)?;
        let line = &input[pos..end];
        pos = end + 2;
        if pos - trailers_start > TRAILERS {
            return None;
        }
        if line.is_empty() {
            return Some((pos, data));
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let forbidden =
            [&b"content-length"[..], b"transfer-encoding", b"host"].iter().any(|f| name.eq_ignore_ascii_case(f));
        if !syntax::is_token(name) || forbidden || !syntax::is_field_value(value) {
            return None;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_of_a_valid_body_gives_the_same_result(g in body(), cuts in proptest::collection::vec(0usize..400, 0..12), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut input = g.bytes.clone();
        input.extend_from_slice(&tail);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let expected = Ok((g.bytes.len(), true, merge(g.data.clone())));
        prop_assert_eq!(whole(&input), expected.clone());
        prop_assert_eq!(split(&input, &cuts), expected);
        prop_assert_eq!(reference(&input), Some((g.bytes.len(), g.data.clone())));
    }

    #[test]
    fn a_corrupted_body_is_refused_or_read_as_the_grammar_reads_it(g in body(), at in any::<prop::sample::Index>(), byte in any::<u8>(), how in 0u8..3) {
        let mut input = g.bytes.clone();
        let i = at.index(input.len());
        match how {
            0 => input[i] = byte,
            1 => input.insert(i, byte),
            _ => { input.remove(i); }
        }
        match (whole(&input), reference(&input)) {
            // accepted: exactly where and as the grammar says, never another body
            (Ok((used, true, ranges)), Some((len, data))) => {
                prop_assert_eq!(used, len);
                prop_assert_eq!(ranges, merge(data));
            }
            (Ok((_, true, _)), None) => prop_assert!(false, "accepted what the grammar refuses: {:?}", String::from_utf8_lossy(&input)),
            (_, Some(_)) => prop_assert!(false, "refused or unfinished what the grammar accepts: {:?}", String::from_utf8_lossy(&input)),
            (Ok((used, false, _)), None) => prop_assert_eq!(used, input.len(), "an unfinished body must use every byte"),
            (Err(_), None) => {}
        }
    }

    #[test]
    fn a_framing_cr_or_lf_replaced_is_always_refused(g in body(), which in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let i = g.crlf[which.index(g.crlf.len())];
        prop_assume!(byte != g.bytes[i]);
        let mut input = g.bytes.clone();
        input[i] = byte;
        prop_assert!(whole(&input).is_err(), "{:?} must be refused", String::from_utf8_lossy(&input));
    }
}
