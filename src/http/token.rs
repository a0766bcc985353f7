//! `POST /token` (RFC 6749 §3.2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::client_auth::authenticate;
use super::login::{Peer, peer_of};
use crate::app::AppRef;
use crate::grants::{self, GrantType};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;

/// Authenticates the client, runs the grant, and answers with `Cache-Control: no-store`.
pub async fn token(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, OAuthError> {
    let grant = GrantType::parse(form.require("grant_type")?)?;
    let now = app.now();
    let client = authenticate(&app, &headers, &form, &app.endpoints.token, now).await?;
    let body = grants::dispatch(&app, grant, &client, &form, peer_of(peer), now).await?;
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
