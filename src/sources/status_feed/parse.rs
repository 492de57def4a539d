//! Feed documents into items: RSS and Atom through feed-rs, Statuspage and GCP incident
//! JSON through serde_json. Nothing here knows a provider's conventions (that is
//! `providers/`); this only turns bytes into entries with text, links and times.
//!
//! Input is untrusted (any server can answer anything): every function returns an
//! error or a value, never panics. `fuzz/fuzz_targets/status_feed.rs` holds it to that.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `format:` what a feed's URL serves.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    /// Sniffed from the body: XML is RSS or Atom, a JSON array is GCP's incidents, a
    /// JSON object with `incidents` is Statuspage's API.
    #[default]
    Auto,
    Rss,
    Atom,
    StatuspageJson,
    GcpIncidentsJson,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Rss => "rss",
            Self::Atom => "atom",
            Self::StatuspageJson => "statuspage_json",
            Self::GcpIncidentsJson => "gcp_incidents_json",
        }
    }

    /// The `Accept` header for this format.
    pub(crate) fn accept(self) -> &'static str {
        match self {
            Self::Rss => "application/rss+xml, application/xml;q=0.9, */*;q=0.5",
            Self::Atom => "application/atom+xml, application/xml;q=0.9, */*;q=0.5",
            Self::StatuspageJson | Self::GcpIncidentsJson => "application/json, */*;q=0.5",
            Self::Auto => {
                "application/atom+xml, application/rss+xml, application/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
            }
        }
    }
}

/// Why a body is not a usable feed. The poll counts it as an error and emits nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("not a valid feed: {0}")]
    Feed(String),
    #[error("expected {expected}, got {got}")]
    WrongFormat {
        expected: &'static str,
        got: &'static str,
    },
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(String),
    #[error("empty body")]
    Empty,
}

/// Which kind of XML or JSON feed an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedKind {
    Rss,
    Atom,
    JsonFeed,
}

impl FeedKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rss => "RSS",
            Self::Atom => "Atom",
            Self::JsonFeed => "JSON Feed",
        }
    }
}

/// One entry of an RSS or Atom feed, as far as status pages use it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Item {
    /// Atom `id` or RSS `guid`; `None` when the feed gives none (Azure's items).
    pub(crate) id: Option<String>,
    pub(crate) title: String,
    pub(crate) link: Option<String>,
    /// When the entry was first published: Atom's `published` only (RSS's `pubDate` is
    /// the time of the latest post, so it is `updated`).
    pub(crate) created: Option<DateTime<Utc>>,
    /// Atom's `updated` (else `published`), RSS's `pubDate`.
    pub(crate) updated: Option<DateTime<Utc>>,
    /// The entry's HTML: Atom `content` (else `summary`), RSS `content:encoded` (else
    /// `description`).
    pub(crate) html: String,
}

impl Item {
    /// The entry as a JSON object, for the event's `raw`.
    pub(crate) fn raw(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "link": self.link,
            "published": self.created.map(|t| t.to_rfc3339()),
            "updated": self.updated.map(|t| t.to_rfc3339()),
            "content": self.html,
        })
    }
}

/// A parsed document.
#[derive(Debug)]
pub(crate) enum Document {
    Feed {
        kind: FeedKind,
        items: Vec<Item>,
    },
    /// Statuspage's `/api/v2/incidents.json` (or `summary.json`): the whole object.
    StatuspageJson(serde_json::Value),
    /// GCP's `incidents.json`: the array's elements.
    GcpIncidents(Vec<serde_json::Value>),
}

impl Document {
    /// How many entries (items or incidents) the document has.
    pub(crate) fn entries(&self) -> usize {
        match self {
            Self::Feed { items, .. } => items.len(),
            Self::StatuspageJson(v) => v
                .get("incidents")
                .and_then(|i| i.as_array())
                .map_or(0, Vec::len),
            Self::GcpIncidents(v) => v.len(),
        }
    }
}

/// Parses `body` as `format`.
pub(crate) fn parse(format: Format, body: &[u8]) -> Result<Document, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match format {
        Format::Rss => feed(body, Some(FeedKind::Rss)),
        Format::Atom => feed(body, Some(FeedKind::Atom)),
        Format::StatuspageJson => statuspage_json(serde_json::from_slice(body)?),
        Format::GcpIncidentsJson => gcp_incidents(serde_json::from_slice(body)?),
        Format::Auto => match first {
            None => Err(ParseError::Empty),
            Some(b'<') => feed(body, None),
            Some(b'[') => gcp_incidents(serde_json::from_slice(body)?),
            Some(b'{') => {
                let value: serde_json::Value = serde_json::from_slice(body)?;
                if value.get("incidents").is_some() {
                    statuspage_json(value)
                } else {
                    feed(body, None)
                }
            }
            Some(_) => Err(ParseError::Shape(
                "not XML or JSON (expected RSS, Atom, Statuspage or GCP incidents JSON)".into(),
            )),
        },
    }
}

fn feed(body: &[u8], expected: Option<FeedKind>) -> Result<Document, ParseError> {
    use feed_rs::model::FeedType;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    // An entry without an id stays without one: feed-rs would otherwise make up a random
    // UUID, a new one each poll, and the incident would look new every time.
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|_, _, _| String::new())
        .sanitize_content(false)
        .build();
    let parsed = parser
        .parse(body)
        .map_err(|e| ParseError::Feed(e.to_string()))?;
    let kind = match parsed.feed_type {
        FeedType::Atom => FeedKind::Atom,
        FeedType::JSON => FeedKind::JsonFeed,
        FeedType::RSS0 | FeedType::RSS1 | FeedType::RSS2 => FeedKind::Rss,
    };
    if let Some(expected) = expected
        && expected != kind
    {
        return Err(ParseError::WrongFormat {
            expected: expected.as_str(),
            got: kind.as_str(),
        });
    }
    let items = parsed
        .entries
        .into_iter()
        .map(|e| {
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or_else(|| e.links.first())
                .map(|l| l.href.trim().to_owned())
                .filter(|l| !l.is_empty());
            let html = e
                .content
                .and_then(|c| c.body)
                .or_else(|| e.summary.map(|s| s.content))
                .unwrap_or_default();
            let (created, updated) = match kind {
                FeedKind::Rss => (None, e.published.or(e.updated)),
                FeedKind::Atom | FeedKind::JsonFeed => (e.published, e.updated.or(e.published)),
            };
            Item {
                id: Some(e.id.trim().to_owned()).filter(|id| !id.is_empty()),
                title: e
                    .title
                    .map(|t| html_to_text(&t.content))
                    .unwrap_or_default(),
                link,
                created,
                updated,
                html,
            }
        })
        .collect();
    Ok(Document::Feed { kind, items })
}

fn statuspage_json(value: serde_json::Value) -> Result<Document, ParseError> {
    match value.get("incidents") {
        Some(serde_json::Value::Array(_)) => Ok(Document::StatuspageJson(value)),
        Some(_) => Err(ParseError::Shape(".incidents: expected an array".into())),
        None => Err(ParseError::Shape(
            ".incidents: missing (expected Statuspage's /api/v2/incidents.json)".into(),
        )),
    }
}

fn gcp_incidents(value: serde_json::Value) -> Result<Document, ParseError> {
    match value {
        serde_json::Value::Array(items) => Ok(Document::GcpIncidents(items)),
        _ => Err(ParseError::Shape(
            "expected an array of incidents (GCP's incidents.json)".into(),
        )),
    }
}

/// A timestamp in RFC 3339 (JSON APIs); `None` for anything else.
pub(crate) fn timestamp(v: Option<&serde_json::Value>) -> Option<DateTime<Utc>> {
    let text = v?.as_str()?.trim();
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Readable text from an HTML fragment: tags dropped (block ends become line breaks),
/// entities decoded, runs of spaces collapsed.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut raw = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        raw.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('>') else {
            // A lone `<` is text, not a tag.
            raw.push_str(after);
            rest = "";
            break;
        };
        let tag = after[1..close].trim_start_matches('/').to_ascii_lowercase();
        let name = tag.split(|c: char| !c.is_ascii_alphanumeric()).next();
        raw.push(match name {
            Some("br" | "p" | "div" | "li" | "ul" | "hr" | "tr") => '\n',
            _ => ' ',
        });
        rest = &after[close + 1..];
    }
    raw.push_str(rest);
    let decoded = decode_entities(&raw);
    let mut out = String::with_capacity(decoded.len());
    for line in decoded.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&words.join(" "));
    }
    out
}

/// Decodes the named entities status pages use and every numeric one.
pub(crate) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let end = after
            .char_indices()
            .take(12)
            .find(|(_, c)| *c == ';')
            .map(|(i, _)| i);
        let decoded = end.and_then(|end| {
            let name = &after[1..end];
            let ch = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let code = if let Some(hex) =
                        name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse::<u32>().ok())
                    };
                    code.and_then(char::from_u32)
                }
            }?;
            Some((ch, end))
        });
        match decoded {
            Some((ch, end)) => {
                out.push(ch);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text(
                "<p> <strong>Resolved</strong> - We&apos;re &amp; done &#8212; ok&#x21;</p><p>next</p>"
            ),
            "Resolved - We're & done \u{2014} ok!\nnext"
        );
        assert_eq!(html_to_text("a < b & c"), "a < b & c");
        assert_eq!(html_to_text("x <unclosed"), "x <unclosed");
        assert_eq!(decode_entities("&bogus; &#xZZ; &"), "&bogus; &#xZZ; &");
    }

    #[test]
    fn formats_are_sniffed_and_checked() {
        let atom = br#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><id>x</id><title>t</title><entry><id>e1</id><title>One</title><updated>2026-07-09T06:01:43Z</updated></entry></feed>"#;
        match parse(Format::Auto, atom) {
            Ok(Document::Feed { kind, items }) => {
                assert_eq!(kind, FeedKind::Atom);
                assert_eq!(items[0].id.as_deref(), Some("e1"));
                assert_eq!(items[0].title, "One");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(Format::Rss, atom),
            Err(ParseError::WrongFormat {
                expected: "RSS",
                got: "Atom"
            })
        ));
        assert!(matches!(
            parse(Format::Auto, b"[]"),
            Ok(Document::GcpIncidents(v)) if v.is_empty()
        ));
        assert!(matches!(
            parse(Format::Auto, br#"{"page": {}, "incidents": []}"#),
            Ok(Document::StatuspageJson(_))
        ));
        assert!(matches!(
            parse(Format::StatuspageJson, br#"{"incidents": 3}"#),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(
            parse(Format::Auto, b"  \n"),
            Err(ParseError::Empty)
        ));
        assert!(matches!(
            parse(Format::Auto, b"<html><body>Bad gateway</body></html>"),
            Err(ParseError::Feed(_))
        ));
        assert!(
            parse(
                Format::Auto,
                b"<rss version=\"2.0\"><channel><item><title>x"
            )
            .is_err()
        );
    }

    #[test]
    fn rss_items_without_guid_keep_no_id_and_pub_date_is_updated() {
        let rss = br#"<rss version="2.0"><channel><title>t</title><item><title>VM - East US</title><description>d</description><pubDate>Fri, 23 Aug 2019 02:39:42 PDT</pubDate></item></channel></rss>"#;
        let Ok(Document::Feed { items, .. }) = parse(Format::Rss, rss) else {
            panic!("parses")
        };
        assert_eq!(items[0].id, None);
        assert_eq!(items[0].created, None);
        assert_eq!(
            items[0].updated.map(|t| t.to_rfc3339()),
            Some("2019-08-23T09:39:42+00:00".into()),
            "PDT is UTC-7"
        );
        assert_eq!(items[0].html, "d");
    }
}
