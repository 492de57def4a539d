//! The API's OpenAPI document (issue 24): served at `/openapi.json`, valid OpenAPI 3.1
//! (checked by `openapi-spec-validator`, an independent implementation), and in
//! agreement with the routes: every operation it lists answers (a handler's answer,
//! never the router's 404 or 405), and its `x-sluice-role` is what the API enforces.

mod common;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Validates `doc` with openapi-spec-validator (installed by `.ci/run`); `None` when
/// the validator is not installed outside CI.
fn validate(doc: &str) -> Option<Result<(), String>> {
    let tools =
        std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice-tools/python");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc).expect("write");
    let out = std::process::Command::new("python3")
        .env("PYTHONPATH", &tools)
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && stderr.contains("No module named 'openapi_spec_validator'") {
        sluice::testing::skip(
            "the validation: openapi-spec-validator is not installed (.ci/run installs it)",
        );
        return None;
    }
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(stderr)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_and_every_operation_in_it_answers_with_its_role() {
    let stop = CancellationToken::new();
    let address = common::api_with_roles(&stop).await;
    let client = reqwest::Client::new();

    // Open, like the probes.
    let r = client
        .get(format!("http://{address}/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    if let Some(result) = validate(&text) {
        result.unwrap_or_else(|e| panic!("the document does not validate: {e}"));
    }

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let concrete = path.replace("{id}", "nope").replace("{provider}", "nope");
            let query = if path == "/tap" { "?limit=0" } else { "" };
            let url = format!("http://{address}{concrete}{query}");
            let role = op["x-sluice-role"].as_str().expect("x-sluice-role");
            let mut req = client.request(method.to_uppercase().parse().expect("method"), &url);
            if method == "post" || method == "put" {
                req = req.json(&json!({}));
            }
            // Called by an admin: a handler answers (a JSON or text body), never the
            // router's bare 404 or 405.
            let r = req
                .try_clone()
                .expect("clone")
                .bearer_auth("tok-admin")
                .send()
                .await
                .expect("call");
            let status = r.status().as_u16();
            let body = r.bytes().await.expect("body");
            assert_ne!(status, 405, "{method} {path}: not routed");
            assert!(
                !(status == 404 && body.is_empty()),
                "{method} {path}: the router does not know it"
            );
            // Its role is the one enforced: a viewer is refused exactly the routes
            // above viewer, and no token is refused every route with a role.
            let viewer = req
                .try_clone()
                .expect("clone")
                .bearer_auth("tok-viewer")
                .send()
                .await
                .expect("call");
            let refused_viewer = viewer.status() == 403;
            assert_eq!(
                refused_viewer,
                role == "operator" || role == "admin",
                "{method} {path} ({role})"
            );
            let anonymous = req.send().await.expect("call");
            assert_eq!(
                anonymous.status() == 401,
                role != "none",
                "{method} {path} ({role})"
            );
            assert_eq!(op["security"].is_array(), role != "none", "{method} {path}");
        }
    }
    assert!(operations >= 44, "only {operations} operations documented");
    stop.cancel();
}
