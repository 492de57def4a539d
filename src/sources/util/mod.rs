//! Helpers that source types share; not source types themselves.

pub mod http_server;
