//! `sluice tap`: print events leaving the components of a running sluice, as NDJSON.

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub(crate) struct TapArgs {
    /// Component ids to tap (`*` wildcards allowed): the events they send.
    #[arg(default_value = "*")]
    pub(crate) components: String,
    /// Tap the events the matching components send (the same as the positional
    /// pattern).
    #[arg(long, value_name = "ID", conflicts_with = "inputs_of")]
    pub(crate) outputs_of: Option<String>,
    /// Tap the events the matching components receive: the outputs they read.
    #[arg(long, value_name = "ID")]
    pub(crate) inputs_of: Option<String>,
    /// The API of the running sluice.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub(crate) api_address: String,
    /// Stop after this many events.
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Print one event in this many.
    #[arg(long, default_value_t = 1)]
    pub(crate) sample: u64,
    /// The API's bearer token (`api.auth_token`).
    #[arg(long, env = "SLUICE_API__AUTH_TOKEN")]
    pub(crate) token: Option<String>,
}

pub(crate) fn tap(args: &TapArgs) -> u8 {
    let Some(runtime) = super::small_runtime() else {
        return 1;
    };
    match runtime.block_on(stream_tap(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn stream_tap(args: &TapArgs) -> anyhow::Result<()> {
    use std::io::Write;
    crate::net::install_crypto_provider();
    let mut params = vec![("sample", args.sample.to_string())];
    let what = match (&args.inputs_of, &args.outputs_of) {
        (Some(of), _) => {
            params.push(("inputs_of", of.clone()));
            format!("--inputs-of `{of}`")
        }
        (None, Some(of)) => {
            params.push(("components", of.clone()));
            format!("--outputs-of `{of}`")
        }
        (None, None) => {
            params.push(("components", args.components.clone()));
            format!("`{}`", args.components)
        }
    };
    if let Some(limit) = args.limit {
        params.push(("limit", limit.to_string()));
    }
    let url = reqwest::Url::parse_with_params(&format!("http://{}/tap", args.api_address), &params)
        .context("invalid --api-address")?;
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .with_context(|| format!("cannot reach sluice's API at {}", args.api_address))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the API answered {status}: {}", body.trim());
    }
    let matched = response
        .headers()
        .get("x-sluice-tap-matched")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if matched == Some(0) {
        eprintln!(
            "[tap] {what} matches no component of the running pipeline; waiting in case a reload adds one"
        );
    }
    let stdout = std::io::stdout();
    while let Some(chunk) = response.chunk().await.context("the tap stream broke")? {
        let mut out = stdout.lock();
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}
