//! `GET/POST /userinfo` (OpenID Connect Core §5.3): the signed-in user's claims, for an access token
//! that was granted `openid`. Errors follow RFC 6750 §3.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::users::User;

use crate::access_tokens;
use crate::app::AppRef;
use crate::oidc::{OPENID, user_claims};

/// An RFC 6750 error: the status and a `WWW-Authenticate: Bearer` challenge naming it.
fn bearer_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "Bearer error=\"{error}\", error_description=\"{description}\""
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Answers with the claims the token's scopes release.
pub async fn userinfo(State(app): State<AppRef>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let invalid = || {
        bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is not active",
        )
    };
    let found = match access_tokens::find(app.store.as_ref(), &app.config.issuer, token, app.now()).await {
        Ok(Some(f)) if f.active => f,
        Ok(_) => return invalid(),
        Err(e) => return crate::oauth::OAuthError::from(e).into_response(),
    };
    if !found.token.scopes.iter().any(|s| s == OPENID) {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token was not granted openid",
        );
    }
    let user = crate::users::by_subject(app.store.as_ref(), &found.token.subject).await;
    match user.map(|u| u.filter(User::is_enabled)) {
        Ok(Some(user)) => {
            let mut r = Json(user_claims(&user, &found.token.scopes)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(None) => invalid(),
        Err(e) => crate::oauth::OAuthError::from(e).into_response(),
    }
}
