//! `POST /revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use projections::Event;
use projections::event::{TokenRevoked, V1};

use super::client_auth::authenticate;
use crate::access_tokens;
use crate::app::{AppRef, now};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::store::{AppendRequest, ExpectedVersion};

/// Revokes a token the calling client was issued. Unknown tokens answer 200, as §2.2 says.
pub async fn revoke(
    State(app): State<AppRef>,
    headers: HeaderMap,
    form: Form,
) -> Result<StatusCode, OAuthError> {
    let client = authenticate(&app, &headers, &form, &app.endpoints.revoke).await?;
    let token = form.require("token")?;
    let now = now();
    let Some(found) = access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now).await? else {
        return Ok(StatusCode::OK);
    };
    if found.token.client_id != client.spec.client_id {
        return Err(OAuthError::UnauthorizedClient(
            "the token was issued to another client".into(),
        ));
    }
    if found.token.revoked_at.is_some() {
        return Ok(StatusCode::OK);
    }
    let event = Event::TokenRevoked(TokenRevoked {
        v: V1,
        jti: found.token.jti.clone(),
        reason: "client_request".into(),
        at: now,
    });
    let request = AppendRequest::to_stream(
        format!("token-{}", found.token.jti),
        ExpectedVersion::Any,
        vec![event],
    )
    .with_metadata(projections::Metadata {
        actor: Some(format!("client:{}", client.spec.client_id)),
        ..Default::default()
    });
    app.store
        .append(request)
        .await
        .map_err(|e| OAuthError::internal("recording the revocation", e))?;
    Ok(StatusCode::OK)
}
