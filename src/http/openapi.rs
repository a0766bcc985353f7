//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// Form body of `POST /token`. Client credentials go in `Authorization: Basic` or in these fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `client_credentials`.
    grant_type: String,
    /// Space-delimited scopes; the client's defaults when absent.
    scope: Option<String>,
    /// RFC 8707 resource indicator: the token's audience.
    resource: Option<String>,
    client_id: Option<String>,
    /// For `client_secret_post`.
    client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` for `private_key_jwt`.
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// Form body of `POST /introspect` and `POST /revoke`, plus client authentication.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenParam {
    token: String,
    token_type_hint: Option<String>,
}

/// An RFC 6749 §5.2 error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_target`, `server_error` or `temporarily_unavailable`.
    error: String,
    error_description: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenResponseSchema {
    /// An RFC 9068 JWT (`typ: at+jwt`).
    access_token: String,
    token_type: String,
    expires_in: i64,
    scope: String,
}

/// An RFC 7662 introspection response; only `active` when the token is not active.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionSchema {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    aud: Option<Vec<String>>,
    iss: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    token_type: Option<String>,
}

#[utoipa::path(post, path = "/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponseSchema), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[allow(dead_code)]
fn token() {}

#[utoipa::path(post, path = "/introspect", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = IntrospectionSchema), (status = 401, body = ErrorBody)))]
#[allow(dead_code)]
fn introspect() {}

#[utoipa::path(post, path = "/revoke", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or not a known token"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[allow(dead_code)]
fn revoke() {}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = Object)))]
#[allow(dead_code)]
fn oauth_metadata() {}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID Connect discovery document", body = Object)))]
#[allow(dead_code)]
fn openid_configuration() {}

#[utoipa::path(get, path = "/jwks", tag = "discovery",
    responses((status = 200, description = "JSON Web Key Set: current keys and retired keys whose tokens may be live", body = Object)))]
#[allow(dead_code)]
fn jwks() {}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process answers")))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Database reachable and migrated"), (status = 503, description = "Not ready")))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(post, path = "/admin/clients", tag = "admin", security(("admin_token" = [])),
    request_body(content = Object, description = "client_id, name, kind, audience, grant_types, scopes, token_endpoint_auth_method, jwks, resources, metadata"),
    responses((status = 201, description = "Registered; `client_secret` appears in this response only", body = Object), (status = 409, description = "Exists")))]
#[allow(dead_code)]
fn admin_create() {}

#[utoipa::path(get, path = "/admin/clients", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, body = Object)))]
#[allow(dead_code)]
fn admin_list() {}

#[utoipa::path(get, path = "/admin/clients/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Object), (status = 404, description = "Unknown")))]
#[allow(dead_code)]
fn admin_get() {}

#[utoipa::path(put, path = "/admin/clients/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)), request_body(content = Object),
    responses((status = 200, body = Object), (status = 404, description = "Unknown")))]
#[allow(dead_code)]
fn admin_update() {}

#[utoipa::path(post, path = "/admin/clients/{id}/disable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path)), request_body(content = Object, description = "{\"reason\": \"…\"}"),
    responses((status = 200, body = Object), (status = 404, description = "Unknown")))]
#[allow(dead_code)]
fn admin_disable() {}

#[utoipa::path(post, path = "/admin/policy/reload", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The new policy version, in force for the next token", body = Object),
              (status = 400, description = "The configuration is invalid; the previous policy stays")))]
#[allow(dead_code)]
fn admin_reload_policy() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document", body = Object)))]
#[allow(dead_code)]
fn openapi() {}

#[utoipa::path(get, path = "/authorize", tag = "oauth",
    params(("response_type" = String, Query, description = "`code`, or `token` for clients that enable implicit"),
           ("client_id" = String, Query), ("redirect_uri" = Option<String>, Query),
           ("scope" = Option<String>, Query), ("state" = Option<String>, Query), ("nonce" = Option<String>, Query),
           ("code_challenge" = Option<String>, Query, description = "RFC 7636; required by default"),
           ("code_challenge_method" = Option<String>, Query, description = "`S256` only"),
           ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`"),
           ("max_age" = Option<i64>, Query), ("acr_values" = Option<String>, Query),
           ("response_mode" = Option<String>, Query, description = "`query`, `fragment`, `form_post`"),
           ("authorization_details" = Option<String>, Query, description = "RFC 9396 JSON array"),
           ("resource" = Option<String>, Query, description = "RFC 8707"),
           ("request_uri" = Option<String>, Query, description = "From `POST /par`")),
    responses((status = 303, description = "To sign-in, or to the client's redirect URI with a code, token or error"),
              (status = 200, description = "The consent page (HTML), or a form_post response"),
              (status = 400, description = "An error page: the client or redirect URI cannot be trusted")))]
#[allow(dead_code)]
fn authorize() {}

#[utoipa::path(post, path = "/par", tag = "oauth",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
                 description = "The authorization request's parameters, plus client authentication"),
    responses((status = 201, description = "`request_uri` and `expires_in` (RFC 9126)", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[allow(dead_code)]
fn par() {}

#[utoipa::path(get, path = "/userinfo", tag = "oauth", security(("bearer" = [])),
    responses((status = 200, description = "The user's claims, released by the token's scopes", body = Object),
              (status = 401, description = "`invalid_token`"), (status = 403, description = "`insufficient_scope`: no `openid`")))]
#[allow(dead_code)]
fn userinfo() {}

struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every endpoint the server routes; a test checks the two lists agree.
#[derive(OpenApi)]
#[openapi(
    info(title = "consent-ledger", description = "OAuth 2.0 authorization server with a tamper-evident ledger"),
    paths(token, introspect, revoke, oauth_metadata, openid_configuration, jwks, healthz, readyz,
          admin_create, admin_list, admin_get, admin_update, admin_disable, admin_reload_policy, openapi,
          authorize, par, userinfo),
    modifiers(&AdminToken)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
