//! `sluice schema` and `sluice list`: the pipeline file's JSON Schema, and the component
//! types with their options.

use crate::config::schema;

pub(crate) fn schema() -> u8 {
    match serde_json::to_string_pretty(&schema::pipeline_schema()) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

pub(crate) fn list() -> u8 {
    let catalog = schema::catalog();
    let mut kind = None;
    for t in &catalog.types {
        if kind != Some(t.kind) {
            kind = Some(t.kind);
            println!("{}s:", t.kind.as_str());
        }
        println!("  {}", t.type_name);
        for o in schema::options(t, &catalog.defs) {
            let mut line = format!("    {} ({})", o.name, o.type_label);
            if o.required {
                line.push_str(" required");
            }
            if let Some(d) = &o.default {
                line.push_str(&format!(" default {d}"));
            }
            if !o.summary().is_empty() {
                line.push_str(&format!(": {}", o.summary()));
            }
            println!("{line}");
        }
    }
    0
}
