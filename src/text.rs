//! Cutting text to a bound without splitting a character: for what goes into logs,
//! answers and vendor fields with length limits; and the closest of some words, for
//! "did you mean" hints.

/// At most `max` characters of `s`.
pub(crate) fn prefix_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn prefix_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to `max` characters, ending in `…` when it was cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let kept = prefix_chars(s, max);
    if kept.len() == s.len() {
        s.to_owned()
    } else {
        format!("{kept}…")
    }
}

/// A regex error on one line: the regex crate renders syntax errors over four lines
/// (the pattern, a caret, then the reason), which read as separate errors in a list.
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let regex::Error::Syntax(text) = e else {
        return e.to_string();
    };
    let lines: Vec<&str> = text.lines().collect();
    let reason = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(text.as_str());
    let caret = lines
        .iter()
        .find(|l| l.trim() == "^" || l.trim_start().starts_with('^'))
        .and_then(|l| l.find('^'))
        .map(|at| at.saturating_sub(4) + 1);
    match caret {
        Some(at) => format!("{reason} (at character {at})"),
        None => reason.to_owned(),
    }
}

/// The candidate closest to `word` by edit distance, if one is close enough to be a
/// likely typo: within 2 edits, or a third of the word's length for long words.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let bound = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, _)| *d <= bound)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn regex_errors_fit_on_one_line_and_names_are_suggested() {
        let pattern = String::from("ab(c");
        let e = regex::Regex::new(&pattern).expect_err("unclosed");
        assert_eq!(regex_error(&e), "unclosed group (at character 3)");
        assert_eq!(closest("srcc", ["src", "sink"]), Some("src"));
        assert_eq!(closest("zzzz", ["src", "sink"]), None);
    }

    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(prefix_chars("héllo", 2), "hé");
        assert_eq!(prefix_bytes("héllo", 2), "h");
        assert_eq!(prefix_bytes("hé", 10), "hé");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
