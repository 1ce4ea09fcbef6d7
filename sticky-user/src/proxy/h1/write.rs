//! Writing a head into the engine's buffer: kept field lines copied in runs (adjacent lines in one
//! copy), new fields written whole, lengths without `fmt`.

use bytes::BufMut;

use super::head::Span;

/// `Name: part part ...\r\n`.
pub fn put_field(out: &mut impl BufMut, name: &[u8], value: &[&[u8]]) {
    out.put_slice(name);
    out.put_slice(b": ");
    for part in value {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

/// `Content-Length: n\r\n`, without going through `fmt`.
pub fn put_length(out: &mut impl BufMut, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    put_field(out, b"Content-Length", &[&digits[i..]]);
}

/// Kept field lines not written yet: adjacent ones are copied in one go.
#[derive(Default)]
pub struct Lines {
    pending: Option<Span>,
    /// The one Content-Length line of a normalised length was written.
    pub length_written: bool,
}

impl Lines {
    /// Keeps `line` (written now or with the lines adjacent to it).
    pub fn keep(&mut self, line: Span, buf: &[u8], out: &mut impl BufMut) {
        match self.pending {
            Some(p) if p.end() == line.start() => self.pending = Some(Span::new(p.start()..line.end())),
            _ => {
                self.flush(buf, out);
                self.pending = Some(line);
            }
        }
    }

    /// Writes the kept lines (before anything written in their place).
    pub fn flush(&mut self, buf: &[u8], out: &mut impl BufMut) {
        if let Some(p) = self.pending.take() {
            out.put_slice(p.of(buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_written_in_decimal() {
        for (n, text) in [(0u64, &b"0"[..]), (7, b"7"), (10, b"10"), (u64::MAX, b"18446744073709551615")] {
            let mut out = Vec::new();
            put_length(&mut out, n);
            assert_eq!(out, [&b"Content-Length: "[..], text, b"\r\n"].concat());
        }
    }

    #[test]
    fn adjacent_lines_are_copied_together_and_order_is_kept() {
        let buf = b"A: 1\r\nB: 2\r\nC: 3\r\n";
        let mut lines = Lines::default();
        let mut out = Vec::new();
        lines.keep(Span::new(0..6), buf, &mut out);
        lines.keep(Span::new(6..12), buf, &mut out);
        assert!(out.is_empty(), "adjacent lines must wait for one copy");
        lines.flush(buf, &mut out);
        put_field(&mut out, b"X", &[b"y"]);
        lines.keep(Span::new(12..18), buf, &mut out);
        lines.flush(buf, &mut out);
        assert_eq!(out, b"A: 1\r\nB: 2\r\nX: y\r\nC: 3\r\n");
    }
}
