//! `POST /introspect` (RFC 7662).
//!
//! Who may see what (RFC 7662 §4): only an authenticated confidential client may ask, and it learns about
//! a token only if the token is its own, or (for an access token) if it is registered as a resource server
//! and the token's audience names one of its `resources`. Every other token answers `{"active": false}`,
//! the same as an unknown one, so the endpoint is no oracle for other clients' tokens.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::UnixSeconds;
use projections::queries;
use projections::refresh_tokens::RefreshToken;
use projections::tokens::Token;
use serde_json::{Value, json};

use super::client_auth::authenticate;
use crate::access_tokens;
use crate::app::{App, AppRef};
use crate::grants::{DPOP_TOKEN_TYPE, refresh};
use crate::oauth::OAuthError;
use crate::oauth::client_auth::AUTHENTICATION_FAILED;
use crate::oauth::form::Form;
use crate::store;

/// Whether `caller` may learn about the access token `token`: its own, or one meant for a resource it
/// serves.
pub fn may_see_access_token(caller: &Client, token: &Token) -> bool {
    token.client_id == caller.spec.client_id
        || (caller.spec.resource_server
            && token
                .audience
                .iter()
                .any(|aud| caller.spec.resources.contains(aud)))
}

/// Whether `caller` may learn about the refresh token `token`: only its own (a resource server never holds
/// refresh tokens).
pub fn may_see_refresh_token(caller: &Client, token: &RefreshToken) -> bool {
    token.client_id == caller.spec.client_id
}

/// Answers whether a token is active and, if so, what it carries. Only authenticated confidential
/// clients may ask; the answer is never cached (RFC 7662 §2.2 carries live facts).
pub async fn introspect(
    State(app): State<AppRef>,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, OAuthError> {
    let now = app.now();
    let caller = authenticate(&app, &headers, &form, &app.endpoints.introspect, now).await?;
    if caller.spec.token_endpoint_auth_method == "none" {
        // A public client proves nothing about itself, so it may not scan tokens (RFC 7662 §2.1, §4).
        return Err(OAuthError::InvalidClient(AUTHENTICATION_FAILED.into()));
    }
    let token = form.require("token")?;
    let found = access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now).await?;
    let answer = match found {
        Some(f) if f.active && may_see_access_token(&caller, &f.token) => {
            let mut answer = json!({
                "active": true,
                "scope": f.token.scopes.join(" "),
                "client_id": f.token.client_id,
                "sub": f.token.subject,
                "aud": f.token.audience,
                "iss": app.config.issuer,
                "iat": f.token.issued_at,
                "exp": f.token.expires_at,
                "jti": f.token.jti,
                "token_type": "Bearer",
            });
            // RFC 8693 §4.1, §4.4: who acts for the subject, and who may, as the ledger recorded them.
            if let Some(act) = &f.token.act {
                answer["act"] = json!(act);
            }
            if let Some(may_act) = &f.token.may_act {
                answer["may_act"] = json!(may_act);
            }
            // RFC 9449 §6.2: a resource learns the key a token is bound to, and must demand a proof by it.
            if let Some(jkt) = &f.token.dpop_jkt {
                answer["token_type"] = json!(DPOP_TOKEN_TYPE);
                answer["cnf"] = json!({ "jkt": jkt });
            }
            answer
        }
        Some(_) => json!({ "active": false }),
        None => refresh_token(&app, &caller, token, now).await?,
    };
    let mut response = Json(answer).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// What introspection says about a refresh token (RFC 7662 §2.2), by the hash of its value.
async fn refresh_token(
    app: &App,
    caller: &Client,
    value: &str,
    now: UnixSeconds,
) -> Result<Value, OAuthError> {
    let token: Option<RefreshToken> = store::get(app.store.as_ref(), &refresh::hash(value)).await?;
    let Some(token) = token.filter(|t| may_see_refresh_token(caller, t)) else {
        return Ok(json!({ "active": false }));
    };
    let client: Option<Client> = store::get(app.store.as_ref(), &token.client_id).await?;
    let delegation: Option<Delegation> = store::get(app.store.as_ref(), &token.delegation_id).await?;
    if !queries::refresh_token_active(&token, client.as_ref(), delegation.as_ref(), now) {
        return Ok(json!({ "active": false }));
    }
    let mut answer = json!({
        "active": true,
        "scope": token.scopes.join(" "),
        "client_id": token.client_id,
        "sub": token.subject,
        "iss": app.config.issuer,
        "iat": token.issued_at,
        "token_type": "refresh_token",
    });
    if let Some(exp) = token.expires_at {
        answer["exp"] = json!(exp);
    }
    Ok(answer)
}
