//! `POST /revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use projections::Event;
use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{RefreshTokenRevoked, RevocationReason, TokenRevoked, UnixSeconds, V1};
use projections::refresh_tokens::{RefreshStatus, RefreshToken};

use super::client_auth::authenticate;
use crate::access_tokens;
use crate::app::{App, AppRef};
use crate::delegations;
use crate::grants::refresh;
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion};

/// Revokes a token the calling client was issued. Unknown tokens and other clients' tokens answer 200 and
/// change nothing, as §2.2 says.
///
/// Access tokens (JWTs) are tried first whatever `token_type_hint` says: a refresh token is never a JWT,
/// so the hint changes no answer.
pub async fn revoke(
    State(app): State<AppRef>,
    headers: HeaderMap,
    form: Form,
) -> Result<StatusCode, OAuthError> {
    let now = app.now();
    let client = authenticate(&app, &headers, &form, &app.endpoints.revoke, now).await?;
    let token = form.require("token")?;
    let Some(found) = access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now).await? else {
        revoke_refresh_token(&app, &client, token, now).await?;
        return Ok(StatusCode::OK);
    };
    // RFC 7009 §2.2: another client's token is left alone with the same 200 an unknown token gets, so
    // revocation is no oracle for which tokens exist or are valid.
    if found.token.client_id != client.spec.client_id || found.token.revoked_at.is_some() {
        return Ok(StatusCode::OK);
    }
    let event = Event::TokenRevoked(TokenRevoked {
        v: V1,
        jti: found.token.jti.clone(),
        reason: RevocationReason::ClientRequest,
        at: now,
    });
    let request = AppendRequest::to_stream(
        projections::event::streams::token(&found.token.jti),
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

/// Revokes a refresh token of `client` and, as RFC 7009 §2.1 asks, the grant it belongs to, so the access
/// tokens issued from it end too. Another client's token, or an unknown value, changes nothing: the
/// answer must not reveal which it was. Each stream is expected at the version read before its row, so
/// concurrent revocations record each event once.
async fn revoke_refresh_token(
    app: &App,
    client: &Client,
    value: &str,
    now: UnixSeconds,
) -> Result<(), OAuthError> {
    let token_hash = refresh::hash(value);
    let token_stream = refresh::stream(&token_hash);
    for _ in 0..3 {
        let token_version = app.store.stream_version(&token_stream).await?;
        let token: Option<RefreshToken> = store::get(app.store.as_ref(), &token_hash).await?;
        let (Some(token_version), Some(token)) = (
            token_version,
            token.filter(|t| t.client_id == client.spec.client_id),
        ) else {
            return Ok(());
        };
        let delegation_stream = delegations::stream(&token.delegation_id);
        let delegation_version = app.store.stream_version(&delegation_stream).await?;
        let delegation: Option<Delegation> = store::get(app.store.as_ref(), &token.delegation_id).await?;
        let mut request = AppendRequest::default();
        if !matches!(token.status, RefreshStatus::Revoked { .. }) {
            request = request.and(AppendRequest::to_stream(
                token_stream.clone(),
                ExpectedVersion::Exact(token_version),
                vec![Event::RefreshTokenRevoked(RefreshTokenRevoked {
                    v: V1,
                    token_hash: token_hash.clone(),
                    reason: RevocationReason::RevokedByClient,
                    at: now,
                })],
            ));
        }
        if let (Some(version), Some(d)) = (delegation_version, &delegation)
            && d.revoked.is_none()
        {
            request = request.and(delegations::revoke(
                &token.delegation_id,
                delegations::reason::REFRESH_TOKEN_REVOKED,
                ExpectedVersion::Exact(version),
                now,
            ));
        }
        if request.events.is_empty() {
            return Ok(());
        }
        let request = request.with_metadata(projections::Metadata {
            actor: Some(format!("client:{}", client.spec.client_id)),
            ..Default::default()
        });
        match app.store.append(request).await {
            Ok(_) => return Ok(()),
            // A concurrent change (a rotation, another revocation): look again.
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(OAuthError::internal("recording the revocation", e)),
        }
    }
    Err(OAuthError::TemporarilyUnavailable)
}
