//! RFC 6749 §4.1.3: redeeming an authorization code, with RFC 7636 PKCE (S256 only).
//!
//! A code is single use: redeeming it appends `AuthorizationCodeRedeemed` to the code's stream with an
//! expected version, so of two concurrent redemptions exactly one succeeds. A code presented again —
//! a replay, maybe by whoever stole it — revokes the delegation it became and with it every token
//! issued from it (RFC 6749 §4.1.2, RFC 9700 §4.5).

use base64::Engine;
use projections::Event;
use projections::clients::Client;
use projections::codes::AuthorizationCode;
use projections::event::{AuthorizationCodeRedeemed, V1};
use projections::users::User;
use sha2::{Digest, Sha256};

use super::refresh::{self, Minting};
use super::{GrantType, TokenResponse, prepare_access_token};
use crate::app::{App, now};
use crate::authorize::issue::{self, code_hash, code_stream};
use crate::delegations::{self, Creation, reason};
use crate::issuance::IssuanceRequest;
use crate::oauth::OAuthError;
use crate::oauth::client_auth::constant_time_eq;
use crate::oauth::form::Form;
use crate::oidc::{self, IdTokenFor, OPENID};
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion};

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` answers `challenge` (S256), compared in constant time.
pub fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    is_verifier(verifier) && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The PKCE rule for a code: a challenge needs its verifier; a verifier without a challenge is a
/// downgrade attempt (RFC 9700 §4.8.2) and is refused too.
fn check_pkce(code: &AuthorizationCode, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (&code.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce_matches(challenge, v) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::InvalidGrant("code_verifier does not match".into())),
        (Some(_), None) => Err(OAuthError::InvalidGrant("code_verifier is required".into())),
        (None, Some(_)) => Err(OAuthError::InvalidGrant(
            "code_verifier sent for a code issued without code_challenge".into(),
        )),
        (None, None) => Ok(()),
    }
}

/// Revokes what a replayed code became, and refuses the request.
async fn replayed(app: &App, delegation_id: &str) -> Result<TokenResponse, OAuthError> {
    let revoked = delegations::revoke(delegation_id, reason::CODE_REPLAY, ExpectedVersion::Any, now());
    super::record(app, revoked).await?;
    Err(OAuthError::InvalidGrant(
        "the code was already used; every token issued from it is revoked".into(),
    ))
}

/// Exchanges a code for an access token, a refresh token (when the client may refresh) and, when
/// `openid` was granted, an ID token.
pub async fn grant(app: &App, client: &Client, form: &Form) -> Result<TokenResponse, OAuthError> {
    let store = app.store.as_ref();
    let hash = code_hash(form.require("code")?);
    let now = now();
    let invalid = || OAuthError::InvalidGrant("the code is unknown, expired, or not this client's".into());
    let code: AuthorizationCode = store::get(store, &hash)
        .await?
        .filter(|c: &AuthorizationCode| c.client_id == client.spec.client_id)
        .ok_or_else(invalid)?;
    if let Some(delegation_id) = &code.redeemed_into {
        return replayed(app, delegation_id).await;
    }
    if now >= code.expires_at {
        return Err(invalid());
    }
    match form.get("redirect_uri") {
        Some(uri) if uri == code.redirect_uri => {}
        Some(_) => return Err(OAuthError::InvalidGrant("redirect_uri does not match".into())),
        None if client.spec.redirect_uris.len() > 1 => {
            return Err(OAuthError::InvalidRequest(
                "missing parameter redirect_uri".into(),
            ));
        }
        None => {}
    }
    check_pkce(&code, form.get("code_verifier"))?;
    let user: User = crate::users::by_subject(store, &code.subject)
        .await?
        .filter(User::is_enabled)
        .ok_or_else(|| OAuthError::InvalidGrant("the user can no longer sign in".into()))?;

    // The policy is evaluated again: what it denies now is not issued, even if the user approved it.
    let policy = app.policy();
    let approved: Vec<String> = code.scopes.iter().map(|s| s.scope.clone()).collect();
    let resource = code
        .audience
        .first()
        .filter(|a| client.spec.resources.contains(a))
        .map(String::as_str);
    let decision = super::decide(
        app,
        &policy,
        IssuanceRequest {
            client,
            subject: &user.subject,
            subject_attributes: &user.attributes,
            requested: Some(&approved),
            resource,
            grant_type: GrantType::AuthorizationCode.name(),
            user_present: true,
            auth: &code.auth,
            delegation: None,
            authorization_details: &code.authorization_details,
            consents: &[],
            approved_now: &approved,
            external: &Default::default(),
            now,
        },
    )
    .await
    .map_err(|e| match e {
        OAuthError::InvalidScope(_) => {
            OAuthError::InvalidGrant("nothing the code grants is allowed now".into())
        }
        other => other,
    })?;
    if decision.scopes.is_empty() {
        return Err(OAuthError::InvalidGrant(
            "nothing the code grants is allowed now".into(),
        ));
    }

    let (delegation_id, created) = delegations::create(Creation {
        subject: &user.subject,
        client_id: &client.spec.client_id,
        scopes: &issue::granted(&decision),
        authorization_details: &code.authorization_details,
        auth: &code.auth,
        grant_type: GrantType::AuthorizationCode.name(),
        now,
    });
    let redeemed = AppendRequest::to_stream(
        code_stream(&hash),
        ExpectedVersion::Exact(1),
        vec![Event::AuthorizationCodeRedeemed(AuthorizationCodeRedeemed {
            v: V1,
            code_hash: hash.clone(),
            delegation_id: delegation_id.clone(),
            at: now,
        })],
    );
    let (mut response, access) = prepare_access_token(
        app,
        &policy,
        client,
        &user.subject,
        GrantType::AuthorizationCode,
        &decision,
        Some(delegation_id.clone()),
    )
    .await?;
    let mut append = created.and(redeemed).and(access);
    let scopes = decision.scope_names();
    if client
        .spec
        .grant_types
        .iter()
        .any(|g| g == GrantType::RefreshToken.name())
    {
        let (value, minted) = refresh::mint(Minting {
            delegation_id: &delegation_id,
            client_id: &client.spec.client_id,
            subject: &user.subject,
            scopes: scopes.clone(),
            now,
            lifetime_seconds: app.config.tokens.refresh_token_seconds,
            parent_hash: None,
        })?;
        response.refresh_token = Some(value);
        append = append.and(minted);
    }
    if scopes.iter().any(|s| s == OPENID) {
        let (jwt, recorded) = oidc::id_token(
            app,
            IdTokenFor {
                client,
                user: &user,
                auth: &code.auth,
                nonce: code.nonce.as_deref(),
                scopes: &scopes,
                delegation_id: &delegation_id,
                policy_version: &policy.version,
                now,
            },
        )
        .await?;
        response.id_token = Some(jwt);
        append = append.and(recorded);
    }
    match app.store.append(append).await {
        Ok(_) => Ok(response),
        // Another request redeemed the code first: this one is the replay.
        Err(AppendError::Conflict { .. }) => match store::get::<AuthorizationCode>(store, &hash).await? {
            Some(AuthorizationCode {
                redeemed_into: Some(d),
                ..
            }) => replayed(app, &d).await,
            _ => Err(invalid()),
        },
        Err(AppendError::Store(e)) => Err(e.into()),
        Err(other) => Err(OAuthError::internal("recording the code exchange", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, verifier));
        assert!(!pkce_matches(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"
        ));
        assert!(!pkce_matches(challenge, "short"));
    }
}
