//! `syslog`: events out as RFC 5424 syslog over TCP or TLS (RFC 5425), to rsyslog,
//! syslog-ng, a SIEM's collector, or another sluice's `syslog` source.
//!
//! Each event is one message (see `encode.rs` for the fields). Syslog has no
//! acknowledgement: a message counts as delivered once written to the connection. A
//! write that fails or makes no progress for `timeout`, or a connection the server
//! closed, is retried on a new connection with backoff, from the first message not
//! written (the one cut short is sent whole again), then the rest is dead-lettered.

mod encode;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::component::{
    BoxFuture, BuildError, ComponentError, ComponentTask, SinkConfig, SinkContext, delivered,
};
use crate::delivery::{DEAD_LETTER, DeadLetter, Failure};
use crate::event::Event;
use crate::net::client_tls::{ClientTls, server_name, tls_connector};
use crate::net::{Backoff, FailureHandling, Pause};

/// Sends events as RFC 5424 syslog messages over TCP or TLS.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyslogSinkConfig {
    /// `host:port` of the syslog server (TLS servers usually listen on 6514).
    pub(crate) address: String,
    /// Connect with TLS (RFC 5425).
    pub(crate) tls: Option<ClientTls>,
    /// `octet_counting` (default; RFC 6587, required with TLS by RFC 5425) or `newline`
    /// (one message per line, for servers that only split lines).
    #[serde(default)]
    pub(crate) framing: Framing,
    /// The facility of events without a `facility` field (default `user`).
    #[serde(default = "default_facility")]
    pub(crate) facility: String,
    /// The severity of events without a `severity` field (default `info`); an alert's
    /// severity maps to syslog's (critical → crit, high → err, medium → warning, low →
    /// notice).
    #[serde(default = "default_severity")]
    pub(crate) severity: String,
    /// APP-NAME, as a template (default: the event's `appname`).
    pub(crate) app_name: Option<String>,
    /// The message text, as a template (default: the event's `message`, else the whole
    /// event as JSON).
    pub(crate) message: Option<String>,
    /// How long connecting (TLS included), and writing one message, may take (default
    /// 10s): a server that reads nothing for this long fails the attempt.
    #[schemars(schema_with = "crate::units::duration")]
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Retries with backoff on a new connection, then the `dead_letter` output.
    #[serde(default)]
    pub(crate) failure_handling: FailureHandling,
}

/// How messages are delimited on the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Framing {
    /// `<length> <message>` (RFC 6587 octet counting).
    #[default]
    OctetCounting,
    /// `<message>\n`; newlines inside a message become spaces.
    Newline,
}

fn default_facility() -> String {
    "user".into()
}
fn default_severity() -> String {
    "info".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

type Tls = (
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
);

impl SyslogSinkConfig {
    fn tls(&self) -> Result<Option<Tls>, BuildError> {
        self.tls
            .as_ref()
            .map(|tls| {
                let connector = tls_connector(tls).map_err(BuildError)?;
                let name = server_name(tls, &self.address).map_err(BuildError)?;
                Ok((connector, name))
            })
            .transpose()
    }

    async fn connect(&self, tls: &Option<Tls>) -> Result<Box<dyn Io>, String> {
        let connect = async {
            let stream = tokio::net::TcpStream::connect(&self.address)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
            let _ = stream.set_nodelay(true);
            match tls {
                None => Ok(Box::new(stream) as Box<dyn Io>),
                Some((connector, name)) => connector
                    .connect(name.clone(), stream)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Io>)
                    .map_err(|e| format!("TLS with {}: {e}", self.address)),
            }
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| {
                format!(
                    "connecting to {} took over {:?}",
                    self.address, self.timeout
                )
            })?
    }
}

impl SinkConfig for SyslogSinkConfig {
    fn type_name(&self) -> &'static str {
        "syslog"
    }

    fn outputs(&self) -> Vec<String> {
        vec![DEAD_LETTER.into()]
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.tls.iter().filter_map(|t| t.ca_file.clone()).collect()
    }

    fn check(&self) -> Result<(), BuildError> {
        let port = self
            .address
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
            return Err(BuildError(format!(
                "`address` `{}` must be host:port",
                self.address
            )));
        }
        if self.timeout.is_zero() {
            return Err(BuildError("`timeout` must be longer than 0s".into()));
        }
        self.failure_handling.check().map_err(BuildError)?;
        encode::Encoder::new(self).map_err(BuildError)?;
        self.tls().map(drop)
    }

    fn healthcheck(&self, _timeout: Duration) -> Option<BoxFuture<'_, crate::net::probe::Checked>> {
        Some(Box::pin(async move {
            let tls = self.tls().map_err(|e| e.0)?;
            let mut io = self.connect(&tls).await?;
            let _ = io.shutdown().await;
            Ok(format!(
                "{} connected{}",
                self.address,
                if tls.is_some() { ", TLS verified" } else { "" }
            ))
        }))
    }

    fn build(&self, cx: SinkContext) -> BoxFuture<'_, Result<ComponentTask, BuildError>> {
        Box::pin(async move {
            self.check()?;
            let encoder = encode::Encoder::new(self).map_err(BuildError)?;
            let tls = self.tls()?;
            Ok(Box::pin(run(self.clone(), encoder, tls, cx)) as ComponentTask)
        })
    }
}

/// Whether a kept connection must not be used: the server closed it or sent something
/// (a syslog server never answers). Checked without waiting.
fn stale(io: &mut Box<dyn Io>) -> bool {
    use futures_util::FutureExt;
    let mut byte = [0u8; 1];
    io.read(&mut byte).now_or_never().is_some()
}

async fn run(
    config: SyslogSinkConfig,
    encoder: encode::Encoder,
    tls: Option<Tls>,
    mut cx: SinkContext,
) -> Result<(), ComponentError> {
    let dead_letter = DeadLetter::new(
        Arc::clone(&cx.id),
        cx.outputs.first().cloned(),
        Arc::clone(&cx.metrics),
    );
    let stop = cx.input.stop_token();
    let mut connection: Option<Box<dyn Io>> = None;
    while let Some(batch) = cx.input.recv().await {
        cx.metrics.add_received(batch.len());
        let now = chrono::Utc::now();
        let mut frames: Vec<(Event, Vec<u8>)> = Vec::with_capacity(batch.len());
        for event in batch {
            match encoder.encode(&event, now) {
                Ok(frame) => frames.push((event, frame)),
                Err(error) => {
                    let failure = Failure {
                        error,
                        status: None,
                        attempts: 0,
                        body: None,
                    };
                    dead_letter.send(vec![event], &failure).await;
                }
            }
        }
        let mut backoff = Backoff::new(config.failure_handling);
        let mut attempts = 0u32;
        while !frames.is_empty() {
            attempts += 1;
            // Frames go one by one, each within `timeout`: a slow server that keeps
            // reading is not a failure, and after a failure only the frames not yet
            // written are sent again.
            let mut written = 0;
            let result = async {
                if connection.as_mut().is_some_and(stale) {
                    connection = None;
                }
                if connection.is_none() {
                    connection = Some(config.connect(&tls).await?);
                }
                let Some(io) = connection.as_mut() else {
                    return Err("not connected".to_string());
                };
                for (_, frame) in &frames {
                    tokio::time::timeout(config.timeout, io.write_all(frame))
                        .await
                        .map_err(|_| format!("the server read nothing for {:?}", config.timeout))?
                        .map_err(|e| format!("write: {e}"))?;
                    written += 1;
                }
                tokio::time::timeout(config.timeout, io.flush())
                    .await
                    .map_err(|_| format!("the server read nothing for {:?}", config.timeout))?
                    .map_err(|e| format!("write: {e}"))
            }
            .await;
            let rest = frames.split_off(written);
            let done: Vec<Event> = std::mem::replace(&mut frames, rest)
                .into_iter()
                .map(|(event, frame)| {
                    cx.metrics.add_sent_bytes(frame.len());
                    event
                })
                .collect();
            delivered(&cx.metrics, done);
            let error = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            connection = None;
            let pause = backoff.pause(None, &*cx.clock, Some(&stop), |wait| {
                tracing::warn!(component_id = %cx.id, error = %error, wait = ?wait, "syslog send failed; retrying");
            });
            match pause.await {
                Pause::Retry => {}
                Pause::Exhausted => {
                    let failure = Failure::gave_up(attempts, &error, None, None);
                    let events = frames.drain(..).map(|(e, _)| e).collect();
                    dead_letter.send(events, &failure).await;
                }
                Pause::Stopped => {
                    cx.input
                        .hand_back(frames.into_iter().map(|(e, _)| e).collect());
                    return Ok(());
                }
            }
        }
    }
    if let Some(mut io) = connection {
        let _ = tokio::time::timeout(config.timeout, io.shutdown()).await;
    }
    Ok(())
}
