//! `{{ field.path }}` templates in option values (URLs, topics, file names).
//!
//! A template is parsed once when the component is built; rendering looks fields up
//! in the event with VRL paths. A missing field is an error for that event (the sink
//! dead-letters it) rather than an empty string that would send it somewhere wrong.
//!
//! Values come from events, so they are hostile: a rendering error is always a
//! per-event rejection (dead letter with the reason), never a reason to retry the batch.
//! URL templates ([`Template::check_url`], [`Template::render_url`]) keep the scheme,
//! host and port static and percent-encode every value, so a value cannot change where a
//! request goes or which path it names; paths are confined by the `file` sink.

use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::event::Event;
use crate::event::fields::{self, Reads};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field { path: OwnedValuePath, text: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
    /// The top-level fields its paths start in: an event still in its JSON text has
    /// only those read out of it, not parsed whole (2.6 times the CPU of an http sink
    /// whose URL names one field, in NDJSON → http).
    reads: Reads,
}

impl Template {
    pub(crate) fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template `{source}`"))?;
            let text = after[..end].trim();
            let path = vrl::path::parse_value_path(text)
                .map_err(|e| format!("invalid field path `{text}` in template `{source}`: {e}"))?;
            parts.push(Part::Field {
                path,
                text: text.to_owned(),
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let reads = Reads::of_paths(parts.iter().filter_map(|p| match p {
            Part::Field { path, .. } => Some(path),
            Part::Literal(_) => None,
        }));
        Ok(Self { parts, reads })
    }

    /// Whether the template has no fields (renders the same for every event).
    pub(crate) fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The fields the template reads, as written (`labels.host`).
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { text, .. } => Some(text.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The literal text before the first field: what every rendering starts with.
    pub(crate) fn static_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(s)) => s,
            _ => "",
        }
    }

    /// The text with each field replaced by its value as is (file names, topics).
    pub(crate) fn render(&self, event: &Event) -> Result<String, String> {
        self.render_with(event, |value, out| out.push_str(value))
    }

    /// Checks a URL template: fields may only appear after the host (in the path, the
    /// query or the fragment), so no event can choose the scheme, the server or the port
    /// (SSRF); with the fields filled in, the URL must parse as http(s).
    pub(crate) fn check_url(&self) -> Result<(), String> {
        let prefix = self.static_prefix();
        let authority_end = prefix.find("://").and_then(|i| {
            let after = &prefix[i + 3..];
            after.find(['/', '?', '#']).map(|j| i + 3 + j)
        });
        if authority_end.is_none() && !self.is_static() {
            let first = self
                .parts
                .iter()
                .find_map(|p| match p {
                    Part::Field { text, .. } => Some(text.as_str()),
                    Part::Literal(_) => None,
                })
                .unwrap_or_default();
            return Err(format!(
                "the scheme, host and port of a URL cannot be templated (`{{{{ {first} }}}}` \
                 is before the path); put fields in the path or the query"
            ));
        }
        // URL parsers read `\` as `/` and drop tabs and line breaks, so `/a\..\b` or
        // `/.\t./` would climb past the segment check that runs on the text as written.
        let sample = self.sample();
        if let Some(c) = sample
            .chars()
            .find(|c| matches!(c, '\\' | '\t' | '\r' | '\n'))
        {
            return Err(format!(
                "the URL contains {}, which URL parsers rewrite (a backslash reads as `/`, \
                 tabs and line breaks are dropped); percent-encode it",
                c.escape_debug()
            ));
        }
        let url = url::Url::parse(&sample).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme is `{}`; expected http or https",
                url.scheme()
            ));
        }
        Ok(())
    }

    /// The URL for an event: every value percent-encoded (all but RFC 3986's unreserved
    /// characters), so `/`, `?`, `#`, `%` and `@` in a value stay data. A path segment
    /// that would read as `.` or `..` is an error: URL parsers resolve `%2e%2e` like
    /// `..` (WHATWG URL), so encoding the dots would not stop the traversal.
    pub(crate) fn render_url(&self, event: &Event) -> Result<String, String> {
        let url = self.render_with(event, percent_encode)?;
        let start = url.find("://").map_or(0, |i| i + 3);
        let Some(path_start) = url[start..].find('/').map(|i| start + i) else {
            return Ok(url);
        };
        let path_end = url[path_start..]
            .find(['?', '#'])
            .map_or(url.len(), |i| path_start + i);
        if let Some(segment) = url[path_start..path_end]
            .split('/')
            .find(|s| is_dot_segment(s))
        {
            return Err(format!(
                "the URL path would contain the segment `{segment}`, which climbs the path"
            ));
        }
        // `/tenants/{{ t }}/events` with an empty `t` is `/tenants//events`, which
        // servers that merge slashes (nginx) read as another resource, `/tenants/events`.
        let empties = empty_segments(&url[path_start..path_end]);
        if empties > 0 && empties > self.empty_path_segments() {
            return Err(
                "a template field is empty in the URL path, which would leave an empty path segment"
                    .to_owned(),
            );
        }
        Ok(url)
    }

    /// The template with every field as `x`: the shape of any rendering.
    fn sample(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Field { .. } => "x",
            })
            .collect()
    }

    /// Empty path segments the template itself has (`http://h/a//b`), which no value adds.
    fn empty_path_segments(&self) -> usize {
        let sample = self.sample();
        let start = sample.find("://").map_or(0, |i| i + 3);
        let Some(path_start) = sample[start..].find('/').map(|i| start + i) else {
            return 0;
        };
        let path_end = sample[path_start..]
            .find(['?', '#'])
            .map_or(sample.len(), |i| path_start + i);
        empty_segments(&sample[path_start..path_end])
    }

    fn render_with(
        &self,
        event: &Event,
        mut write: impl FnMut(&str, &mut String),
    ) -> Result<String, String> {
        // A static template names no field and reads nothing.
        let root = fields::root(&self.reads, event);
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field { path, text } => match root.get(path) {
                    None | Some(Value::Null) => {
                        return Err(format!("template field `{text}` is missing from the event"));
                    }
                    Some(v @ (Value::Object(_) | Value::Array(_))) => {
                        let json = serde_json::to_string(v)
                            .map_err(|e| format!("template field `{text}`: {e}"))?;
                        write(&json, &mut out);
                    }
                    Some(v) => write(&v.to_string_lossy(), &mut out),
                },
            }
        }
        Ok(out)
    }
}

/// Empty segments of a URL path (`/a//b` has one; the leading `/` makes none).
fn empty_segments(path: &str) -> usize {
    path.split('/').skip(1).filter(|s| s.is_empty()).count()
}

/// `.`, `..` and their percent-encoded spellings, which URL parsers resolve alike.
/// Read as one or two dots, each `.` or `%2e` in either case; no allocation, since it
/// runs on every segment of every rendered URL.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() && dots < 3 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    rest.is_empty() && (dots == 1 || dots == 2)
}

/// Appends `value` with every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            crate::event::SourceId::intern("t"),
            chrono::Utc::now(),
        )
    }

    #[test]
    fn renders_fields_and_literals() {
        let t =
            Template::parse("http://x/{{ service }}/{{labels.team}}?n={{ n }}").expect("parses");
        assert!(!t.is_static());
        let e = event(r#"{"service":"db","labels":{"team":"core"},"n":3}"#);
        assert_eq!(t.render(&e).expect("renders"), "http://x/db/core?n=3");
        let missing = t
            .render(&event(r#"{"service":"db"}"#))
            .expect_err("missing");
        assert!(missing.contains("`labels.team`"), "{missing}");
        assert!(Template::parse("http://x/").expect("static").is_static());
        assert!(Template::parse("{{ a").is_err());
    }

    #[test]
    fn an_event_in_its_json_text_renders_as_parsed_without_being_parsed() {
        let texts = [
            r#"{"service":"db","labels":{"team":"core","n":[1,2]},"n":3,"big":{"x":[1,{"y":2}]}}"#,
            r#"{"n":3.5,"service":"a b/c","labels":{"team":null}}"#,
            r#"{"ser\u0076ice":"esc","labels":{"team":"t\"q"},"n":-1,"junk":"}"}"#,
            r#"{"labels":{},"service":"","n":true}"#,
            r#"{}"#,
        ];
        let templates = [
            "http://x/{{ service }}/{{labels.team}}?n={{ n }}",
            "{{ labels }}-{{ big }}-{{ labels.n[1] }}",
            "topic.{{ service }}",
            "static",
            "{{ .\"labels\".team }}",
        ];
        for source in templates {
            let t = Template::parse(source).expect("parses");
            for text in texts {
                let kept = Event::kept_json(text);
                let parsed = event(text);
                assert_eq!(t.render(&kept), t.render(&parsed), "{source} on {text}");
                assert_eq!(
                    t.render_url(&kept),
                    t.render_url(&parsed),
                    "{source} on {text}"
                );
                assert!(kept.unparsed_json().is_some(), "{source} parsed {text}");
            }
        }
    }

    #[test]
    fn dot_segments_are_found_in_every_spelling_and_only_those() {
        let dots = [".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2E."];
        let not = [
            "",
            "...",
            "%2e%2e%2e",
            "a",
            ".a",
            "a.",
            "%2",
            "%2f",
            "%2e.a",
            "%%2e",
            "%2ee",
            "%2%2ee",
        ];
        for s in dots {
            assert!(is_dot_segment(s), "{s}");
        }
        for s in not {
            assert!(!is_dot_segment(s), "{s}");
        }
        // Every string of up to 6 of these characters, against decoding then comparing.
        let decoded = |s: &str| {
            let d = s.to_ascii_lowercase().replace("%2e", ".");
            d == "." || d == ".."
        };
        let alphabet = ['.', '%', '2', 'e', 'E', 'a'];
        let mut layer = vec![String::new()];
        for _ in 0..6 {
            layer = layer
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            for s in &layer {
                assert_eq!(is_dot_segment(s), decoded(s), "{s}");
            }
        }
    }

    #[test]
    fn a_template_reads_only_the_fields_its_paths_start_in() {
        let reads = |s: &str| Template::parse(s).expect("parses").reads;
        assert_eq!(
            reads("{{ a.b }}/{{ c }}/{{ a[0] }}"),
            Reads::Fields(vec!["a".into(), "c".into()])
        );
        assert_eq!(reads("static"), Reads::Fields(vec![]));
        // A path that does not start with a field reads the payload whole.
        assert_eq!(reads("{{ . }}"), Reads::Whole);
        assert_eq!(reads("{{ a }}{{ [0] }}"), Reads::Whole);
        let whole = Template::parse("{{ . }}").expect("parses");
        let kept = Event::kept_json(r#"{"a":1}"#);
        assert_eq!(whole.render(&kept).expect("renders"), r#"{"a":1}"#);
    }

    #[test]
    fn url_values_are_percent_encoded_and_cannot_climb() {
        let t = Template::parse("http://h/tenants/{{ tenant }}/events?q={{ q }}").expect("parses");
        t.check_url().expect("fields after the host are fine");
        let e =
            event(r#"{"tenant":"x/../../../internal/delete?confirm=yes#","q":"a&b=c %2e%2e ü"}"#);
        assert_eq!(
            t.render_url(&e).expect("renders"),
            "http://h/tenants/x%2F..%2F..%2F..%2Finternal%2Fdelete%3Fconfirm%3Dyes%23/events\
             ?q=a%26b%3Dc%20%252e%252e%20%C3%BC"
        );
        for dots in [".", ".."] {
            let e = event(&format!(r#"{{"tenant":"{dots}","q":"1"}}"#));
            let why = t.render_url(&e).expect_err("a dot segment");
            assert!(why.contains("climbs"), "{dots}: {why}");
        }
        // An empty value in the path would leave `//`: refused; in the query it is fine.
        let why = t
            .render_url(&event(r#"{"tenant":"","q":"1"}"#))
            .expect_err("an empty path segment");
        assert!(why.contains("empty path segment"), "{why}");
        assert_eq!(
            t.render_url(&event(r#"{"tenant":"t","q":""}"#))
                .expect("renders"),
            "http://h/tenants/t/events?q="
        );
        let own = Template::parse("http://h/a//{{ v }}/").expect("parses");
        assert_eq!(
            own.render_url(&event(r#"{"v":"b"}"#))
                .expect("the template's own"),
            "http://h/a//b/"
        );
        assert!(own.render_url(&event(r#"{"v":""}"#)).is_err());
        // An encoded spelling in a value is data: its `%` is encoded in turn.
        let e = event(r#"{"tenant":"%2e%2E","q":"1"}"#);
        assert_eq!(
            t.render_url(&e).expect("renders"),
            "http://h/tenants/%252e%252E/events?q=1"
        );
        // Dots from a value joined to literal dots are caught on the rendered segment.
        let joined = Template::parse("http://h/a/.{{ v }}/b").expect("parses");
        assert!(joined.render_url(&event(r#"{"v":"."}"#)).is_err());
        assert_eq!(
            joined
                .render_url(&event(r#"{"v":"..."}"#))
                .expect("not a dot segment"),
            "http://h/a/..../b"
        );
        // Dots in the query are data.
        let query = Template::parse("http://h/x?v={{ v }}").expect("parses");
        assert_eq!(
            query.render_url(&event(r#"{"v":".."}"#)).expect("query"),
            "http://h/x?v=.."
        );
    }

    /// `check_url` refuses `url`, saying `why`.
    fn assert_url_refused(url: &str, why: &str) {
        let error = Template::parse(url)
            .expect("parses")
            .check_url()
            .expect_err(url);
        assert!(error.contains(why), "{url:?}: {error}");
    }

    #[test]
    fn templated_scheme_host_port_and_userinfo_are_refused() {
        for url in [
            "http://{{ host }}/x",
            "{{ scheme }}://h/x",
            "http://h:{{ port }}/x",
            "http://h{{ suffix }}/x",
            "http://user:{{ password }}@h/x",
            "{{ url }}",
        ] {
            assert_url_refused(url, "cannot be templated");
        }
        // Rewritten by URL parsers into a climb (red team): `\` is `/`, tabs and line
        // breaks vanish.
        for url in [
            "http://h/a\\..\\in",
            "http://h/a/..\\in",
            "http://h/a/.\t./in",
            "http://h/a/.\n./in",
            "http://h/a/.\r./{{ x }}",
        ] {
            assert_url_refused(url, "URL parsers rewrite");
        }
        let ftp = Template::parse("ftp://h/{{ x }}").expect("parses");
        assert!(ftp.check_url().expect_err("ftp").contains("scheme"));
        Template::parse("http://h?x={{ x }}")
            .expect("parses")
            .check_url()
            .expect("the query may be templated");
    }
}
