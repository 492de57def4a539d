//! Configuration errors: every one names the file, the position and, when it is about a
//! component, the component id.

use std::fmt;
use std::path::PathBuf;

/// A position in a pipeline file (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    pub(crate) file: PathBuf,
    pub(crate) line: u64,
    pub(crate) column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem found in a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) position: Position,
    /// e.g. `sinks.out`
    pub(crate) component: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.position)?;
        if let Some(component) = &self.component {
            write!(f, "component `{component}`: ")?;
        }
        // Messages may quote option values (an invalid URL, a library's error text);
        // every path that shows one (validate, the reload log, `/health`) prints this.
        // Lines after the first (a VRL diagnostic) are indented, so that in a list of
        // errors they read as part of this one.
        let message = crate::redact::redact(&self.message);
        let mut lines = message.split('\n');
        f.write_str(lines.next().unwrap_or_default())?;
        for line in lines {
            if line.is_empty() {
                f.write_str("\n")?;
            } else {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found while loading or validating, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}
