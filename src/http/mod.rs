//! The HTTP edge: routes, and nothing that decides.

mod account;
mod admin;
mod approval;
mod assisted_token;
pub mod audit;
mod audit_checkpoints;
mod authorize;
mod ciba;
mod client_auth;
pub mod csrf;
mod device;
mod discovery;
mod dpop;
mod health;
mod introspect;
mod login;
mod metrics;
pub mod openapi;
mod rate_limit;
mod request_id;
mod revoke;
pub(crate) mod sign_in;
mod token;
mod userinfo;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::app::AppRef;
use crate::oauth::form::{BodyLimit, FORM_BYTES_MAX};

/// Every routed path, as the OpenAPI document must list it.
pub const ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/jwks",
    "/token",
    "/introspect",
    "/revoke",
    "/admin/clients",
    "/admin/clients/{id}",
    "/admin/clients/{id}/disable",
    "/admin/policy/reload",
    "/openapi.json",
    "/authorize",
    "/par",
    "/userinfo",
    "/device_authorization",
    "/bc-authorize",
    "/audit/checkpoint-keys",
    "/audit/checkpoints",
    "/audit/checkpoints/consistency",
    "/audit/events/{position}/proof",
    "/audit/events",
    "/audit/tokens/{jti}",
    "/audit/delegations/{id}",
    "/audit/subjects/{sub}",
];

/// The server's routes.
pub fn router(app: AppRef) -> Router {
    let body_max = app.config.limits.body_bytes_max.min(FORM_BYTES_MAX);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::oauth_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route("/token", post(token::token))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(revoke::revoke))
        .route("/admin/clients", post(admin::create).get(admin::list))
        .route("/admin/clients/{id}", get(admin::get).put(admin::update))
        .route("/admin/clients/{id}/disable", post(admin::disable))
        .route("/admin/policy/reload", post(admin::reload_policy))
        .route("/openapi.json", get(openapi::document))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/metrics", get(metrics::metrics))
        .route("/static/style.css", get(crate::pages::stylesheet))
        .merge(audit_checkpoints::routes())
        .merge(audit::routes())
        // Pages (HTML, for people): not part of the OpenAPI document.
        .merge(authorize::routes())
        .merge(assisted_token::routes())
        .merge(device::routes())
        .merge(ciba::routes())
        .merge(login::routes())
        .merge(account::routes())
        // On matched routes only, where the route template is known: counted by template, not by path.
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::Extension(BodyLimit(body_max)))
        // Outermost: every answer, a 404 or a refused body included, carries the request's id.
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = super::openapi::ApiDoc::openapi();
        let mut documented: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        let mut routed = super::ROUTES.to_vec();
        documented.sort_unstable();
        routed.sort_unstable();
        assert_eq!(documented, routed);
    }
}
