//! `POST /introspect` (RFC 7662).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use projections::clients::Client;
use projections::delegations::Delegation;
use projections::queries;
use projections::refresh_tokens::RefreshToken;
use serde_json::{Value, json};

use super::client_auth::authenticate;
use crate::access_tokens;
use crate::app::{App, AppRef, now};
use crate::grants::refresh;
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::store;

/// Answers whether a token is active and, if so, what it carries. Only authenticated clients may ask.
pub async fn introspect(
    State(app): State<AppRef>,
    headers: HeaderMap,
    form: Form,
) -> Result<Json<Value>, OAuthError> {
    authenticate(&app, &headers, &form, &app.endpoints.introspect).await?;
    let token = form.require("token")?;
    let found = access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now()).await?;
    Ok(Json(match found {
        Some(f) if f.active => json!({
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
        }),
        Some(_) => json!({ "active": false }),
        None => refresh_token(&app, token).await?,
    }))
}

/// What introspection says about a refresh token (RFC 7662 §2.2), by the hash of its value.
async fn refresh_token(app: &App, value: &str) -> Result<Value, OAuthError> {
    let token: Option<RefreshToken> = store::get(app.store.as_ref(), &refresh::hash(value)).await?;
    let Some(token) = token else {
        return Ok(json!({ "active": false }));
    };
    let client: Option<Client> = store::get(app.store.as_ref(), &token.client_id).await?;
    let delegation: Option<Delegation> = store::get(app.store.as_ref(), &token.delegation_id).await?;
    if !queries::refresh_token_active(&token, client.as_ref(), delegation.as_ref(), now()) {
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
