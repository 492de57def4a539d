//! Helpers that source types share; not source types themselves.

pub(crate) mod handover;
pub(crate) mod server;
