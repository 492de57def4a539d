//! `fluent`: fluentd's Forward protocol (v1) in, over TCP or TLS, so applications that
//! log through fluent-logger libraries, Fluent Bit's or fluentd's `forward` output, or
//! Docker's `fluentd` log driver send to sluice unchanged.
//!
//! Each record becomes an event with `tag` (also in `%fluent.tag`) and `timestamp` (the
//! record's time, nanoseconds kept) set from the protocol, over the record's own fields of
//! those names; `%fluent.peer` is the client's address. A message with a `chunk` option
//! is answered `{"ack": chunk}` only once every one of its events was delivered (or
//! refused for good by a sink and dead-lettered); otherwise the connection is closed
//! without an ack, and the client sends the chunk again. Without `chunk`, a client gets
//! TCP backpressure and no answer, as the protocol says.
//!
//! Every byte is untrusted: a message is bounded in size (as received and once
//! decompressed), entries, nesting and decoded memory (charged to `memory_limit`, or to
//! the listener's own budget), connections are bounded in number and time, and a
//! malformed message closes its connection with the reason logged and counted
//! (`sluice_fluent_connection_errors_total{reason}`), while the other connections go on.

mod closed;
mod connection;
mod read;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::buffer::MemoryBudget;
use crate::buffer::cost::LISTENER_DECODE_BUDGET;
use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::net::accept::accept_until;
use crate::net::{ServerTls, tls_acceptor};

/// Takes fluentd's Forward protocol from fluent-logger, Fluent Bit, fluentd and Docker.
/// All four modes (Message, Forward, PackedForward, CompressedPackedForward), acks
/// after delivery, the shared-key handshake and TLS.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FluentSourceConfig {
    /// Address to listen on (default `0.0.0.0:24224`, fluentd's port).
    #[serde(default = "default_address")]
    pub(crate) address: String,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub(crate) tls: Option<ServerTls>,
    /// Require the handshake (`HELO`, `PING`, `PONG`) with this shared key: a client that
    /// does not prove it knows the key is told so and disconnected. Unset: no handshake.
    pub(crate) shared_key: Option<String>,
    /// With `shared_key`, also require one of these users to log in.
    #[serde(default)]
    pub(crate) users: Vec<FluentUser>,
    /// The hostname this source gives in the handshake (default: the machine's).
    pub(crate) self_hostname: Option<String>,
    /// Largest message, as received and once decompressed (default 8 MiB); a larger one
    /// closes its connection. Under `memory_limit`, decoding a message takes about
    /// three times its size plus 1 KB per record (a gzip message is first charged
    /// `max_message_bytes` to inflate); one that needs more than `memory_limit` is
    /// refused for memory every time, so keep the clients' chunks well under it.
    #[serde(default = "default_max_message_bytes")]
    pub(crate) max_message_bytes: usize,
    /// Most records in one message (default 100000).
    #[serde(default = "default_max_entries")]
    pub(crate) max_entries_per_message: usize,
    /// Deepest nesting of arrays and maps in a message (default 64, at most 100).
    #[serde(default = "default_max_depth")]
    pub(crate) max_depth: usize,
    /// Most connections open at once (default 1024); more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// How long the handshake, or a message once its first byte arrived, may take
    /// (default 30s): a client that sends slower is disconnected.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub(crate) read_timeout: Duration,
    /// How long a connection may go without a message of events before it is closed
    /// (default 5m); heartbeats do not count. Clients reconnect; this is not an error.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// How long a message with a `chunk` option waits for its events' delivery (default
    /// 30s). Past it the connection is closed without an ack and the client sends the
    /// chunk again; the events already in the pipeline are still delivered, so the
    /// resent chunk may duplicate them (at least once).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub(crate) ack_timeout: Duration,
}

/// A user of the handshake's user authentication.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FluentUser {
    /// The user's name.
    pub(crate) username: String,
    /// The user's password (use a `${VARIABLE}`).
    pub(crate) password: String,
}

/// The deepest `max_depth` allowed.
const MAX_DEPTH: usize = 100;

fn default_address() -> String {
    "0.0.0.0:24224".into()
}
fn default_max_message_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_entries() -> usize {
    100_000
}
fn default_max_depth() -> usize {
    64
}
fn default_max_connections() -> usize {
    1024
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

impl SourceConfig for FluentSourceConfig {
    fn type_name(&self) -> &'static str {
        "fluent"
    }

    fn check(&self) -> Result<(), BuildError> {
        let zero = |what: &str| Err(BuildError(format!("`{what}` must be above zero")));
        if self.max_message_bytes == 0 {
            return zero("max_message_bytes");
        }
        if self.max_entries_per_message == 0 {
            return zero("max_entries_per_message");
        }
        // Decoding recurses once per level: the cap keeps a deep message off the
        // stack's edge.
        if !(3..=MAX_DEPTH).contains(&self.max_depth) {
            return Err(BuildError(format!(
                "`max_depth` must be from 3 (a message is [tag, [[time, record]]]) to {MAX_DEPTH}"
            )));
        }
        if self.max_connections == 0 {
            return zero("max_connections");
        }
        for (what, d) in [
            ("read_timeout", self.read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("ack_timeout", self.ack_timeout),
        ] {
            if d.is_zero() {
                return Err(BuildError(format!("`{what}` must be longer than 0s")));
            }
        }
        // An unset `${VAR}` would otherwise let anyone through.
        if self.shared_key.as_deref().is_some_and(blank) {
            return Err(BuildError(
                "`shared_key` is empty (is its variable unset?): an empty secret is refused".into(),
            ));
        }
        if !self.users.is_empty() && self.shared_key.is_none() {
            return Err(BuildError(
                "`users` needs `shared_key`: users log in during the shared-key handshake".into(),
            ));
        }
        for u in &self.users {
            if u.username.is_empty() {
                return Err(BuildError("`users`: a `username` is empty".into()));
            }
            if blank(&u.password) {
                return Err(BuildError(format!(
                    "`users`: the password of `{}` is empty (is its variable unset?)",
                    u.username
                )));
            }
        }
        if let Some(tls) = &self.tls {
            tls_acceptor(tls).map_err(BuildError)?;
        }
        Ok(())
    }

    fn listen_address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let tls = self
                .tls
                .as_ref()
                .map(tls_acceptor)
                .transpose()
                .map_err(BuildError)?;
            let listener = cx
                .listeners
                .bind(&self.address)
                .map_err(|e| BuildError(format!("cannot listen on {}: {e}", self.address)))?;
            let local: SocketAddr = listener
                .local_addr()
                .map_err(|e| BuildError(format!("cannot read the bound address: {e}")))?;
            let hostname = self.self_hostname.clone().unwrap_or_else(|| {
                hostname::get()
                    .map_or_else(|_| "sluice".into(), |h| h.to_string_lossy().into_owned())
            });
            // Without a global memory_limit, the listener still bounds what its messages
            // hold while they are read and decoded.
            let budget = cx
                .out
                .budget()
                .unwrap_or_else(|| MemoryBudget::new(LISTENER_DECODE_BUDGET));
            let shared = Arc::new(connection::Shared {
                id: cx.id,
                out: Mutex::new(cx.out),
                metrics: Arc::clone(&cx.metrics),
                latency: Arc::clone(cx.telemetry.latency()),
                budget,
                turn: Default::default(),
                config: self.clone(),
                hostname,
                open: cx.metrics.gauge("sluice_fluent_connections", &[]),
                connections: std::sync::Mutex::new(0),
            });
            tracing::info!(component_id = %cx.id, address = %local, tls = tls.is_some(), handshake = self.shared_key.is_some(), "fluent listening");
            let stop = cx.shutdown;
            let max_connections = Some(self.max_connections);
            Ok(Box::pin(async move {
                accept_until(listener, stop.clone(), max_connections, |stream, peer| {
                    let (shared, tls, stop) = (Arc::clone(&shared), tls.clone(), stop.clone());
                    connection::accept(stream, peer, tls, shared, stop)
                })
                .await;
                Ok::<(), ComponentError>(())
            }) as ComponentTask)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> FluentSourceConfig {
        serde_saphyr::from_str(yaml).expect("config")
    }

    #[test]
    fn options_that_would_open_the_door_are_refused() {
        let err = |yaml: &str| config(yaml).check().expect_err(yaml).0;
        assert!(err("max_depth: 1000").contains("to 100"));
        assert!(err("shared_key: ' '").contains("empty"));
        assert!(err("users: [{username: a, password: b}]").contains("needs `shared_key`"));
        assert!(
            err("shared_key: k\nusers: [{username: a, password: ''}]")
                .contains("password of `a` is empty")
        );
        assert!(config("shared_key: k\nmax_depth: 100").check().is_ok());
    }
}
