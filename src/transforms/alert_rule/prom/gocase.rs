//! Go's `strings.ToUpper`, `strings.ToLower` and `strings.Title`, which map each rune to
//! one rune (Unicode's simple case mappings). Rust's `char::to_uppercase` uses the full
//! mappings, which can give several characters (`ß` → `SS`, `ﬁ` → `FI`), so templates
//! that Prometheus renders as `STRAßE` would differ.

/// Go's `unicode.ToUpper`.
fn upper(c: char) -> char {
    if let Some(t) = greek_iota_subscript(c) {
        return t;
    }
    let mut full = c.to_uppercase();
    match (full.next(), full.next()) {
        (Some(u), None) => u,
        // No single-rune mapping: Go leaves the rune as it is.
        _ => c,
    }
}

/// Go's `unicode.ToLower`.
fn lower(c: char) -> char {
    if c == '\u{130}' {
        // `İ` lowers to `i` plus a combining dot in full; its simple mapping is `i`.
        return 'i';
    }
    let mut full = c.to_lowercase();
    match (full.next(), full.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's `unicode.ToTitle`: the upper case, except for the four Latin digraphs, whose
/// title case is their own letter (`ǆ` → `ǅ`).
fn title_case(c: char) -> char {
    match c {
        '\u{1C4}'..='\u{1C6}' => '\u{1C5}',
        '\u{1C7}'..='\u{1C9}' => '\u{1C8}',
        '\u{1CA}'..='\u{1CC}' => '\u{1CB}',
        '\u{1F1}'..='\u{1F3}' => '\u{1F2}',
        c => upper(c),
    }
}

/// Greek letters with iota subscript: their simple upper (and title) case is the
/// letter with prosgegrammeni, one rune; the full upper case spells out the iota.
fn greek_iota_subscript(c: char) -> Option<char> {
    let n = u32::from(c);
    let mapped = match n {
        0x1F80..=0x1FAF if n & 0xF < 8 => n + 8,
        0x1F80..=0x1FAF => n,
        0x1FB3 => 0x1FBC,
        0x1FC3 => 0x1FCC,
        0x1FF3 => 0x1FFC,
        _ => return None,
    };
    char::from_u32(mapped)
}

pub(crate) fn to_upper(s: &str) -> String {
    s.chars().map(upper).collect()
}

pub(crate) fn to_lower(s: &str) -> String {
    s.chars().map(lower).collect()
}

/// Go's `strings.Title`: a rune after a separator is title-cased. In ASCII everything
/// but letters, digits and `_` separates words (so `o'neil` → `O'Neil`); beyond ASCII
/// only white space does.
pub(crate) fn title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if separator(prev) { title_case(c) } else { c };
            prev = c;
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What promtool 2.42's `test rules` rendered for the same strings.
    #[test]
    fn case_mappings_are_gos() {
        assert_eq!(
            title("héllo wörld ǆx o'neil a-b ﬁx"),
            "Héllo Wörld ǅx O'Neil A-B ﬁx"
        );
        assert_eq!(to_upper("straße ǆ ﬁ"), "STRAßE Ǆ ﬁ");
        assert_eq!(to_lower("ÀÉ İ"), "àé i");
        assert_eq!(to_upper("ᾳ ᾀ"), "ᾼ ᾈ");
        assert_eq!(title("snake_case 3d x—y"), "Snake_case 3d X—y");
    }
}
