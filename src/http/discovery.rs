//! Discovery (RFC 8414, OpenID Connect Discovery) and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppRef;
use crate::clients::ID_TOKEN_ALGS;
use crate::config::{SUPPORTED_AUTH_METHODS, SUPPORTED_GRANT_TYPES};
use crate::keys::KeyRing;
use crate::oauth::OAuthError;

/// The one metadata document (RFC 8414 §2 and OpenID Connect Discovery §3), served at both well-known
/// addresses: a client that discovers through either must see the same facts, or it guesses the rest
/// (an OpenID client reading the RFC 8414 address without `id_token_signing_alg_values_supported`
/// assumes RS256).
fn metadata(app: &AppRef) -> Value {
    let issuer = &app.config.issuer;
    json!({
        "issuer": issuer,
        "token_endpoint": app.endpoints.token,
        "introspection_endpoint": app.endpoints.introspect,
        "revocation_endpoint": app.endpoints.revoke,
        "jwks_uri": app.endpoints.jwks,
        "grant_types_supported": SUPPORTED_GRANT_TYPES,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
        "device_authorization_endpoint": format!("{issuer}/device_authorization"),
        // OpenID CIBA Core §4: poll and ping; push is refused (FAPI-CIBA forbids it), and so is
        // `user_code`.
        "backchannel_authentication_endpoint": format!("{issuer}/bc-authorize"),
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_user_code_parameter_supported": false,
        "require_pushed_authorization_requests": false,
        "response_types_supported": ["code", "token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": [crate::sessions::ACR_PASSWORD, crate::sessions::ACR_TOTP],
        "token_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
        // Only confidential clients may introspect (RFC 7662 §2.1): `none` is not offered there.
        "introspection_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS
            .iter()
            .filter(|m| **m != "none")
            .collect::<Vec<_>>(),
        "revocation_endpoint_auth_methods_supported": SUPPORTED_AUTH_METHODS,
        "scopes_supported": app
            .policy()
            .scope_names()
            .filter(|s| !s.contains(['*', '{']))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>(),
        "access_token_signing_alg_values_supported": [app.config.signing_alg.name()],
        "service_documentation": format!("{issuer}/openapi.json"),
        "subject_types_supported": ["public"],
        // RS256 first: the default for a client that registers no `id_token_signed_response_alg`
        // (OpenID Connect Core §15.1).
        "id_token_signing_alg_values_supported": ID_TOKEN_ALGS,
        "userinfo_endpoint": app.endpoints.userinfo,
        // RFC 9449 §5.1: proofs are accepted at the token endpoint and /userinfo.
        "dpop_signing_alg_values_supported": crate::oauth::dpop::SIGNING_ALGS,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "preferred_username",
            "name",
            "given_name",
            "family_name",
            "email",
            "email_verified",
            "phone_number",
            "address"
        ],
    })
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn oauth_metadata(State(app): State<AppRef>) -> Json<Value> {
    Json(metadata(&app))
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery): the same document.
pub async fn openid_configuration(State(app): State<AppRef>) -> Json<Value> {
    Json(metadata(&app))
}

/// `GET /jwks`: current keys and retired keys whose tokens may still be live.
pub async fn jwks(State(app): State<AppRef>) -> Result<Response, OAuthError> {
    let keys = KeyRing::jwks(app.store.as_ref(), app.now())
        .await
        .map_err(|e| OAuthError::internal("jwks", e))?;
    let mut response = Json(json!({ "keys": keys })).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}
