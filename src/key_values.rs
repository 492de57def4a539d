//! Options that are a map or a `Name=value,Name2=value2` string, the form older HTTP
//! event loggers took
//! (`headers`, `extra_args`).

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::BuildError;

/// A map, or a `Name=value,Name2=value2` string.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum KeyValues {
    Map(IndexMap<String, serde_json::Value>),
    Text(String),
}

impl Default for KeyValues {
    fn default() -> Self {
        Self::Map(IndexMap::new())
    }
}

impl KeyValues {
    /// The pairs in order, values as JSON.
    pub(crate) fn pairs(&self, what: &str) -> Result<Vec<(String, serde_json::Value)>, BuildError> {
        match self {
            Self::Map(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Self::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => Ok((
                        k.trim().to_owned(),
                        serde_json::Value::String(v.trim().to_owned()),
                    )),
                    _ => Err(BuildError(format!(
                        "`{what}`: `{pair}` is not `name=value`"
                    ))),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_parse_both_forms() {
        let text = KeyValues::Text("X-A=1, X-B = two ,".into());
        assert_eq!(
            text.pairs("headers").expect("valid"),
            vec![("X-A".into(), "1".into()), ("X-B".into(), "two".into())]
        );
        assert!(KeyValues::Text("novalue".into()).pairs("headers").is_err());
    }
}
