//! RFC 6749 §6: the refresh token grant, rotated on every use with reuse detection (RFC 9700 §4.14).

use projections::clients::Client;
use projections::delegations::Delegation;
use projections::event::{
    RefreshTokenIssued, RefreshTokenReuseDetected, RefreshTokenRotated, ReuseAction, UnixSeconds, V1,
};
use projections::refresh_tokens::{RefreshStatus, RefreshToken};
use projections::{Event, Metadata};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{GrantType, TokenResponse, prepare_access_token, record};
use crate::app::{App, now};
use crate::delegations;
use crate::issuance::IssuanceRequest;
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion};

/// The version of an active refresh token's stream: only its `RefreshTokenIssued`.
const ACTIVE_VERSION: u64 = 1;

/// How often a refresh re-reads after losing an optimistic check before giving up.
const ATTEMPTS: usize = 3;

/// The stream a refresh token's events go to; its version is the rotation check.
pub fn stream(token_hash: &str) -> String {
    projections::event::streams::refresh_token(token_hash)
}

/// SHA-256 (hex) of a refresh token's value: all the ledger ever holds of it.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// What a new refresh token belongs to.
#[derive(Debug, Clone)]
pub struct Minting<'a> {
    pub delegation_id: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: Vec<String>,
    pub now: UnixSeconds,
    pub lifetime_seconds: i64,
    /// The token this one replaces by rotation.
    pub parent_hash: Option<String>,
}

/// A fresh refresh token: its value (for the client, once) and the append that records its hash.
pub fn mint(m: Minting<'_>) -> Result<(String, AppendRequest), OAuthError> {
    let value = crate::clients::generate_secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let token_hash = hash(&value);
    let event = Event::RefreshTokenIssued(RefreshTokenIssued {
        v: V1,
        token_hash: token_hash.clone(),
        delegation_id: m.delegation_id.to_owned(),
        client_id: m.client_id.to_owned(),
        subject: m.subject.to_owned(),
        scopes: m.scopes,
        issued_at: m.now,
        expires_at: Some(m.now + m.lifetime_seconds),
        parent_hash: m.parent_hash,
    });
    Ok((
        value,
        AppendRequest::to_stream(stream(&token_hash), ExpectedVersion::NoStream, vec![event]),
    ))
}

/// Rotates a refresh token and issues a new access token from its delegation.
///
/// An active token is replaced by a successor in one append that also records the access token; the
/// append expects the token's stream to hold nothing but the token's issuance, so of several
/// concurrent refreshes (in this process or another sharing the database) exactly one rotates it. The
/// others, and any later presentation of the rotated token, are reuse (RFC 9700 §4.14): within the
/// client's grace window a fresh pair is issued in the same delegation, otherwise the delegation is
/// revoked.
pub async fn grant(app: &App, client: &Client, form: &Form) -> Result<TokenResponse, OAuthError> {
    let presented = form.require("refresh_token")?;
    let limits = &app.config.limits;
    let requested = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let token_hash = hash(presented);
    let stream_id = stream(&token_hash);
    for _ in 0..ATTEMPTS {
        let now = now();
        let token: Option<RefreshToken> = store::get(app.store.as_ref(), &token_hash).await?;
        let Some(token) = token else {
            return Err(invalid_grant("unknown refresh token"));
        };
        // A token of another client is as unknown to this one as a made-up value.
        if token.client_id != client.spec.client_id || !client.is_enabled() {
            return Err(invalid_grant("unknown refresh token"));
        }
        if token.expires_at.is_some_and(|exp| now >= exp) {
            return Err(invalid_grant("the refresh token has expired"));
        }
        let rotated_at = match &token.status {
            RefreshStatus::Revoked { .. } => return Err(invalid_grant("the refresh token was revoked")),
            RefreshStatus::Rotated { at, .. } => *at,
            RefreshStatus::Active => {
                let delegation: Option<Delegation> =
                    store::get(app.store.as_ref(), &token.delegation_id).await?;
                let delegation = delegation
                    .filter(|d| d.client_id == token.client_id && d.is_active_at(now))
                    .ok_or_else(|| invalid_grant("the grant behind this refresh token has ended"))?;
                let pair =
                    issue_pair(app, client, &token, &delegation, requested.as_deref(), form, now).await?;
                let rotation = AppendRequest::to_stream(
                    stream_id.clone(),
                    // Every event but `RefreshTokenIssued` changes the status, so an active token's stream
                    // is at version 1; a rotation, revocation or reuse since this read makes this fail.
                    ExpectedVersion::Exact(ACTIVE_VERSION),
                    vec![Event::RefreshTokenRotated(RefreshTokenRotated {
                        v: V1,
                        token_hash: token.token_hash.clone(),
                        successor_hash: pair.successor_hash.clone(),
                        at: now,
                    })],
                );
                let request = rotation.and(pair.request).with_metadata(pair.metadata);
                match app.store.append(request).await {
                    Ok(_) => return Ok(pair.response),
                    // Someone else changed this token first: read again and answer what it now is.
                    Err(AppendError::Conflict { stream_id: s, .. }) if s == stream_id => continue,
                    Err(AppendError::Store(e)) => return Err(OAuthError::from(e)),
                    Err(e) => return Err(OAuthError::internal("recording the rotation", e)),
                }
            }
        };
        return reuse(app, client, &token, rotated_at, requested.as_deref(), form, now).await;
    }
    Err(OAuthError::TemporarilyUnavailable)
}

fn invalid_grant(why: &str) -> OAuthError {
    OAuthError::InvalidGrant(why.into())
}

fn actor(client: &Client, policy_version: Option<String>) -> Metadata {
    Metadata {
        request_id: None,
        actor: Some(format!("client:{}", client.spec.client_id)),
        policy_version,
    }
}

/// A rotated token presented again: a fresh pair inside the client's grace window, else the delegation
/// ends.
///
/// The revocation expects the delegation's stream at the version read before its row, so of several
/// concurrent reuses exactly one records `DelegationRevoked`; the others read again and find it ended.
async fn reuse(
    app: &App,
    client: &Client,
    token: &RefreshToken,
    rotated_at: UnixSeconds,
    requested: Option<&[String]>,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let detected = |action| {
        AppendRequest::to_stream(
            stream(&token.token_hash),
            ExpectedVersion::Any,
            vec![Event::RefreshTokenReuseDetected(RefreshTokenReuseDetected {
                v: V1,
                token_hash: token.token_hash.clone(),
                delegation_id: token.delegation_id.clone(),
                client_id: token.client_id.clone(),
                action,
                at: now,
            })],
        )
    };
    let ended = || invalid_grant("the grant behind this refresh token has ended");
    let delegation_stream_id = delegations::stream(&token.delegation_id);
    for _ in 0..ATTEMPTS {
        let version = app.store.stream_version(&delegation_stream_id).await?;
        let delegation: Option<Delegation> = store::get(app.store.as_ref(), &token.delegation_id).await?;
        // Already ended (by an earlier reuse, a revocation): nothing more to record.
        let (Some(version), Some(delegation)) = (version, delegation.filter(|d| d.revoked.is_none())) else {
            return Err(ended());
        };
        let grace = i64::from(client.spec.refresh_reuse_grace_seconds);
        if grace > 0 && now - rotated_at <= grace && delegation.is_active_at(now) {
            let pair = issue_pair(app, client, token, &delegation, requested, form, now).await?;
            let request = detected(ReuseAction::GraceReissued)
                .and(pair.request)
                .with_metadata(pair.metadata);
            record(app, request).await?;
            return Ok(pair.response);
        }
        let revoked = delegations::revoke(
            &delegation.delegation_id,
            delegations::reason::REFRESH_TOKEN_REUSE,
            ExpectedVersion::Exact(version),
            now,
        );
        let request = revoked
            .and(detected(ReuseAction::DelegationRevoked))
            .with_metadata(actor(client, None));
        match app.store.append(request).await {
            Ok(_) => {
                return Err(invalid_grant(
                    "the refresh token was already used; the grant is revoked",
                ));
            }
            Err(AppendError::Conflict { stream_id, .. }) if stream_id == delegation_stream_id => continue,
            Err(AppendError::Store(e)) => return Err(OAuthError::from(e)),
            Err(e) => return Err(OAuthError::internal("recording the reuse", e)),
        }
    }
    Err(ended())
}

/// A new access token and successor refresh token, not yet recorded.
struct Pair {
    response: TokenResponse,
    /// Records the successor refresh token and the access token.
    request: AppendRequest,
    successor_hash: String,
    metadata: Metadata,
}

/// Decides again under the policy in force and prepares a fresh pair in `delegation`.
async fn issue_pair(
    app: &App,
    client: &Client,
    token: &RefreshToken,
    delegation: &Delegation,
    requested: Option<&[String]>,
    form: &Form,
    now: UnixSeconds,
) -> Result<Pair, OAuthError> {
    // RFC 6749 §6: a requested scope may only narrow what the refresh token carries.
    if let Some(r) = requested
        && let Some(extra) = r.iter().find(|s| !token.scopes.contains(s))
    {
        return Err(OAuthError::InvalidScope(format!(
            "{extra} is not in the refresh token's scope"
        )));
    }
    let wanted = requested.unwrap_or(&token.scopes);
    let subject = token.subject.as_str();
    let user = crate::users::by_subject(app.store.as_ref(), subject).await?;
    if user.as_ref().is_some_and(|u| !u.is_enabled()) {
        return Err(invalid_grant("the user's account is disabled"));
    }
    let attributes = user.map_or(Value::Null, |u| u.attributes);
    let policy = app.policy();
    let decision = super::decide(
        app,
        &policy,
        IssuanceRequest {
            client,
            subject,
            subject_attributes: &attributes,
            requested: Some(wanted),
            resource: form.get("resource"),
            grant_type: GrantType::RefreshToken.name(),
            user_present: false,
            auth: &delegation.auth,
            delegation: Some(delegation),
            authorization_details: &delegation.authorization_details,
            // Continuing a delegation: its own consent stands, and ledger consents are never consulted.
            consents: &[],
            approved_now: &[],
            external: &Default::default(),
            now,
        },
    )
    .await
    .map_err(|e| match (e, requested) {
        (OAuthError::InvalidScope(_), Some(_)) => {
            OAuthError::InvalidScope("the grant no longer holds the requested scopes".into())
        }
        (OAuthError::InvalidScope(_), None) => {
            invalid_grant("the grant no longer holds any of this refresh token's scopes")
        }
        (other, _) => other,
    })?;
    let (value, minted) = mint(Minting {
        delegation_id: &delegation.delegation_id,
        client_id: &client.spec.client_id,
        subject,
        scopes: token.scopes.clone(),
        now,
        lifetime_seconds: app.config.tokens.refresh_token_seconds,
        parent_hash: Some(token.token_hash.clone()),
    })?;
    let (mut response, access) = prepare_access_token(
        app,
        &policy,
        client,
        subject,
        GrantType::RefreshToken,
        &decision,
        Some(delegation.delegation_id.clone()),
    )
    .await?;
    response.refresh_token = Some(value.clone());
    Ok(Pair {
        response,
        request: minted.and(access),
        successor_hash: hash(&value),
        metadata: actor(client, Some(policy.version.clone())),
    })
}
