//! Discovery (RFC 8414, OpenID Connect Discovery) and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::{AppRef, now};
use crate::config::{SUPPORTED_AUTH_METHODS, SUPPORTED_GRANT_TYPES};
use crate::keys::KeyRing;
use crate::oauth::OAuthError;

fn metadata(app: &AppRef) -> Value {
    let issuer = &app.config.issuer;
    json!({
        "issuer": issuer,
        "token_endpoint": app.endpoints.token,
        "introspection_endpoint": app.endpoints.introspect,
        "revocation_endpoint": app.endpoints.revoke,
        "jwks_uri": app.endpoints.jwks,
        "grant_types_supported": SUPPORTED_GRANT_TYPES,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
        "introspection_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS,
        "scopes_supported": app
            .policy()
            .scope_names()
            .filter(|s| !s.contains(['*', '{']))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>(),
        "access_token_signing_alg_values_supported": [app.config.signing_alg.name()],
        "service_documentation": format!("{issuer}/openapi.json"),
    })
}

/// `GET /.well-known/oauth-authorization-server`.
pub async fn oauth_metadata(State(app): State<AppRef>) -> Json<Value> {
    Json(metadata(&app))
}

/// `GET /.well-known/openid-configuration`: the same facts, with the fields OpenID clients require.
pub async fn openid_configuration(State(app): State<AppRef>) -> Json<Value> {
    let mut m = metadata(&app);
    m["subject_types_supported"] = json!(["public"]);
    m["id_token_signing_alg_values_supported"] = json!([app.config.signing_alg.name()]);
    Json(m)
}

/// `GET /jwks`: current keys and retired keys whose tokens may still be live.
pub async fn jwks(State(app): State<AppRef>) -> Result<Response, OAuthError> {
    let keys = KeyRing::jwks(app.store.as_ref(), now())
        .await
        .map_err(|e| OAuthError::internal("jwks", e))?;
    let mut response = Json(json!({ "keys": keys })).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}
