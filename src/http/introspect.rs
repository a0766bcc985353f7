//! `POST /introspect` (RFC 7662).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::client_auth::authenticate;
use crate::access_tokens;
use crate::app::{AppRef, now};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;

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
        _ => json!({ "active": false }),
    }))
}
