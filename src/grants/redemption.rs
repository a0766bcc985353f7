//! What the grants that redeem an approval the user gave earlier on a page share (the device code,
//! RFC 8628; CIBA): the policy decides again on what the user approved, and the redemption records the
//! new delegation and its tokens in one append with the request's end.

use projections::clients::Client;
use projections::event::{AuthContext, GrantedScope, UnixSeconds};
use projections::users::User;

use super::{GrantType, TokenResponse, prepare_access_token};
use crate::app::App;
use crate::authorize::issue;
use crate::delegations::{self, Creation};
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::OAuthError;
use crate::policy::external::{self, External};
use crate::store::{AppendError, AppendRequest};

/// An approval as the request's row holds it.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    pub auth: &'a AuthContext,
    pub scopes: &'a [GrantedScope],
    pub audience: &'a [String],
    /// When the request was made: the step-ups the approval met count from then.
    pub requested_at: UnixSeconds,
}

fn approved_names(scopes: &[GrantedScope]) -> Vec<String> {
    scopes.iter().map(|s| s.scope.clone()).collect()
}

/// Decides what an approval issues now: exactly what the user approved, less what the policy denies
/// now (even if the user approved it); nothing left is `invalid_grant`. Pure.
pub fn decide(
    policy: &Policy,
    client: &Client,
    grant: GrantType,
    user: &User,
    approval: Approval<'_>,
    external: &External,
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    let approved = approved_names(approval.scopes);
    let resource = approval
        .audience
        .first()
        .filter(|a| client.spec.resources.contains(a))
        .map(String::as_str);
    let nothing_left = || OAuthError::InvalidGrant("nothing the user approved is allowed now".into());
    let decision = issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject: &user.subject,
            subject_attributes: &user.attributes,
            requested: Some(&approved),
            resource,
            grant_type: grant.name(),
            // Decided with the user present on the page; their answers stand, and a step-up is met
            // only by the authentication the approval recorded.
            user_present: true,
            auth: approval.auth,
            delegation: None,
            authorization_details: &serde_json::Value::Null,
            consents: &[],
            approved_now: &approved,
            fresh_since: Some(approval.requested_at),
            external,
            now,
        },
    );
    match decision {
        Ok(d) if d.scopes.is_empty() => Err(nothing_left()),
        Ok(d) => Ok(d),
        Err(OAuthError::InvalidScope(_)) => Err(nothing_left()),
        Err(e) => Err(e),
    }
}

/// Reads the approving user and what the policy's external decision points say about the approved
/// scopes: what [`decide`] needs beyond the request's row.
pub async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    grant: GrantType,
    subject: &str,
    scopes: &[GrantedScope],
    now: UnixSeconds,
) -> Result<(Option<User>, External), OAuthError> {
    let user = crate::users::by_subject(app.store.as_ref(), subject).await?;
    let approved = approved_names(scopes);
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject,
            grant_type: grant.name(),
            user_present: true,
            requested: Some(&approved),
            now,
        },
    )
    .await;
    Ok((user, external))
}

/// Records a redemption: the delegation, the request's end (`ended`, given the new delegation's id, an
/// append that expects the request answered and not yet redeemed), the access token, a refresh token
/// when the client may refresh and an ID token when `openid` was granted, in one append. When another
/// redemption won, answers `used()`.
#[allow(clippy::too_many_arguments)] // the facts, the decision, the request's end and the instant
pub async fn record(
    app: &App,
    policy: &Policy,
    client: &Client,
    grant: GrantType,
    user: &User,
    auth: &AuthContext,
    decision: &Decision,
    ended: impl FnOnce(&str) -> AppendRequest,
    used: fn() -> OAuthError,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let (delegation_id, created) = delegations::create(Creation {
        subject: &user.subject,
        client_id: &client.spec.client_id,
        scopes: &issue::granted(decision),
        authorization_details: &serde_json::Value::Null,
        auth,
        grant_type: grant.name(),
        audience: &decision.audience,
        now,
    });
    let redeemed = ended(&delegation_id);
    let (mut response, access) = prepare_access_token(
        app,
        policy,
        client,
        &user.subject,
        grant,
        decision,
        Some(delegation_id.clone()),
    )
    .await?;
    let append = super::with_user_tokens(
        app,
        policy,
        client,
        user,
        auth,
        None,
        decision,
        &delegation_id,
        &mut response,
        created.and(redeemed).and(access),
        now,
    )
    .await?;
    match app.store.append(append).await {
        Ok(_) => Ok(response),
        // Another poll redeemed the request first.
        Err(AppendError::Conflict { .. }) => Err(used()),
        Err(AppendError::Store(e)) => Err(e.into()),
        Err(other) => Err(OAuthError::internal("recording a redemption", other)),
    }
}
