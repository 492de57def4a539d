//! Helpers that source types share; not source types themselves.

pub(crate) mod accept;
pub(crate) mod handover;
pub(crate) mod http_server;
