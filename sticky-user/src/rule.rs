//! Routing rules: which requests a service takes, parsed from Traefik's rule syntax (pure).
//!
//! Both syntaxes users already have are accepted:
//! - v2/v3: `Host(`a.example`) && (PathPrefix(`/api`) || Path(`/health`))`, with `&&`, `||`, `!` and
//!   parentheses; a matcher may list several values (v2): `Host(`a`, `b`)`.
//! - v1: `Host:a.example,b.example;PathPrefix:/api`: `;` joins matchers (and), `,` joins values (or).
//!   `PathPrefixStrip`/`PathStrip` match like `PathPrefix`/`Path` and strip the matched prefix.
//!
//! Matchers: `Host` (case-insensitive, port ignored), `Path` (exact), `PathPrefix` (string prefix).
//! Anything else is an error naming the matcher, never a silently wider or narrower rule.

use std::fmt;

/// A parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Matches every request (no rule given).
    Always,
    /// The Host header (without port) equals one of these, case-insensitively. Stored lowercase.
    Host(Vec<String>),
    /// The path equals one of these.
    Path(Vec<String>),
    /// The path starts with one of these.
    PathPrefix(Vec<String>),
    /// All of these match.
    And(Vec<Rule>),
    /// Any of these matches.
    Or(Vec<Rule>),
    /// The inner rule does not match.
    Not(Box<Rule>),
}

/// Why a rule string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A matcher sticky does not implement.
    #[error("unsupported matcher `{0}` (sticky understands Host, Path, PathPrefix, PathPrefixStrip, PathStrip)")]
    Unsupported(String),
    /// The text is not a rule.
    #[error("invalid rule at byte {at}: {reason}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// A matcher without values.
    #[error("matcher `{0}` needs at least one value")]
    Empty(String),
}

/// A rule plus what it implies for the forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// When the route applies.
    pub rule: Rule,
    /// v1 `PathPrefixStrip`/`PathStrip`: the matched prefix would be removed before forwarding,
    /// which sticky does not do, so every source refuses such a rule.
    pub strip_prefix: bool,
}

impl Route {
    /// Parses a rule in either syntax; an empty string is [`Rule::Always`].
    ///
    /// # Errors
    /// The rule is malformed or uses a matcher sticky does not implement.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let trimmed = text.trim();
        let (rule, strip_prefix) = if trimmed.is_empty() {
            (Rule::Always, false)
        } else if trimmed.contains('(') {
            (Parser { s: trimmed.as_bytes(), pos: 0 }.parse_all()?, false)
        } else {
            parse_v1(trimmed)?
        };
        Ok(Self { rule, strip_prefix })
    }
}

impl Rule {
    /// Whether a request with this host (a port, if any, is ignored) and path matches. A request
    /// without a host matches no `Host` matcher.
    #[must_use]
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        match self {
            Self::Always => true,
            Self::Host(hosts) => host.map(strip_port).is_some_and(|h| hosts.iter().any(|x| x.eq_ignore_ascii_case(h))),
            Self::Path(paths) => paths.iter().any(|p| p == path),
            Self::PathPrefix(prefixes) => prefixes.iter().any(|p| path.starts_with(p.as_str())),
            Self::And(rules) => rules.iter().all(|r| r.matches(host, path)),
            Self::Or(rules) => rules.iter().any(|r| r.matches(host, path)),
            Self::Not(rule) => !rule.matches(host, path),
        }
    }

    /// The rule in Traefik v2 syntax (`Always` renders as `PathPrefix(`/`)`, which matches the same
    /// requests); parsing the result gives this rule back.
    #[must_use]
    pub fn to_traefik(&self) -> String {
        self.to_string()
    }

    /// Traefik's default priority: the length of the rule text. More specific rules are longer.
    #[must_use]
    pub fn default_priority(&self) -> i64 {
        i64::try_from(self.to_traefik().len()).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, v: &[String]| {
            let args: Vec<String> = v.iter().map(|s| format!("`{s}`")).collect();
            write!(f, "{name}({})", args.join(", "))
        };
        let join = |f: &mut fmt::Formatter<'_>, rules: &[Rule], op: &str| {
            for (i, r) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                match r {
                    Rule::And(_) | Rule::Or(_) => write!(f, "({r})")?,
                    _ => write!(f, "{r}")?,
                }
            }
            Ok(())
        };
        match self {
            Self::Always => f.write_str("PathPrefix(`/`)"),
            Self::Host(v) => list(f, "Host", v),
            Self::Path(v) => list(f, "Path", v),
            Self::PathPrefix(v) => list(f, "PathPrefix", v),
            Self::And(rules) => join(f, rules, " && "),
            Self::Or(rules) => join(f, rules, " || "),
            Self::Not(r) => match **r {
                Rule::And(_) | Rule::Or(_) => write!(f, "!({r})"),
                _ => write!(f, "!{r}"),
            },
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: [::1]:8080
        return host.split_once(']').map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
}

/// v1: `Matcher:value,value;Matcher:value`.
fn parse_v1(text: &str) -> Result<(Rule, bool), RuleError> {
    let mut rule: Option<Rule> = None;
    let mut strip = false;
    let mut offset = 0;
    for part in text.split(';') {
        let at = offset;
        offset += part.len() + 1;
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, values) =
            part.split_once(':').ok_or(RuleError::Syntax { at, reason: "expected `Matcher:value` (v1 syntax)" })?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
        let (matcher, strips) = matcher(name.trim(), values)?;
        strip |= strips;
        rule = Some(match rule {
            None => matcher,
            Some(Rule::And(mut all)) => {
                all.push(matcher);
                Rule::And(all)
            }
            Some(prev) => Rule::And(vec![prev, matcher]),
        });
    }
    Ok((rule.unwrap_or(Rule::Always), strip))
}

/// Builds a matcher from its name and values; the flag says whether it strips (v1 only).
fn matcher(name: &str, values: Vec<String>) -> Result<(Rule, bool), RuleError> {
    if values.is_empty() {
        return Err(RuleError::Empty(name.to_owned()));
    }
    Ok(match name {
        "Host" => (Rule::Host(values.into_iter().map(|h| h.to_ascii_lowercase()).collect()), false),
        "Path" => (Rule::Path(values), false),
        "PathPrefix" => (Rule::PathPrefix(values), false),
        "PathStrip" => (Rule::Path(values), true),
        "PathPrefixStrip" => (Rule::PathPrefix(values), true),
        other => return Err(RuleError::Unsupported(other.to_owned())),
    })
}

/// Recursive-descent parser of the v2/v3 syntax. Precedence: `!` > `&&` > `||`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn parse_all(mut self) -> Result<Rule, RuleError> {
        let rule = self.or()?;
        self.skip_ws();
        if self.pos != self.s.len() {
            return Err(self.err("unexpected text after the rule"));
        }
        Ok(rule)
    }

    fn err(&self, reason: &'static str) -> RuleError {
        RuleError::Syntax { at: self.pos, reason }
    }

    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, token: &[u8]) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Rule, RuleError> {
        let mut any = vec![self.and()?];
        while self.eat(b"||") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 { any.remove(0) } else { Rule::Or(any) })
    }

    fn and(&mut self) -> Result<Rule, RuleError> {
        let mut all = vec![self.unary()?];
        while self.eat(b"&&") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Rule::And(all) })
    }

    fn unary(&mut self) -> Result<Rule, RuleError> {
        if self.eat(b"!") {
            return Ok(Rule::Not(Box::new(self.unary()?)));
        }
        if self.eat(b"(") {
            let inner = self.or()?;
            if !self.eat(b")") {
                return Err(self.err("expected `)`"));
            }
            return Ok(inner);
        }
        self.call()
    }

    fn call(&mut self) -> Result<Rule, RuleError> {
        self.skip_ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_alphanumeric) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a matcher such as Host(`example.com`)"));
        }
        let name = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        if !self.eat(b"(") {
            return Err(self.err("expected `(` after the matcher name"));
        }
        let mut values = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b")") {
                break;
            }
            if !values.is_empty() && !self.eat(b",") {
                return Err(self.err("expected `,` or `)`"));
            }
            values.push(self.string()?);
        }
        let (rule, _) = matcher(&name, values)?;
        Ok(rule)
    }

    /// A value in backticks or double quotes.
    fn string(&mut self) -> Result<String, RuleError> {
        self.skip_ws();
        let quote = match self.s.get(self.pos) {
            Some(q @ (b'`' | b'"')) => *q,
            _ => return Err(self.err("expected a value in backticks")),
        };
        let start = self.pos + 1;
        let end = self.s[start..]
            .iter()
            .position(|&b| b == quote)
            .map(|i| start + i)
            .ok_or(RuleError::Syntax { at: self.pos, reason: "unterminated value" })?;
        self.pos = end + 1;
        Ok(String::from_utf8_lossy(&self.s[start..end]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> Route {
        Route::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn v1_seed_rule_matches_every_path() {
        let r = route("PathPrefix:/");
        assert!(r.rule.matches(Some("anything"), "/"));
        assert!(r.rule.matches(Some("x:8080"), "/a/b"));
    }

    #[test]
    fn v1_and_of_or_lists() {
        let r = route("Host:a.example,B.example;PathPrefix:/api,/v2");
        assert!(r.rule.matches(Some("b.example:80"), "/v2/x"));
        assert!(r.rule.matches(Some("A.EXAMPLE"), "/api"));
        assert!(!r.rule.matches(Some("c.example"), "/api"));
        assert!(!r.rule.matches(Some("a.example"), "/other"));
    }

    #[test]
    fn v2_precedence_and_parentheses() {
        let r = route("Host(`a.example`) && (PathPrefix(`/api`) || Path(`/health`))");
        assert!(r.rule.matches(Some("a.example"), "/health"));
        assert!(r.rule.matches(Some("a.example"), "/api/1"));
        assert!(!r.rule.matches(Some("a.example"), "/healthz"));
        assert!(!r.rule.matches(Some("b.example"), "/api"));
        let r = route("Host(`a`) || Host(`b`) && PathPrefix(`/x`)");
        assert!(r.rule.matches(Some("a"), "/y"), "&& binds tighter than ||");
        assert!(!r.rule.matches(Some("b"), "/y"));
    }

    #[test]
    fn v2_multiple_values_not_and_quotes() {
        let r = route("Host(`a`, \"b\") && !PathPrefix(`/admin`)");
        assert!(r.rule.matches(Some("b"), "/"));
        assert!(!r.rule.matches(Some("a"), "/admin/x"));
    }

    #[test]
    fn host_ignores_port_and_handles_ipv6_literals() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("a.example"), "a.example");
    }

    #[test]
    fn strip_prefix_v1() {
        let r = route("PathPrefixStrip:/api");
        assert!(r.strip_prefix, "reported, so that sources can refuse it");
        assert!(r.rule.matches(None, "/api/users") && !r.rule.matches(None, "/web"), "matched like PathPrefix");
        assert!(!route("PathPrefix:/api").strip_prefix);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Route::parse("HostRegexp(`{x:.*}`)").unwrap_err(), RuleError::Unsupported("HostRegexp".into()));
        assert_eq!(Route::parse("Method:GET").unwrap_err(), RuleError::Unsupported("Method".into()));
        assert!(matches!(Route::parse("Host(`a`"), Err(RuleError::Syntax { .. })));
        assert!(matches!(Route::parse("Host(`a`) &&"), Err(RuleError::Syntax { .. })));
        assert!(matches!(Route::parse("Host()"), Err(RuleError::Empty(_))));
        assert!(matches!(Route::parse("Host:"), Err(RuleError::Empty(_))));
        assert!(matches!(Route::parse("garbage"), Err(RuleError::Syntax { .. })));
    }

    #[test]
    fn empty_rule_is_any_and_longer_rules_rank_higher() {
        assert_eq!(route("").rule, Rule::Always);
        assert!(!route("Host(`a`)").rule.matches(None, "/"), "no host matches no Host matcher");
        let priority = |text: &str| route(text).rule.default_priority();
        assert!(priority("Host(`a`) && PathPrefix(`/x`)") > priority("Host(`a`)"));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = Route::parse(&s);
        }

        #[test]
        fn display_round_trips(host in "[a-z]{1,8}", prefix in "/[a-z]{0,6}") {
            let r = route(&format!("Host(`{host}`) && PathPrefix(`{prefix}`)"));
            let again = route(&r.rule.to_string());
            proptest::prop_assert_eq!(r.rule, again.rule);
        }
    }
}
