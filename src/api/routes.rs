//! Every route of the API, with its OpenAPI description: the router and the document
//! come from this one table (each handler carries its `#[utoipa::path]`), so they cannot
//! disagree. `GET /openapi.json` serves the document (OpenAPI 3.1), each operation
//! marked with the role it needs (`x-sluice-role`, and `security` unless open).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, SecurityRequirement};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiState, alertmanager, events, incidents, outages, subscriptions};

/// The router of every route, and the OpenAPI document describing it.
pub(super) fn table() -> (Router<ApiState>, OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(base())
        .routes(routes!(super::health))
        .routes(routes!(super::live))
        .routes(routes!(super::ready))
        .routes(routes!(super::metrics, events::post_metrics))
        .routes(routes!(events::get_events, events::post_events))
        .routes(routes!(events::query_metrics))
        .routes(routes!(super::components))
        .routes(routes!(super::reload_now))
        .routes(routes!(super::tap))
        .routes(routes!(super::status_feed_show))
        .routes(routes!(outages::check_source))
        .routes(routes!(outages::status))
        .routes(routes!(outages::start))
        .routes(routes!(outages::stop))
        .routes(routes!(outages::config))
        .routes(routes!(outages::check))
        .routes(routes!(outages::history))
        .routes(routes!(outages::webhook_test))
        .routes(routes!(super::silences_list, super::silences_add))
        .routes(routes!(super::silences_delete))
        .routes(routes!(alertmanager::status::get))
        .routes(routes!(
            alertmanager::alerts::list,
            alertmanager::alerts::post
        ))
        .routes(routes!(
            alertmanager::silences::list,
            alertmanager::silences::post
        ))
        .routes(routes!(
            alertmanager::silences::get,
            alertmanager::silences::expire
        ))
        .routes(routes!(incidents::list, incidents::create))
        .routes(routes!(incidents::show, incidents::update))
        .routes(routes!(incidents::timeline))
        .routes(routes!(incidents::stats))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(
            subscriptions::show,
            subscriptions::update,
            subscriptions::delete
        ))
        .routes(routes!(subscriptions::test))
        .routes(routes!(subscriptions::events))
        .routes(routes!(openapi))
        .split_for_parts();
    mark_roles(&mut doc);
    (router, doc)
}

fn base() -> OpenApi {
    let mut doc = OpenApi::default();
    doc.info.title = "sluice management API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Health, metrics, reload and tap; events in and out; incidents, silences, \
         subscriptions and outage monitoring. Tokens carry a role: viewer, operator or admin."
            .into(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}

/// Marks every operation with the role [`super::access::required`] asks of it.
fn mark_roles(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, op) in operations {
            let Some(op) = op else { continue };
            // Unique by construction (handlers in different modules share names).
            op.operation_id = Some(operation_id(&method, path));
            let role = super::access::required(&method, path);
            let mut ext = utoipa::openapi::extensions::Extensions::default();
            ext.insert(
                "x-sluice-role".into(),
                serde_json::json!(role.map_or("none", |r| r.as_str())),
            );
            op.extensions = Some(ext);
            op.security =
                role.map(|_| vec![SecurityRequirement::new("token", Vec::<String>::new())]);
        }
    }
}

/// `get /subscriptions/{id}/test` → `get_subscriptions_id_test`.
fn operation_id(method: &Method, path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    format!(
        "{}_{}",
        method.as_str().to_ascii_lowercase(),
        words.join("_")
    )
}

pub(super) static DOCUMENT: LazyLock<Arc<String>> = LazyLock::new(|| {
    let (_, doc) = table();
    Arc::new(
        doc.to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
    )
});

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "health", description = "This API's OpenAPI 3.1 document", responses((status = 200, description = "The document", body = serde_json::Value)))]
async fn openapi() -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str().to_owned(),
    )
        .into_response()
}
