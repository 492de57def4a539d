//! The connection to the server: TCP, TLS, the handshake, then one message at a time
//! and its ack. Any error drops the connection; the next send opens a new one.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::FluentSinkConfig;
use crate::component::BuildError;
use crate::fluent::frame::{Limits, Scanner};
use crate::fluent::handshake::{self, Helo};
use crate::fluent::message;
use crate::net::client_tls::{server_name, tls_connector};

/// What the server sends back (HELO, PONG, acks) is small.
const MAX_REPLY_BYTES: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

struct Connection {
    io: Box<dyn Io>,
    buf: BytesMut,
    /// Whether the server answered on it yet (a first answer that never comes may be a
    /// TLS mismatch; a later one is not).
    answered: bool,
}

impl Connection {
    /// Whether a kept-alive connection must not be used: the server closed it (an idle
    /// timeout), or sent something nobody asked for (a stray ack would be taken for the
    /// next message's). Checked without waiting.
    fn stale(&mut self) -> bool {
        use futures_util::FutureExt;
        if !self.buf.is_empty() {
            return true;
        }
        self.buf.reserve(64);
        match self.io.read_buf(&mut self.buf).now_or_never() {
            None => false,
            Some(Ok(_) | Err(_)) => true,
        }
    }
}

pub(super) struct Client {
    address: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    shared_key: Option<String>,
    user: Option<(String, String)>,
    hostname: String,
    require_ack: bool,
    ack_timeout: Duration,
    connect_timeout: Duration,
    connection: Option<Connection>,
}

impl Client {
    pub(super) fn new(config: &FluentSinkConfig) -> Result<Self, BuildError> {
        let tls = match &config.tls {
            Some(tls) => {
                let connector = tls_connector(tls).map_err(BuildError)?;
                let name = server_name(tls, &config.address).map_err(BuildError)?;
                Some((connector, name))
            }
            None => None,
        };
        let hostname = config.self_hostname.clone().unwrap_or_else(|| {
            hostname::get().map_or_else(|_| "sluice".into(), |h| h.to_string_lossy().into_owned())
        });
        Ok(Self {
            address: config.address.clone(),
            tls,
            shared_key: config.shared_key.clone(),
            user: config.username.clone().zip(config.password.clone()),
            hostname,
            require_ack: config.require_ack,
            ack_timeout: config.ack_timeout,
            connect_timeout: config.connect_timeout,
            connection: None,
        })
    }

    pub(super) fn disconnect(&mut self) {
        self.connection = None;
    }

    /// Closes the connection cleanly (a TLS close_notify, then FIN), bounded by
    /// `connect_timeout`: the server sees an orderly end, not a reset.
    pub(super) async fn close(&mut self) {
        if let Some(mut c) = self.connection.take() {
            let _ = tokio::time::timeout(self.connect_timeout, c.io.shutdown()).await;
        }
    }

    /// `validate --check-sinks`: connects (TLS and the handshake with its credentials
    /// included), then closes.
    pub(super) async fn probe(&mut self) -> Result<String, String> {
        self.ensure_connected().await?;
        self.close().await;
        let mut said = format!("{} connected", self.address);
        if self.tls.is_some() {
            said.push_str(", TLS verified");
        }
        if self.shared_key.is_some() {
            said.push_str(", shared_key accepted");
        }
        Ok(said)
    }

    /// Sends one message and, with a chunk, waits for its ack.
    pub(super) async fn send(&mut self, message: &[u8], chunk: Option<&str>) -> Result<(), String> {
        self.ensure_connected().await?;
        let Some(c) = self.connection.as_mut() else {
            return Err("not connected".into());
        };
        // A server that stops reading (a full fluentd buffer) must not hold the sink.
        let write = async {
            c.io.write_all(message).await?;
            c.io.flush().await
        };
        tokio::time::timeout(self.ack_timeout, write)
            .await
            .map_err(|_| format!("the server read nothing for {:?}", self.ack_timeout))?
            .map_err(|e| format!("write: {e}"))?;
        let Some(chunk) = chunk.filter(|_| self.require_ack) else {
            return Ok(());
        };
        let plain = self.tls.is_none() && !c.answered;
        let reply = tokio::time::timeout(self.ack_timeout, read_reply(c))
            .await
            .map_err(|_| format!("no ack within {:?}", self.ack_timeout))?
            .map_err(|e| match e {
                // A TLS server drops a plain client at its first bytes.
                ReplyError::Closed | ReplyError::Io(_) if plain => {
                    format!("{e} (if the server expects TLS, set `tls`)")
                }
                e => e.to_string(),
            })?;
        c.answered = true;
        if message::acked(&reply) == Some(chunk.as_bytes()) {
            Ok(())
        } else if plain && matches!(reply.first(), Some(0x15 | 0x16)) {
            // 0x15 and 0x16 start TLS alert and handshake records.
            Err("the server answered in TLS: set `tls`".into())
        } else if handshake::parse_helo(&reply).is_ok() {
            Err("the server requires the handshake: set `shared_key`".into())
        } else {
            Err("the server answered something other than this message's ack".into())
        }
    }

    /// Connects unless a live connection is kept, within `connect_timeout`.
    async fn ensure_connected(&mut self) -> Result<(), String> {
        if self.connection.as_mut().is_some_and(Connection::stale) {
            tracing::debug!(address = %self.address, "the server closed the kept-alive connection; reconnecting");
            self.connection = None;
        }
        if self.connection.is_none() {
            let connection = tokio::time::timeout(self.connect_timeout, self.connect())
                .await
                .map_err(|_| match self.shared_key {
                    // A server without the handshake sends no HELO: it waits for data.
                    Some(_) => format!(
                        "no HELO from {} within {:?}: does the server have a shared_key{}?",
                        self.address,
                        self.connect_timeout,
                        if self.tls.is_none() {
                            " (or expect TLS)"
                        } else {
                            ""
                        }
                    ),
                    None => format!("connecting to {} timed out", self.address),
                })??;
            self.connection = Some(connection);
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Connection, String> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => {
                Box::new(connector.connect(name.clone(), tcp).await.map_err(|e| {
                    format!("TLS with {}: {e} (does the server have tls?)", self.address)
                })?)
            }
            None => Box::new(tcp),
        };
        let mut c = Connection {
            io,
            buf: BytesMut::new(),
            answered: false,
        };
        if let Some(key) = &self.shared_key {
            let helo = handshake::parse_helo(&read_reply(&mut c).await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            self.login(&mut c, &helo, key).await?;
            c.answered = true;
        }
        Ok(c)
    }

    async fn login(&self, c: &mut Connection, helo: &Helo, key: &str) -> Result<(), String> {
        let salt = handshake::random16();
        let user = self.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        if !helo.auth_salt.is_empty() && user.is_none() {
            return Err("the server asks for a user: set `username` and `password`".into());
        }
        let ping = handshake::ping(&self.hostname, &salt, helo, key, user);
        c.io.write_all(&ping)
            .await
            .map_err(|e| format!("write: {e}"))?;
        c.io.flush().await.map_err(|e| format!("write: {e}"))?;
        let pong = read_reply(c).await.map_err(|e| e.to_string())?;
        handshake::check_pong(&pong, &salt, helo, key).map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error("the server closed the connection")]
    Closed,
    #[error("read: {0}")]
    Io(std::io::Error),
    #[error("the server's answer: {0}")]
    Malformed(String),
}

/// The next object the server sends.
async fn read_reply(c: &mut Connection) -> Result<BytesMut, ReplyError> {
    let mut scanner = Scanner::new(Limits {
        max_bytes: MAX_REPLY_BYTES,
        max_depth: 8,
    });
    loop {
        if !c.buf.is_empty()
            && let Some(n) = scanner
                .scan(&c.buf)
                .map_err(|e| ReplyError::Malformed(e.to_string()))?
        {
            return Ok(c.buf.split_to(n));
        }
        c.buf.reserve(4096);
        match c.io.read_buf(&mut c.buf).await {
            Ok(0) => return Err(ReplyError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReplyError::Io(e)),
        }
    }
}
