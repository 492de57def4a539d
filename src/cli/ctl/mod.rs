//! `sluice subscriptions|outages|events|silences …`: the management API from the command
//! line, against a running sluice (`--api-address`, `--token`), printing a table or, with
//! `--json`, the API's answer as it came.

mod client;
mod commands;
mod table;

pub(crate) use commands::{
    EventsArgs, OutagesArgs, SilencesArgs, SubscriptionsArgs, events, outages, silences,
    subscriptions,
};

use client::Client;
use table::say;

/// What every control command takes.
#[derive(clap::Args, Clone)]
pub(crate) struct ApiArgs {
    /// The API of the running sluice.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:8686",
        env = "SLUICE_API__ADDRESS"
    )]
    pub(crate) api_address: String,
    /// The API's bearer token (`api.auth_token`, or one of `api.tokens`).
    #[arg(
        long,
        global = true,
        env = "SLUICE_API__AUTH_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Runs `command` on a small runtime; the process exit code (1 with the reason on
/// stderr when the API refused or could not be reached).
pub(crate) fn run<F>(api: &ApiArgs, command: F) -> u8
where
    F: AsyncFnOnce(&Client) -> anyhow::Result<serde_json::Value>,
{
    crate::net::install_crypto_provider();
    let Some(runtime) = super::small_runtime() else {
        return 1;
    };
    let client = Client::new(api);
    match runtime.block_on(command(&client)) {
        Ok(answer) => {
            if api.json {
                say(serde_json::to_string_pretty(&answer).unwrap_or_default());
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
