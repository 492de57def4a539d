//! `GET /metrics` for the scraper, behind optional bearer or basic authentication (a
//! failure is a bare 401).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::exposition::{CONTENT_TYPE, render};
use super::series::State;
use crate::net::{CHALLENGE, ServerAuth};

/// Scrapers served at once: each holds a rendered scrape until it has read it, so a
/// few slow readers must not hold many copies.
const MAX_SCRAPERS: usize = 8;

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    auth: Option<ServerAuth>,
    read_timeout: Duration,
    stop: CancellationToken,
) {
    let auth = Arc::new(auth);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let (state, auth) = (Arc::clone(&state), Arc::clone(&auth));
            async move {
                if auth.as_ref().as_ref().is_some_and(|a| !a.admits(&headers)) {
                    let challenge = [(header::WWW_AUTHENTICATE, CHALLENGE)];
                    return (StatusCode::UNAUTHORIZED, challenge).into_response();
                }
                let body = {
                    let mut state = state
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    state.expire(std::time::Instant::now());
                    render(&state)
                };
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
            }
        }),
    );
    let options = crate::net::http_server::ServerOptions {
        header_read_timeout: Some(read_timeout),
        tls: None,
        max_connections: Some(MAX_SCRAPERS),
        http2: false,
    };
    if let Err(e) = crate::net::http_server::serve_with(listener, app, stop, options).await {
        tracing::error!(error = %e, "prometheus_exporter server failed");
    }
}
