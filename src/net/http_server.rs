//! The HTTP server under HTTP sources, written for hand-over.
//!
//! `axum::serve`'s graceful shutdown closes every idle connection at once, including one
//! that was just accepted and whose request has not been read yet: the client sees a
//! reset. When a reload replaces a webhook, its old server stops while the new one
//! already accepts on the same socket (see `component::ListenerPool`), so such closes
//! would be errors that nothing else causes. Here, once `stop` fires:
//! - the accept loop ends (the shared backlog is served by the replacement);
//! - every response carries `Connection: close`;
//! - a connection that is idle gets `GRACE` to send one more request (a client may have
//!   sent it already) before it is shut down; busy ones finish their request first.
//!
//! The server returns when every connection is closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long an idle connection may take to send its last request after `stop`.
pub(crate) const GRACE: Duration = Duration::from_millis(500);

/// Connection-level options.
#[derive(Clone, Default)]
pub(crate) struct ServerOptions {
    /// Longest time a client may take to send a request's headers (slowloris) and, with
    /// TLS, to complete the handshake.
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connections served at once; more wait in the listen backlog (`None`: no limit).
    pub(crate) max_connections: Option<usize>,
    /// Also speak HTTP/2 (told apart by its connection preface, with or without TLS),
    /// as gRPC needs.
    pub(crate) http2: bool,
}

/// Serves `app` on `listener` until `stop`, then winds down as the module docs say,
/// with timeouts and optional TLS.
pub(crate) async fn serve_with(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    options: ServerOptions,
) -> std::io::Result<()> {
    super::accept::accept_until(
        listener,
        stop.clone(),
        options.max_connections,
        |stream, _| accept_connection(stream, app.clone(), stop.clone(), options.clone()),
    )
    .await;
    Ok(())
}

async fn accept_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    stop: CancellationToken,
    options: ServerOptions,
) {
    let Some(acceptor) = &options.tls else {
        return serve_connection(stream, app, stop, &options).await;
    };
    let handshake = acceptor.accept(stream);
    let handshake = match options.header_read_timeout {
        Some(limit) => match tokio::time::timeout(limit, handshake).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        None => handshake.await,
    };
    match handshake {
        Ok(tls) => serve_connection(tls, app, stop, &options).await,
        Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
    }
}

async fn serve_connection<S>(
    stream: S,
    app: Router,
    stop: CancellationToken,
    options: &ServerOptions,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    let service = {
        let stop = stop.clone();
        let in_flight = Arc::clone(&in_flight);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            let stop = stop.clone();
            let in_flight = Arc::clone(&in_flight);
            in_flight.fetch_add(1, Ordering::AcqRel);
            async move {
                let mut response = match app.oneshot(request).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                if stop.is_cancelled() && response.version() < hyper::Version::HTTP_2 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                in_flight.fetch_sub(1, Ordering::AcqRel);
                Ok::<_, Infallible>(response)
            }
        })
    };
    if options.http2 {
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        if let Some(limit) = options.header_read_timeout {
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limit);
        }
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        drive(connection, stop, in_flight).await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        if let Some(limit) = options.header_read_timeout {
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limit);
        }
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        drive(connection, stop, in_flight).await;
    }
}

/// A connection that can be asked to finish what it serves and close.
trait Graceful: std::future::Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn shut_down(self: std::pin::Pin<&mut Self>);
    /// Whether the error is only the peer going away mid-message.
    fn incomplete(error: &Self::Error) -> bool;
}

impl<I, S> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    Self: std::future::Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: std::error::Error + Send + Sync + 'static,
{
    type Error = hyper::Error;
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
    fn incomplete(error: &hyper::Error) -> bool {
        error.is_incomplete_message()
    }
}

impl<I, S, E> Graceful for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    Self: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync + 'static>>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: std::error::Error + Send + Sync + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
    fn incomplete(error: &Self::Error) -> bool {
        error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
    }
}

/// Serves a connection until it ends, or until `stop` and then as the module docs say.
async fn drive<C: Graceful>(connection: C, stop: CancellationToken, in_flight: Arc<AtomicUsize>) {
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            log_connection_end::<C>(result);
            return;
        }
        () = stop.cancelled() => {}
    }
    // Stopping. A request being served, or sent in the next GRACE, is answered with
    // `Connection: close`, which ends the connection by itself.
    let grace = tokio::time::sleep(GRACE);
    tokio::pin!(grace);
    tokio::select! {
        result = connection.as_mut() => {
            log_connection_end::<C>(result);
            return;
        }
        () = &mut grace, if in_flight.load(Ordering::Acquire) == 0 => {}
    }
    connection.as_mut().shut_down();
    log_connection_end::<C>(connection.await);
}

fn log_connection_end<C: Graceful>(result: Result<(), C::Error>) {
    if let Err(e) = result
        && !C::incomplete(&e)
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
