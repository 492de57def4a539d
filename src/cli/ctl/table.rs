//! Plain aligned tables for the terminal: a header row, then one row per item; long
//! cells are cut so a row stays on one line.

use serde_json::Value;

/// Cells longer than this are cut with `…`.
const MAX_CELL: usize = 48;

/// A cell's text: strings as they are, lists joined with `,`, `null` as `-`.
pub(crate) fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    let text = text.replace(['\n', '\t'], " ");
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Prints `rows` under `header`, columns padded to their widest cell.
pub(crate) fn print(header: &[&str], rows: &[Vec<String>]) {
    say(render(header, rows).trim_end());
}

/// Writes a line to stdout. A closed pipe (`| head`) is not an error worth a panic:
/// the rest is dropped.
pub(crate) fn say(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_cells_are_cut_and_flattened() {
        let rows = vec![
            vec![cell(&json!("a")), cell(&json!(["x", "y"]))],
            vec![cell(&json!(null)), cell(&json!("l".repeat(60)))],
        ];
        let text = render(&["NAME", "LIST"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME  LIST");
        assert_eq!(lines[1], "a     x,y");
        assert!(lines[2].starts_with("-     lll") && lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), 6 + MAX_CELL);
    }
}
