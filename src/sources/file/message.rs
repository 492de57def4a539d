//! What the stages after framing pass on: a message and the file range it covers.

/// One message (a single line, a line a runtime split and that was joined again, or a
/// multiline group) with the file range it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) text: String,
    pub(crate) offset: u64,
    pub(crate) end: u64,
    /// What a container runtime recorded with the line (`format: cri` or `docker`); a
    /// joined group keeps its first line's.
    pub(crate) meta: Option<Box<LineMeta>>,
}

/// What a container runtime recorded about a line besides its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineMeta {
    /// `stdout` or `stderr`.
    pub(crate) stream: String,
    /// The runtime's RFC 3339 timestamp of the line's first fragment, as written.
    pub(crate) time: Option<String>,
}
