//! `syslog`: syslog messages in, RFC 5424 and RFC 3164, over UDP, TCP or TLS, so
//! rsyslog, syslog-ng, `logger`, network devices and appliances send to sluice unchanged.
//!
//! Each message becomes an event: `message`, `timestamp` (the message's, else the time
//! it arrived), `hostname`, `appname`, `procid`, `msgid`, `facility` and `severity` (by
//! name: `local4`, `notice`), `version` (5424), `structured_data` (`{id: {param:
//! value}}`) and `source_ip`. Over TCP, messages are framed by octet counting or by
//! newlines (RFC 6587), told apart per message.
//!
//! Syslog has no acknowledgements: TCP senders get backpressure (sluice stops reading
//! while the pipeline is full) and UDP datagrams that arrive while it is full wait in
//! the socket's buffer, then are dropped by the kernel. A reload that leaves the source
//! unchanged does not touch it. One that changes it (or its certificate) reads the same
//! UDP socket and listens on the same TCP socket, so nothing is refused; but an open TCP
//! connection is read until its sender pauses (at most a second) and then closed, and
//! what that sender wrote in its last moments, or writes before it notices the close,
//! is lost: the protocol gives it no way to know. Senders that must not lose a message
//! need a protocol with acknowledgements (the `fluent` source, or RELP in front).
//!
//! Every byte is untrusted: a message over `max_length` is skipped and counted, the
//! number of connections and their idle time are bounded, and TLS handshakes have a
//! deadline.

mod frame;
mod parse;
mod receive;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SourceConfig, SourceContext,
};
use crate::net::accept::accept_until;
use crate::net::{ServerTls, tls_acceptor};

pub(crate) use frame::Decoder;
pub(crate) use parse::event_value;

/// Receives syslog (RFC 5424 and 3164) over UDP, TCP or TLS.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyslogSourceConfig {
    /// `tcp` (optionally with `tls`) or `udp`.
    pub(crate) mode: Mode,
    /// Address to listen on (default `0.0.0.0:514`).
    #[serde(default = "default_address")]
    pub(crate) address: String,
    /// Serve TLS (RFC 5425) with this certificate chain and key (PEM files); `tcp` only.
    pub(crate) tls: Option<ServerTls>,
    /// Longest message in bytes (default 102400); a longer one is skipped and counted as
    /// an error. Each TCP connection may hold up to this much of a message being read,
    /// so memory grows to `max_connections` × `max_length` at worst.
    #[serde(default = "default_max_length")]
    pub(crate) max_length: usize,
    /// Most TCP connections open at once (default 1024); more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// How long a TCP connection may stay silent before it is closed (default 5m). A
    /// sender that trickles a byte at a time keeps its connection (and its slot of
    /// `max_connections`).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// How long a TLS handshake may take (default 10s).
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub(crate) handshake_timeout: Duration,
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// A stream of messages per connection (octet counting or newlines); with `tls`, TLS.
    Tcp,
    /// One message per datagram.
    Udp,
}

/// UDP datagrams are at most this long.
const MAX_DATAGRAM: usize = 65_535;
/// The largest `max_length` accepted.
const MAX_LENGTH: usize = 16 * 1024 * 1024;

fn default_address() -> String {
    "0.0.0.0:514".into()
}
fn default_max_length() -> usize {
    102_400
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SourceConfig for SyslogSourceConfig {
    fn type_name(&self) -> &'static str {
        "syslog"
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.max_length == 0 || self.max_length > MAX_LENGTH {
            return Err(BuildError(format!(
                "`max_length` must be from 1 to {MAX_LENGTH} bytes"
            )));
        }
        if self.max_connections == 0 {
            return Err(BuildError("`max_connections` must be above zero".into()));
        }
        if self.idle_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return Err(BuildError(
                "`idle_timeout` and `handshake_timeout` must be longer than 0s".into(),
            ));
        }
        match (&self.tls, self.mode) {
            (Some(_), Mode::Udp) => Err(BuildError(
                "`tls` needs `mode: tcp` (syslog over DTLS is not supported)".into(),
            )),
            (Some(tls), Mode::Tcp) => tls_acceptor(tls).map(drop).map_err(BuildError),
            (None, _) => Ok(()),
        }
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.tls
            .iter()
            .flat_map(|t| [t.cert.clone(), t.key.clone()])
            .collect()
    }

    fn listen_address(&self) -> Option<&str> {
        (self.mode == Mode::Tcp).then_some(self.address.as_str())
    }

    fn udp_address(&self) -> Option<&str> {
        (self.mode == Mode::Udp).then_some(self.address.as_str())
    }

    fn build(&self, cx: SourceContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let config = self.clone();
            let bind_error =
                |e: std::io::Error| BuildError(format!("cannot listen on {}: {e}", self.address));
            if self.mode == Mode::Udp {
                let socket = cx.listeners.bind_udp(&self.address).map_err(bind_error)?;
                tracing::info!(component_id = %cx.id, address = %self.address, "syslog listening (udp)");
                return Ok(Box::pin(receive::udp(config, socket, cx)) as ComponentTask);
            }
            let tls = self
                .tls
                .as_ref()
                .map(tls_acceptor)
                .transpose()
                .map_err(BuildError)?;
            let listener = cx.listeners.bind(&self.address).map_err(bind_error)?;
            let local: SocketAddr = listener
                .local_addr()
                .map_err(|e| BuildError(format!("cannot read the bound address: {e}")))?;
            tracing::info!(component_id = %cx.id, address = %local, tls = tls.is_some(), "syslog listening (tcp)");
            let stop = cx.shutdown.clone();
            let shared = Arc::new(receive::Shared {
                id: cx.id,
                metrics: Arc::clone(&cx.metrics),
                latency: Arc::clone(cx.telemetry.latency()),
                out: Mutex::new(cx.out),
                config,
            });
            let max_connections = Some(self.max_connections);
            Ok(Box::pin(async move {
                accept_until(listener, stop.clone(), max_connections, |stream, peer| {
                    let (shared, tls, stop) = (Arc::clone(&shared), tls.clone(), stop.clone());
                    receive::connection(stream, peer, tls, shared, stop)
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

    fn config(yaml: &str) -> SyslogSourceConfig {
        serde_saphyr::from_str(yaml).expect("config")
    }

    #[test]
    fn options_that_cannot_work_are_refused() {
        let err = |yaml: &str| config(yaml).check().expect_err(yaml).0;
        assert!(err("mode: udp\ntls: {cert: c.pem, key: k.pem}").contains("needs `mode: tcp`"));
        assert!(err("mode: tcp\nmax_length: 0").contains("`max_length`"));
        assert!(err("mode: tcp\nmax_connections: 0").contains("`max_connections`"));
        let udp = config("mode: udp\naddress: 127.0.0.1:5514");
        assert_eq!(udp.udp_address(), Some("127.0.0.1:5514"));
        assert_eq!(udp.listen_address(), None);
    }
}
