//! Error messages a reader can act on: the parsers' wording (serde's, the YAML
//! library's) completed with what to write instead. A misspelled option gets the
//! closest valid one; a duration without a unit gets examples; Vector's
//! `encoding: { codec: … }` gets sluice's form; library advice that means nothing to
//! a pipeline's author is replaced.

/// `message` with a hint added or its wording replaced where one applies.
pub(super) fn improve(message: &str) -> String {
    if let Some(key) = message
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split(", set DuplicateKeyPolicy").next())
    {
        return format!(
            "duplicate key `{key}`: a key may appear only once in a mapping (component ids too)"
        );
    }
    for kind in ["unknown field", "unknown variant"] {
        if let Some(rest) = message.strip_prefix(kind) {
            return with_suggestion(message, kind, rest);
        }
    }
    if message.contains("expected a duration") {
        return format!("{message}: a number with a unit, e.g. `30s`, `5m`, `1h30m` or `500ms`");
    }
    message.to_owned()
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`",
/// "expected `a`") with the closest of the expected names.
fn with_suggestion(message: &str, kind: &str, rest: &str) -> String {
    let Some((word, expected)) = rest
        .trim_start()
        .strip_prefix('`')
        .and_then(|r| r.split_once('`'))
    else {
        return message.to_owned();
    };
    if kind == "unknown variant" && word == "codec" {
        return format!(
            "{message}; sluice's `encoding` is one word (`encoding: json`), not Vector's `{{ codec: … }}`"
        );
    }
    let names: Vec<&str> = expected
        .split([',', ' ', '`'])
        .map(str::trim)
        .filter(|n| !n.is_empty() && !matches!(*n, "expected" | "one" | "of" | "or"))
        .collect();
    match crate::text::closest(word, names) {
        Some(name) => format!("{message}; did you mean `{name}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::improve;

    #[test]
    fn misspelled_options_and_variants_get_the_closest_name() {
        assert_eq!(
            improve("unknown field `rat`, expected one of rate, count, format, batch_size"),
            "unknown field `rat`, expected one of rate, count, format, batch_size; did you mean `rate`?"
        );
        assert_eq!(
            improve("unknown variant `jsn`, expected `json` or `text`"),
            "unknown variant `jsn`, expected `json` or `text`; did you mean `json`?"
        );
        assert_eq!(
            improve("unknown field `zzzzzz`, expected one of rate, count"),
            "unknown field `zzzzzz`, expected one of rate, count",
            "nothing close: no guess"
        );
    }

    #[test]
    fn vector_encodings_durations_and_duplicate_keys_are_explained() {
        assert!(
            improve("unknown variant `codec`, expected one of json, text")
                .contains("not Vector's `{ codec: … }`")
        );
        assert_eq!(
            improve("invalid value: string \"300\", expected a duration"),
            "invalid value: string \"300\", expected a duration: a number with a unit, e.g. `30s`, `5m`, `1h30m` or `500ms`"
        );
        let duplicate =
            improve("duplicate mapping key: src, set DuplicateKeyPolicy in Options if acceptable");
        assert_eq!(
            duplicate,
            "duplicate key `src`: a key may appear only once in a mapping (component ids too)"
        );
    }
}
