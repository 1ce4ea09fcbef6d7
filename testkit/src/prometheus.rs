//! One sample of a Prometheus text exposition (`/metrics`), found by its series the way tests write
//! it: `name{label="value",...}`, labels in any order, `name{}` the same as `name`.
//!
//! Hand-written rather than a parsing crate: the crates that read the text format bring a date-time
//! and regex stack for what is a line scan, and tests need the lookup, not a data model.

/// The value of the first sample of `series` in `text`, e.g.
/// `value(text, r#"sticky_l4_map_entries{map="CONNS"}"#)`. A malformed `series` matches nothing.
#[must_use]
pub fn value(text: &str, series: &str) -> Option<f64> {
    raw_value(text, series)?.parse().ok()
}

/// The value of the first sample of `series` in `text` as a whole number: counters, gauges of counts.
/// `None` if the series is missing or its value is negative, fractional or not a number.
#[must_use]
pub fn sample(text: &str, series: &str) -> Option<u64> {
    let raw = raw_value(text, series)?;
    raw.parse().ok().or_else(|| {
        // Renderers may write whole numbers as floats (`1e+06`, `3.0`).
        let v: f64 = raw.parse().ok()?;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked: whole and in range")]
        (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0).then_some(v as u64)
    })
}

/// The value token of the first sample matching `series`.
fn raw_value<'t>(text: &'t str, series: &str) -> Option<&'t str> {
    let (wanted, rest) = Series::parse(series)?;
    if !rest.trim().is_empty() {
        return None;
    }
    text.lines().find_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (found, rest) = Series::parse(line)?;
        // The value must be separated from the series; a timestamp may follow it.
        (found == wanted && rest.starts_with([' ', '\t'])).then(|| rest.split_whitespace().next()).flatten()
    })
}

/// A metric name with its labels, sorted by label name so that order does not matter.
#[derive(Debug, PartialEq, Eq)]
struct Series<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
}

impl<'a> Series<'a> {
    /// Parses `name` or `name{labels}` at the start of `s`; returns it and what follows.
    fn parse(s: &'a str) -> Option<(Self, &'a str)> {
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
        let (name, mut rest) = s.split_at(end);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner;
            loop {
                rest = rest.trim_start();
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
                let (label, after) = rest.split_at(end);
                let (value, after) = quoted(after.trim_start().strip_prefix('=')?.trim_start())?;
                if label.is_empty() {
                    return None;
                }
                labels.push((label, value));
                rest = after.trim_start();
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else if !rest.starts_with('}') {
                    return None;
                }
            }
        }
        labels.sort_unstable();
        Some((Self { name, labels }, rest))
    }
}

/// A double-quoted label value with `\\`, `\"` and `\n` escapes at the start of `s`; the value and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 2..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{sample, value};

    const TEXT: &str = r#"# HELP sticky_repins_total Re-pins by reason.
# TYPE sticky_repins_total counter
sticky_repins_total{service="default",reason="invalid_cookie"} 42
sticky_repins_total{service="default",reason="expired"} 1
sticky_repins_total_extra{service="default",reason="expired"} 7
sticky_spliced_connections_active 3
sticky_l4_map_entries{map="CONNS"} 2.62144e5 1700000000000
sticky_label_with_escapes{path="a \"b\" \\ c"} 5
sticky_ratio 0.25
sticky_negative -1
"#;

    #[test]
    fn a_series_is_found_by_name_and_labels_in_any_order() {
        assert_eq!(sample(TEXT, r#"sticky_repins_total{service="default",reason="invalid_cookie"}"#), Some(42));
        assert_eq!(sample(TEXT, r#"sticky_repins_total{reason="expired",service="default"}"#), Some(1));
        assert_eq!(sample(TEXT, r#"sticky_repins_total{ reason = "expired" , service="default", }"#), Some(1));
        assert_eq!(sample(TEXT, "sticky_spliced_connections_active{}"), Some(3), "{{}} is no labels");
        assert_eq!(sample(TEXT, "sticky_spliced_connections_active"), Some(3));
        assert_eq!(sample(TEXT, r#"sticky_label_with_escapes{path="a \"b\" \\ c"}"#), Some(5));
    }

    #[test]
    fn near_misses_do_not_match() {
        assert_eq!(sample(TEXT, r#"sticky_repins_total{service="default"}"#), None, "a label subset is another series");
        assert_eq!(sample(TEXT, r#"sticky_repins_total{service="default",reason="unhealthy"}"#), None);
        assert_eq!(sample(TEXT, "sticky_repins"), None, "a name prefix is another metric");
        assert_eq!(sample(TEXT, "sticky_repins_total{"), None, "a malformed series matches nothing");
        assert_eq!(sample(TEXT, "# HELP"), None, "comments are not samples");
    }

    #[test]
    fn values_are_whole_numbers_for_sample_and_any_float_for_value() {
        assert_eq!(sample(TEXT, r#"sticky_l4_map_entries{map="CONNS"}"#), Some(262_144), "timestamp ignored");
        assert_eq!(sample(TEXT, "sticky_ratio"), None, "a fraction is not a count");
        assert_eq!(sample(TEXT, "sticky_negative"), None);
        assert_eq!(value(TEXT, "sticky_ratio"), Some(0.25));
        assert_eq!(value(TEXT, "sticky_negative"), Some(-1.0));
    }
}
