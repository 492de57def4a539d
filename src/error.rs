//! The error every layer's builders return: options that cannot become a running part.

/// Why a component (or a piece it is built from: a VRL program, a plugin, a client
/// config) could not be built: a bad option value, a port in use, a VRL error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);
