//! `validate --check-sinks`: reaches an endpoint one step at a time, so a failure names
//! the step (name resolution, connection, TLS, HTTP, credentials) instead of a bare
//! "error sending request". What is printed names the scheme, host and port only: the
//! rest of a URL may be the credential (a Slack webhook).

use reqwest::header::HeaderMap;
use tokio::net::TcpStream;

/// A check that ran: what answered.
pub(crate) type Checked = Result<String, String>;

/// Resolves `host`, then connects to the first address that takes a connection.
/// Returns how many addresses the name had and the one that answered.
pub(crate) async fn tcp(host: &str, port: u16) -> Result<String, String> {
    let addresses: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    let mut last = None;
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(_) => {
                return Ok(format!(
                    "{host}:{port} resolved ({} address{}), connected to {address}",
                    addresses.len(),
                    if addresses.len() == 1 { "" } else { "es" }
                ));
            }
            Err(e) => last = Some(format!("{address}: {e}")),
        }
    }
    Err(format!(
        "cannot connect to {host}:{port} ({})",
        last.unwrap_or_default()
    ))
}

/// An HTTP(S) endpoint: DNS and TCP (unless a proxy is set, which reqwest would go
/// through), then one `HEAD` through `client`, the sink's own (its TLS settings), with
/// `headers` (the sink's static headers and credentials). With `credentials`, a 401 or
/// 403 is a failure: the credentials were refused. `verify` says whether the client
/// checks certificates. The URL is cut at its first template.
pub(crate) async fn http(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    credentials: bool,
    verify: bool,
) -> Checked {
    let base = url.split("{{").next().unwrap_or(url);
    let parsed = reqwest::Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
    // An IPv6 literal is written in brackets, which the resolver does not take.
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let endpoint = match parsed.host() {
        Some(url::Host::Ipv6(_)) => format!("{}://[{host}]:{port}", parsed.scheme()),
        _ => format!("{}://{host}:{port}", parsed.scheme()),
    };
    let https = parsed.scheme() == "https";
    let mut steps = Vec::new();
    if proxied(parsed.scheme()) {
        steps.push("through the proxy of the environment".to_owned());
    } else {
        steps.push(tcp(&host, port).await?);
    }
    // Credentials in the URL itself (`http://user:pass@host/`) count as credentials.
    let credentials = credentials || !parsed.username().is_empty() || parsed.password().is_some();
    let response = client
        .head(parsed)
        .headers(headers)
        .send()
        .await
        .map_err(|e| {
            let connect = e.is_connect();
            let chain = super::error_chain(&e.without_url());
            let tls = ["certificate", "tls", "TLS", "corrupt message", "handshake"]
                .iter()
                .any(|w| chain.contains(w));
            if https && connect && tls {
                format!("TLS with {endpoint} failed (is it an HTTPS server?): {chain}")
            } else {
                format!("{endpoint}: {chain}")
            }
        })?;
    let status = response.status().as_u16();
    if credentials && matches!(status, 401 | 403) {
        return Err(format!(
            "{endpoint} refused the credentials (HTTP {status} to a HEAD request)"
        ));
    }
    if https {
        steps.push(if verify {
            "TLS verified".into()
        } else {
            "TLS not verified (verification is off)".to_owned()
        });
    }
    steps.push(format!("HEAD answered HTTP {status}"));
    Ok(steps.join(", "))
}

/// [`http`] for a sink whose URL is its only address and credential (PagerDuty's Events
/// API, a Slack webhook), through a client like the sink's.
pub(crate) async fn without_credentials(
    url: &str,
    verify: bool,
    timeout: std::time::Duration,
) -> Checked {
    let client = super::http_client(verify, None, timeout, super::Redirects::Refuse)?;
    http(&client, url, HeaderMap::new(), false, verify).await
}

/// An `Authorization` value with a token fetched from the OAuth2 token endpoint: the
/// check of the client credentials.
pub(crate) async fn oauth2_bearer(
    config: &super::OAuth2Config,
    timeout: std::time::Duration,
) -> Result<reqwest::header::HeaderValue, String> {
    let clock: std::sync::Arc<dyn crate::clock::Clock> =
        std::sync::Arc::new(crate::clock::TokioClock);
    let tokens = super::TokenSource::new(config.clone(), clock, timeout)?;
    let token = tokens
        .token()
        .await
        .map_err(|e| format!("no OAuth2 token: {e}"))?;
    reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| format!("the OAuth2 token is not a header value: {e}"))
}

/// Whether reqwest would reach `scheme` URLs through a proxy from the environment.
fn proxied(scheme: &str) -> bool {
    let names: &[&str] = match scheme {
        "https" => &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
        _ => &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
    };
    names
        .iter()
        .any(|n| std::env::var(n).is_ok_and(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_the_step_that_failed() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let e = tcp("127.0.0.1", port).await.expect_err("nothing listens");
        assert!(
            e.starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
            "{e}"
        );
        let e = tcp("no-such-host.invalid", 80).await.expect_err("no name");
        assert!(
            e.starts_with("cannot resolve `no-such-host.invalid`"),
            "{e}"
        );
    }

    /// An IPv6 literal is resolved without its brackets, and the line names it with them.
    #[tokio::test]
    async fn reaches_an_ipv6_literal() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            // Not a service CI provides or lacks: a machine without IPv6 has nothing to
            // test here. (`crate::testing` sits in a layer above this one.)
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = crate::net::http_client(
            true,
            None,
            std::time::Duration::from_secs(5),
            crate::net::Redirects::Refuse,
        )
        .expect("client");
        let url = format!("http://[::1]:{port}/in");
        let said = http(&client, &url, HeaderMap::new(), false, true)
            .await
            .expect("reachable");
        assert!(said.starts_with(&format!("::1:{port} resolved")), "{said}");
        assert!(said.ends_with("HEAD answered HTTP 204"), "{said}");
    }
}
