//! Response bodies read with a bound: whoever answers (a sink's endpoint, a token
//! endpoint, a certificate or status-page server) may send any number of bytes, and
//! a body is held whole in memory.

use bytes::{Bytes, BytesMut};

/// A body larger than the bound, or a transfer that broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the body exceeds {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The whole body, refused (without reading it all) when it is over `limit` bytes.
pub(crate) async fn read_at_most(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first `limit` bytes of the body as text (for errors and verdicts); the rest is
/// not read. A transfer that breaks ends the excerpt.
pub(crate) async fn excerpt(response: &mut reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    String::from_utf8_lossy(&body).into_owned()
}
