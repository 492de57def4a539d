//! The accept loop of the sources that listen on TCP (webhooks over HTTP, the Forward
//! protocol): one task per connection, at most `max_connections` at once (more wait in
//! the kernel's backlog), until `stop`; then the listener is closed (a replacement
//! serves the shared backlog) and the loop returns once every connection ended.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Accepts until `stop`, running `serve` for each connection; returns when all ended.
pub(crate) async fn accept_until<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    max_connections: Option<usize>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(
        max_connections.unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = serve(stream, peer);
                    connections.spawn(async move {
                        let _permit = permit;
                        connection.await;
                    });
                }
                // Too many open files and the like: keep serving the connections there
                // are, and try again shortly.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
