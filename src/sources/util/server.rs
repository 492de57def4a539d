//! What the sources that serve HTTP requests and answer them after delivery share
//! (`otlp`, `prometheus_remote_write`): checking the server options, and binding the
//! listener with its TLS and the way into the pipeline.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handover::Intake;
use crate::component::{BuildError, SourceContext};
use crate::net::{ServerAuth, ServerTls, tls_acceptor};

/// The server options every such source has.
pub(crate) struct ServerOptions<'a> {
    /// `ip:port`.
    pub(crate) address: &'a str,
    /// An address to show in the error (`0.0.0.0:4318`).
    pub(crate) example: &'a str,
    pub(crate) auth: Option<&'a ServerAuth>,
    pub(crate) tls: Option<&'a ServerTls>,
    /// The source's limits and timeouts: each must be above zero.
    pub(crate) limits: Vec<usize>,
    pub(crate) timeouts: Vec<Duration>,
}

impl ServerOptions<'_> {
    /// Refuses an address that is not `ip:port`, a zero limit or timeout, an empty
    /// secret, and TLS files that do not load.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(BuildError(format!(
                "`address` `{}` must be ip:port (e.g. {})",
                self.address, self.example
            )));
        }
        if self.limits.contains(&0) || self.timeouts.iter().any(Duration::is_zero) {
            return Err(BuildError(
                "the `max_*` limits and the timeouts must be above zero".into(),
            ));
        }
        if let Some(auth) = self.auth {
            auth.check().map_err(BuildError)?;
        }
        if let Some(tls) = self.tls {
            tls_acceptor(tls).map_err(BuildError)?;
        }
        Ok(())
    }
}

/// A source's bound server: the listener, its TLS, the intake and the stop signal.
pub(crate) struct Bound {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) intake: Intake,
    pub(crate) shutdown: CancellationToken,
}

/// Binds the source's listener (so a port in use stops the pipeline from starting)
/// and takes its way into the pipeline.
pub(crate) fn bind(
    cx: SourceContext,
    options: &ServerOptions<'_>,
    request_timeout: Duration,
) -> Result<Bound, BuildError> {
    options.check()?;
    let tls = options
        .tls
        .map(tls_acceptor)
        .transpose()
        .map_err(BuildError)?;
    let listener = cx
        .listeners
        .bind(options.address)
        .map_err(|e| BuildError(format!("cannot listen on {}: {e}", options.address)))?;
    let intake = Intake::new(
        cx.id,
        cx.out,
        Arc::clone(&cx.metrics),
        Arc::clone(cx.telemetry.latency()),
        request_timeout,
    );
    Ok(Bound {
        listener,
        tls,
        intake,
        shutdown: cx.shutdown,
    })
}
