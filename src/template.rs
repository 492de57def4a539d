//! `{{ field.path }}` templates in option values (URLs, topics, file names).
//!
//! A template is parsed once when the component is built; rendering looks fields up
//! in the event with VRL paths. A missing field is an error for that event (the sink
//! dead-letters it) rather than an empty string that would send it somewhere wrong.

use vrl::path::OwnedValuePath;
use vrl::value::Value;

use crate::event::Event;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field { path: OwnedValuePath, text: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, String> {
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
        Ok(Self { parts })
    }

    /// Whether the template has no fields (renders the same for every event).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    pub fn render(&self, event: &Event) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field { path, text } => match event.value.get(path) {
                    None | Some(Value::Null) => {
                        return Err(format!("template field `{text}` is missing from the event"));
                    }
                    Some(v @ (Value::Object(_) | Value::Array(_))) => {
                        out.push_str(&serde_json::to_string(v).unwrap_or_default());
                    }
                    Some(v) => out.push_str(&v.to_string_lossy()),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(json: &str) -> Event {
        Event::new(
            serde_json::from_str(json).expect("json"),
            Arc::from("t"),
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
}
