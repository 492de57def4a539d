//! Label matchers in the Alertmanager style, shared by subscriptions (`custom_filters`),
//! silences and inhibition rules.
//!
//! A matcher is `label OP value` with `OP` one of `=`, `!=`, `=~`, `!~`; the value is
//! either bare (the rest of the string, trimmed) or double-quoted (`\"`, `\\`, `\n`,
//! `\t` escapes). Regexes are anchored at both ends (`host =~ "web-.*"` does not match
//! `my-web-1`), as in Alertmanager. A label the event does not have counts as the empty
//! string, so `env != prod` matches an event without `env`, and `env = ""` matches one.
//! `==` is taken as `=`. Silences and inhibition rules parse leniently
//! ([`Matcher::parse_lenient`]): a value whose quotes do not pair up is taken as written.
//! Regexes are Go's syntax ([`go_regex`]), as Alertmanager and Prometheus read them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

pub(crate) mod go_regex;

/// The comparison of one matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    /// The operator of Alertmanager's API form (`isRegex`, `isEqual`).
    pub(crate) fn from_flags(is_regex: bool, is_equal: bool) -> Self {
        match (is_regex, is_equal) {
            (false, true) => Self::Equal,
            (false, false) => Self::NotEqual,
            (true, true) => Self::Regex,
            (true, false) => Self::NotRegex,
        }
    }

    pub(crate) fn is_regex(self) -> bool {
        matches!(self, Self::Regex | Self::NotRegex)
    }

    pub(crate) fn is_equal(self) -> bool {
        matches!(self, Self::Equal | Self::Regex)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// The compiled size one matcher's regex may take. Real label patterns take a few KB;
/// with Go's ASCII `\d`/`\w`/`\s`, even `\w{1000}` (Go's largest repeat) fits.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One label matcher.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub(crate) label: String,
    pub(crate) op: Op,
    pub(crate) value: String,
    /// `^(?:value)$` for the regex operators.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

/// `label OP "value"`, quoted so that [`Matcher::parse`] reads back the same matcher:
/// only what `unquote` unescapes is escaped (a saved subscription must reload as it was).
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} \"", self.label, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
}

/// Go regex `pattern` anchored at both ends, as Alertmanager and Prometheus match
/// labels, compiled within the size bound.
pub(crate) fn anchored_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{})$", go_regex::translate(pattern)))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl Matcher {
    /// `label = value` (the map form of `custom_filters`).
    pub(crate) fn equal(label: &str, value: &str) -> Self {
        Self {
            label: label.to_owned(),
            op: Op::Equal,
            value: value.to_owned(),
            regex: None,
        }
    }

    /// Builds a matcher, compiling the regex of `=~` / `!~`.
    pub(crate) fn new(label: &str, op: Op, value: &str) -> Result<Self, String> {
        let regex = match op {
            // Bounded: a short pattern such as `\pL{95}\pL{95}` compiles to hundreds of
            // megabytes otherwise, and matchers come from the API too.
            Op::Regex | Op::NotRegex => Some(anchored_regex(value).map_err(|e| {
                format!(
                    "`{label}`: invalid regex {value:?}: {}",
                    crate::text::regex_error(&e)
                )
            })?),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Parses `label OP value`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (label, op, rest) = split(text)?;
        let value = if rest.starts_with('"') {
            unquote(rest).map_err(|e| format!("matcher {text:?}: {e}"))?
        } else {
            Cow::Borrowed(rest)
        };
        Self::new(label, op, &value).map_err(|e| format!("matcher {text:?}: {e}"))
    }

    /// Like [`Matcher::parse`], except that a value whose quotes do not pair up
    /// (`a="x`, `a="x"y`) is taken as written, quotes included. Silences and inhibition
    /// rules always took such values, and saved silences must keep loading.
    pub(crate) fn parse_lenient(text: &str) -> Result<Self, String> {
        let (label, op, rest) = split(text)?;
        let value = match rest.strip_prefix('"') {
            Some(_) => unquote(rest).unwrap_or(Cow::Borrowed(rest)),
            None => Cow::Borrowed(rest),
        };
        Self::new(label, op, &value).map_err(|e| format!("matcher {text:?}: {e}"))
    }

    /// Whether `labels` satisfy the matcher.
    pub(crate) fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(labels.get(&self.label).map(String::as_str))
    }

    /// Whether a label value (`None`: the label is absent) satisfies the matcher.
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Equal, _) => v == self.value,
            (Op::NotEqual, _) => v != self.value,
            (Op::Regex, Some(re)) => re.is_match(v),
            (Op::NotRegex, Some(re)) => !re.is_match(v),
            // `new` always compiles the regex of the regex operators.
            (Op::Regex | Op::NotRegex, None) => false,
        }
    }
}

/// Whether `name` is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), as
/// Alertmanager's API requires; sluice's own matchers also take dotted names.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `label OP value` → (label, operator, the value as written, trimmed).
fn split(text: &str) -> Result<(&str, Op, &str), String> {
    let s = text.trim();
    let end = s
        .find(|c: char| c == '=' || c == '!' || c == '~' || c.is_whitespace())
        .ok_or_else(|| {
            format!(
                "matcher {text:?}: no operator; expected `label OP value` with OP one of =, !=, =~, !~"
            )
        })?;
    let label = &s[..end];
    if label.is_empty() || label.contains('"') {
        return Err(format!("matcher {text:?}: missing or invalid label name"));
    }
    let rest = s[end..].trim_start();
    let (op, rest) = [
        ("=~", Op::Regex),
        ("!~", Op::NotRegex),
        ("!=", Op::NotEqual),
        // Silences always took `==` for equality; keep taking it.
        ("==", Op::Equal),
        ("=", Op::Equal),
    ]
    .into_iter()
    .find_map(|(token, op)| rest.strip_prefix(token).map(|r| (op, r)))
    .ok_or_else(|| format!("matcher {text:?}: expected one of =, !=, =~, !~ after `{label}`"))?;
    Ok((label, op, rest.trim()))
}

/// Parses a list of matchers leniently ([`Matcher::parse_lenient`]), naming the option
/// on error.
pub(crate) fn parse_all_lenient(texts: &[String], option: &str) -> Result<Vec<Matcher>, String> {
    texts
        .iter()
        .map(|t| Matcher::parse_lenient(t).map_err(|e| format!("`{option}`: {e}")))
        .collect()
}

/// The contents of a double-quoted string that must end the matcher.
fn unquote(s: &str) -> Result<Cow<'_, str>, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                if !s[i + 1..].trim().is_empty() {
                    return Err("unexpected text after the closing quote".into());
                }
                return Ok(Cow::Owned(out));
            }
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => {
                    // Regexes need their own escapes (`\d`, `\.`): keep them as written.
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("missing closing quote".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_text_form_reads_back_as_the_same_matcher(
            label in "[a-zA-Z_][a-zA-Z0-9_./-]{0,12}",
            value in "\\PC{0,16}|[\\\\\"\r\n\t\u{1b}\u{7f}a ]{0,8}",
            negative in any::<bool>(),
        ) {
            let op = if negative { Op::NotEqual } else { Op::Equal };
            let m = Matcher::new(&label, op, &value).expect("valid");
            prop_assert_eq!(Matcher::parse(&m.to_string()).expect("reads back"), m.clone());
            prop_assert_eq!(Matcher::parse_lenient(&m.to_string()).expect("reads back"), m);
        }
    }

    #[test]
    fn regex_matchers_keep_their_escapes_through_the_text_form() {
        for value in [r"web-\d+\.example", "tab\there", r"\\", r"\(x\)"] {
            let m = Matcher::new("host", Op::Regex, value).expect("valid");
            assert_eq!(
                Matcher::parse(&m.to_string()).expect("reads back"),
                m,
                "{m}"
            );
        }
    }

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_each_operator_with_bare_and_quoted_values() {
        let cases = [
            ("env = prod", "env", Op::Equal, "prod"),
            ("env=prod", "env", Op::Equal, "prod"),
            ("env != prod", "env", Op::NotEqual, "prod"),
            (r#"host =~ "web-.*""#, "host", Op::Regex, "web-.*"),
            ("host!~db-[0-9]+", "host", Op::NotRegex, "db-[0-9]+"),
            (
                r#"msg = "say \"hi\" \\ now""#,
                "msg",
                Op::Equal,
                r#"say "hi" \ now"#,
            ),
            (r#"ip =~ "10\.0\..*""#, "ip", Op::Regex, r"10\.0\..*"),
            ("team = ", "team", Op::Equal, ""),
            (
                "app.kubernetes.io/name = api",
                "app.kubernetes.io/name",
                Op::Equal,
                "api",
            ),
        ];
        for (text, label, op, value) in cases {
            let got = m(text);
            assert_eq!(
                (got.label.as_str(), got.op, got.value.as_str()),
                (label, op, value),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_matchers_with_the_text_in_the_message() {
        for bad in [
            "env",
            "= prod",
            "env ~ prod",
            r#"env = "prod"#,
            r#"env = "prod" extra"#,
            "host =~ web-(",
            r#""env" = prod"#,
        ] {
            let e = Matcher::parse(bad).expect_err(bad);
            assert!(e.contains("matcher"), "{bad}: {e}");
        }
    }

    #[test]
    fn equality_operators_treat_a_missing_label_as_empty() {
        assert!(m("env = prod").matches(Some("prod")));
        assert!(!m("env = prod").matches(Some("production")));
        assert!(!m("env = prod").matches(None));
        assert!(m("env != prod").matches(Some("dev")));
        assert!(m("env != prod").matches(None));
        assert!(!m("env != prod").matches(Some("prod")));
        assert!(m(r#"env = """#).matches(None));
    }

    #[test]
    fn regexes_are_anchored_at_both_ends() {
        let re = m(r#"host =~ "web-.*""#);
        assert!(re.matches(Some("web-1")));
        assert!(!re.matches(Some("my-web-1")), "anchored at the start");
        let re = m("host =~ web-[0-9]");
        assert!(re.matches(Some("web-7")));
        assert!(!re.matches(Some("web-77")), "anchored at the end");
        // Alternation stays inside the anchors.
        let re = m("env =~ prod|staging");
        assert!(re.matches(Some("staging")));
        assert!(!re.matches(Some("prod-eu")));
        assert!(!re.matches(Some("xstaging")));
        let not = m("host !~ web-.*");
        assert!(!not.matches(Some("web-1")));
        assert!(not.matches(Some("my-web-1")));
        assert!(not.matches(None));
        assert!(m("host =~ .*").matches(None), "absent is the empty string");
    }

    #[test]
    fn label_maps_match_like_single_values() {
        let l: BTreeMap<String, String> = [("alertname", "HighCPU"), ("host", "db1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ok = |text: &str| m(text).matches_labels(&l);
        assert!(ok("alertname=HighCPU"));
        assert!(ok(r#"alertname="HighCPU""#));
        assert!(ok("alertname==HighCPU"));
        assert!(ok("host!=db2"));
        assert!(ok("host=~db[0-9]"));
        assert!(!ok("host=~db"), "anchored: `db` does not match `db1`");
        assert!(ok("host!~web.*"));
        assert!(ok("env="), "a missing label is empty");
        assert!(!ok("env=~.+"));
        let e = Matcher::parse("host").expect_err("no op");
        assert!(e.contains("no operator"), "{e}");
        let e = Matcher::parse("host=~(").expect_err("bad regex");
        assert!(e.contains("invalid regex"), "{e}");
        let e = parse_all_lenient(&["a=1".into(), "b".into()], "matchers").expect_err("one bad");
        assert!(e.starts_with("`matchers`: "), "{e}");
    }

    #[test]
    fn lenient_parsing_takes_unpaired_quotes_as_written() {
        for (text, value) in [
            (r#"a="unterminated"#, r#""unterminated"#),
            (r#"a="x"y"#, r#""x"y"#),
            (r#"a="ok""#, "ok"),
            ("a=plain", "plain"),
        ] {
            assert!(Matcher::parse(text).is_err() || value == "ok" || value == "plain");
            let m = Matcher::parse_lenient(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.value, value, "{text}");
            assert!(m.matches(Some(value)), "{text}");
        }
        let m = Matcher::parse_lenient(r#"a=~".*"#).expect("regex as written");
        assert!(m.matches(Some(r#""x"#)) && !m.matches(Some("x")));
        assert!(
            Matcher::parse_lenient("a").is_err(),
            "still needs an operator"
        );
    }
}
