//! `GET /api/v2/status`: what amtool checks before every command (the version) and
//! shows for `amtool config show` and `amtool cluster show`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::ApiState;
use crate::silences::rfc3339;

/// sluice runs one node and keeps its pipeline (which may hold secrets) to itself: the
/// cluster is `disabled` and `config.original` empty.
#[utoipa::path(get, path = "/api/v2/status", tag = "alertmanager", description = "Alertmanager v2 status: sluice's version, the API's start time, a disabled cluster and an empty configuration", responses((status = 200, description = "The status", body = serde_json::Value)))]
pub(in crate::api) async fn get(State(s): State<ApiState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    axum::Json(json!({
        "cluster": { "status": "disabled", "peers": [] },
        "config": { "original": "" },
        "uptime": rfc3339(s.started),
        "versionInfo": {
            "version": version,
            "branch": "",
            "revision": "",
            "buildUser": "sluice",
            "buildDate": "",
            "goVersion": "none (sluice is written in Rust)",
        },
    }))
    .into_response()
}
