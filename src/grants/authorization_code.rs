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

use projections::event::UnixSeconds;

use super::{GrantType, TokenResponse, prepare_access_token};
use crate::app::App;
use crate::authorize::issue::{self, code_hash, code_stream};
use crate::delegations::{self, Creation, reason};
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::OAuthError;
use crate::oauth::client_auth::constant_time_eq;
use crate::oauth::form::Form;
use crate::policy::external::{self, External};
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

/// The token request's parameters for a redemption.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// What a redemption is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The code the request names, if this client holds such a code.
    pub code: Option<AuthorizationCode>,
    /// The user the code was issued to.
    pub user: Option<User>,
    /// What the policy's external decision points answered.
    pub external: External,
}

/// What a redemption becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new delegation holding what `decision` grants, and its tokens.
    Redeem(Box<Decision>),
    /// The code was used before: what it became is revoked (RFC 6749 §4.1.2).
    Replay { delegation_id: String },
}

fn unknown_code() -> OAuthError {
    OAuthError::InvalidGrant("the code is unknown, expired, or not this client's".into())
}

/// Decides a redemption: replay, expiry, the redirect URI, PKCE and the account, then the policy again
/// (what it denies now is not issued, even if the user approved it). Pure.
pub fn decide(
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Outcome, OAuthError> {
    let code = facts
        .code
        .as_ref()
        .filter(|c| c.client_id == client.spec.client_id)
        .ok_or_else(unknown_code)?;
    if let Some(delegation_id) = &code.redeemed_into {
        return Ok(Outcome::Replay {
            delegation_id: delegation_id.clone(),
        });
    }
    if now >= code.expires_at {
        return Err(unknown_code());
    }
    // RFC 6749 §4.1.3: required when the authorization request named it, and then identical.
    match request.redirect_uri {
        Some(uri) if uri == code.redirect_uri => {}
        Some(_) => return Err(OAuthError::InvalidGrant("redirect_uri does not match".into())),
        None if code.redirect_uri_in_request => {
            return Err(OAuthError::InvalidRequest(
                "missing parameter redirect_uri: the authorization request named one".into(),
            ));
        }
        None => {}
    }
    check_pkce(code, request.code_verifier)?;
    let user = facts
        .user
        .as_ref()
        .filter(|u| u.is_enabled() && u.subject == code.subject)
        .ok_or_else(|| OAuthError::InvalidGrant("the user can no longer sign in".into()))?;
    let approved: Vec<String> = code.scopes.iter().map(|s| s.scope.clone()).collect();
    let resource = code
        .audience
        .first()
        .filter(|a| client.spec.resources.contains(a))
        .map(String::as_str);
    let nothing_left = || OAuthError::InvalidGrant("nothing the code grants is allowed now".into());
    let decision = issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject: &user.subject,
            subject_attributes: &user.attributes,
            requested: Some(&approved),
            resource,
            grant_type: GrantType::AuthorizationCode.name(),
            // The decision the code carries was made with the user present; their answers stand, and a
            // step-up is met only by the authentication the code recorded.
            user_present: true,
            auth: &code.auth,
            delegation: None,
            authorization_details: &code.authorization_details,
            consents: &[],
            approved_now: &approved,
            fresh_since: code.requested_at,
            external: &facts.external,
            now,
        },
    )
    .map_err(|e| match e {
        OAuthError::InvalidScope(_) => nothing_left(),
        other => other,
    })?;
    if decision.scopes.is_empty() {
        return Err(nothing_left());
    }
    Ok(Outcome::Redeem(Box::new(decision)))
}

/// Reads what [`decide`] needs: the code, its user, and the external decision points' verdicts.
async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    hash: &str,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let store = app.store.as_ref();
    let code: Option<AuthorizationCode> = store::get(store, hash)
        .await?
        .filter(|c: &AuthorizationCode| c.client_id == client.spec.client_id);
    let Some(code) = code else {
        return Ok(Facts::default());
    };
    let user = crate::users::by_subject(store, &code.subject).await?;
    let approved: Vec<String> = code.scopes.iter().map(|s| s.scope.clone()).collect();
    let external = match (&user, &code.redeemed_into) {
        (Some(user), None) => {
            external::fetch(
                &app.http,
                policy,
                external::Asking {
                    client: &client.spec,
                    subject: &user.subject,
                    grant_type: GrantType::AuthorizationCode.name(),
                    user_present: true,
                    requested: Some(&approved),
                    now,
                },
            )
            .await
        }
        _ => External::default(),
    };
    Ok(Facts {
        code: Some(code),
        user,
        external,
    })
}

/// Revokes what a replayed code became, and refuses the request.
async fn replayed(app: &App, delegation_id: &str, now: UnixSeconds) -> Result<TokenResponse, OAuthError> {
    let revoked = delegations::revoke(delegation_id, reason::CODE_REPLAY, ExpectedVersion::Any, now);
    super::record(app, revoked).await?;
    Err(OAuthError::InvalidGrant(
        "the code was already used; every token issued from it is revoked".into(),
    ))
}

/// Exchanges a code for an access token, a refresh token (when the client may refresh) and, when
/// `openid` was granted, an ID token: fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let hash = code_hash(form.require("code")?);
    let policy = app.policy();
    let facts = fetch(app, &policy, client, &hash, now).await?;
    let request = Request {
        redirect_uri: form.get("redirect_uri"),
        code_verifier: form.get("code_verifier"),
    };
    match decide(&policy, client, &facts, request, now)? {
        Outcome::Replay { delegation_id } => replayed(app, &delegation_id, now).await,
        Outcome::Redeem(decision) => record(app, &policy, client, &facts, &hash, &decision, now).await,
    }
}

/// Records a redemption: the delegation, the code's end, the access token, and the refresh and ID
/// tokens, in one append that expects the code unredeemed.
async fn record(
    app: &App,
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    hash: &str,
    decision: &Decision,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let (Some(code), Some(user)) = (&facts.code, &facts.user) else {
        return Err(unknown_code());
    };
    let (delegation_id, created) = delegations::create(Creation {
        subject: &user.subject,
        client_id: &client.spec.client_id,
        scopes: &issue::granted(decision),
        authorization_details: &code.authorization_details,
        auth: &code.auth,
        grant_type: GrantType::AuthorizationCode.name(),
        audience: &decision.audience,
        now,
    });
    let redeemed = AppendRequest::to_stream(
        code_stream(hash),
        ExpectedVersion::Exact(1),
        vec![Event::AuthorizationCodeRedeemed(AuthorizationCodeRedeemed {
            v: V1,
            code_hash: hash.to_owned(),
            delegation_id: delegation_id.clone(),
            at: now,
        })],
    );
    let (mut response, access) = prepare_access_token(
        app,
        policy,
        client,
        &user.subject,
        GrantType::AuthorizationCode,
        decision,
        Some(delegation_id.clone()),
    )
    .await?;
    let append = super::with_user_tokens(
        app,
        policy,
        client,
        user,
        &code.auth,
        code.nonce.as_deref(),
        decision,
        &delegation_id,
        &mut response,
        created.and(redeemed).and(access),
        now,
    )
    .await?;
    match app.store.append(append).await {
        Ok(_) => Ok(response),
        // Another request redeemed the code first: this one is the replay.
        Err(AppendError::Conflict { .. }) => {
            match store::get::<AuthorizationCode>(app.store.as_ref(), hash).await? {
                Some(AuthorizationCode {
                    redeemed_into: Some(d),
                    ..
                }) => replayed(app, &d, now).await,
                _ => Err(unknown_code()),
            }
        }
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

    // ---- decide: given these rows and this request, then this outcome ----

    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::event::{AuthContext, GrantedScope};
    use serde_json::Value;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn policy() -> Policy {
        let toml = r#"
            [[authorizers]]
            name = "mfa"
            type = "acr"
            required = "mfa"
            order = ["pwd", "mfa"]
            [[authorizers]]
            name = "never"
            type = "deny"
            reason = "retired"
            [[scopes]]
            name = "read"
            [[scopes]]
            name = "pay"
            authorizers = ["mfa"]
            [[scopes]]
            name = "old"
            authorizers = ["never"]
        "#;
        testing::policy(toml)
    }

    fn app_client() -> Client {
        let mut c = client("app");
        c.spec.scopes = vec!["read".into(), "pay".into(), "old".into()];
        c
    }

    fn code(scopes: &[&str]) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: "h".into(),
            client_id: "app".into(),
            subject: "sub-ann".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: Some(CHALLENGE.into()),
            nonce: None,
            scopes: scopes
                .iter()
                .map(|s| GrantedScope {
                    scope: (*s).into(),
                    expires_at: None,
                })
                .collect(),
            audience: vec![],
            authorization_details: Value::Null,
            auth: AuthContext {
                acr: Some("pwd".into()),
                amr: vec!["pwd".into()],
                auth_time: Some(NOW - 30),
            },
            issued_position: 1,
            issued_at: NOW - 10,
            expires_at: NOW + 50,
            redeemed_into: None,
            requested_at: Some(NOW - 40),
            redirect_uri_in_request: true,
        }
    }

    fn user() -> User {
        crate::policy::authorizers::testing::ann()
    }

    fn given(code: AuthorizationCode) -> Facts {
        Facts {
            code: Some(code),
            user: Some(user()),
            external: External::default(),
        }
    }

    const GOOD: Request<'static> = Request {
        redirect_uri: Some("https://app.example/cb"),
        code_verifier: Some(VERIFIER),
    };

    fn when(facts: &Facts, request: Request<'_>) -> Result<Outcome, OAuthError> {
        decide(&policy(), &app_client(), facts, request, NOW)
    }

    fn issued(outcome: Result<Outcome, OAuthError>) -> Vec<String> {
        match outcome {
            Ok(Outcome::Redeem(d)) => d.scope_names(),
            other => panic!("expected a redemption, got {other:?}"),
        }
    }

    fn refused(outcome: Result<Outcome, OAuthError>) -> String {
        match outcome {
            Err(e) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn redemption_table() {
        let mut redeemed = code(&["read"]);
        redeemed.redeemed_into = Some("d1".into());
        let mut expired = code(&["read"]);
        expired.expires_at = NOW;
        let mut other_client = code(&["read"]);
        other_client.client_id = "other".into();
        let mut unnamed = code(&["read"]);
        unnamed.redirect_uri_in_request = false;
        let mut disabled = given(code(&["read"]));
        if let Some(u) = disabled.user.as_mut() {
            u.disabled = Some("left".into());
        }
        let no_redirect = Request {
            redirect_uri: None,
            ..GOOD
        };
        let wrong_redirect = Request {
            redirect_uri: Some("https://app.example/other"),
            ..GOOD
        };
        let no_verifier = Request {
            code_verifier: None,
            ..GOOD
        };
        let wrong_verifier = Request {
            code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"),
            ..GOOD
        };

        // Given a good code, when redeemed correctly, then its scopes
        assert_eq!(issued(when(&given(code(&["read"])), GOOD)), ["read"]);
        // Given no such code (or another client's), then invalid_grant
        assert_eq!(refused(when(&Facts::default(), GOOD)), "invalid_grant");
        assert_eq!(refused(when(&given(other_client), GOOD)), "invalid_grant");
        // Given a redeemed code, then a replay of what it became
        assert_eq!(
            when(&given(redeemed), GOOD),
            Ok(Outcome::Replay {
                delegation_id: "d1".into()
            })
        );
        // Given an expired code, then invalid_grant
        assert_eq!(refused(when(&given(expired), GOOD)), "invalid_grant");
        // redirect_uri: different is invalid_grant; missing is invalid_request when the request named it
        assert_eq!(
            refused(when(&given(code(&["read"])), wrong_redirect)),
            "invalid_grant"
        );
        assert_eq!(
            refused(when(&given(code(&["read"])), no_redirect)),
            "invalid_request"
        );
        assert_eq!(issued(when(&given(unnamed), no_redirect)), ["read"]);
        // PKCE: the verifier is required and must match
        assert_eq!(
            refused(when(&given(code(&["read"])), no_verifier)),
            "invalid_grant"
        );
        assert_eq!(
            refused(when(&given(code(&["read"])), wrong_verifier)),
            "invalid_grant"
        );
        // A disabled account, then invalid_grant
        assert_eq!(refused(when(&disabled, GOOD)), "invalid_grant");
        // What the policy denies now is not issued; when nothing is left, invalid_grant
        assert_eq!(issued(when(&given(code(&["read", "old"])), GOOD)), ["read"]);
        assert_eq!(refused(when(&given(code(&["old"])), GOOD)), "invalid_grant");
    }

    #[test]
    fn a_code_carries_no_step_up_its_sign_in_did_not_meet() {
        // Given a code for `pay` (needs mfa) issued to a password sign-in
        let pwd = given(code(&["read", "pay"]));
        // Then `pay` is not issued, however the code came to hold it
        assert_eq!(issued(when(&pwd, GOOD)), ["read"]);
        // And with an mfa sign-in it is
        let mut mfa = code(&["read", "pay"]);
        mfa.auth.acr = Some("mfa".into());
        assert_eq!(issued(when(&given(mfa), GOOD)), ["read", "pay"]);
    }
}
