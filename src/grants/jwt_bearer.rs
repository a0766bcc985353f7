//! RFC 7523 §2.1: a JWT from a trusted issuer, asserting which user the client acts for, as a grant.
//!
//! The user is absent (DESIGN.md, "The issuance decision", step 3): this is a new delegation whose
//! consent-requiring scopes come only from a standing consent in the ledger, decided by
//! [`user_absent`]. The issuer bounds what its assertions can obtain (its `scopes`), before the client's
//! scopes and the policy narrow it further. Each assertion is used once: its `jti` is claimed (per
//! issuer) in the append that records the token, until no server would accept it any more.

use projections::clients::Client;
use projections::event::{AuthContext, UnixSeconds};

use super::user_absent::{self, Facts};
use super::{GrantType, TokenResponse};
use crate::app::App;
use crate::issuance::{self, Decision, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::store::AppendRequest;
use crate::trust::{self, assertion::LEEWAY};

/// The `grant_type` value (RFC 7523 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The scopes the request is decided for, kept to those the issuer's assertions may obtain: the
/// requested ones, or the client's defaults when none are named. A scope matches the issuer's list by
/// name or by the template it falls under.
pub fn within_issuer_scopes(
    policy: &Policy,
    client: &Client,
    issuer_scopes: &[String],
    requested: Option<&[String]>,
) -> Vec<String> {
    issuance::candidates(policy, &client.spec, requested)
        .into_iter()
        .filter(|s| {
            issuer_scopes.iter().any(|allowed| {
                allowed == s || policy.engine.find(s).is_some_and(|(def, _)| &def.name == allowed)
            })
        })
        .collect()
}

/// Decides a JWT bearer grant for a verified assertion whose issuer may obtain `issuer_scopes`. Pure.
pub fn decide(
    policy: &Policy,
    client: &Client,
    issuer_scopes: &[String],
    facts: &Facts,
    request: user_absent::Request<'_>,
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    let within = within_issuer_scopes(policy, client, issuer_scopes, request.scope);
    if within.is_empty() {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes may be obtained with this issuer's assertions".into(),
        ));
    }
    user_absent::decide(
        policy,
        client,
        facts,
        GrantType::JwtBearer,
        // An assertion says who the user is, not how they authenticated: it meets no step-up.
        &AuthContext::default(),
        user_absent::Request {
            scope: Some(&within),
            resource: request.resource,
        },
        now,
    )
}

/// Issues tokens on an assertion: verify it, claim its `jti`, fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let assertion = form.require("assertion")?;
    let limits = &app.config.limits;
    let scope = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let request = user_absent::Request {
        scope: scope.as_deref(),
        resource: form.get("resource"),
    };
    let verified = trust::verify(app, assertion, now).await?;
    // Claimed in the issuance's own append, kept until the assertion's exp plus the leeway (as long as
    // any check here would still accept it): of two requests with one assertion only one is recorded,
    // a refused request uses nothing up, and the claim costs no commit of its own.
    let key = format!("jwt-bearer:{}:{}", verified.issuer, verified.jti);
    let used = AppendRequest::claiming(&key, verified.expires_at + LEEWAY, now);
    let Some(user) = verified.user else {
        return Err(OAuthError::InvalidGrant(
            "the assertion's subject is not a user of this server".into(),
        ));
    };
    let policy = app.policy();
    let within = within_issuer_scopes(&policy, client, &verified.scopes, request.scope);
    let facts = user_absent::fetch(
        app,
        &policy,
        client,
        Some(user),
        GrantType::JwtBearer,
        user_absent::Request {
            scope: Some(&within),
            resource: request.resource,
        },
        now,
    )
    .await?;
    let decision = decide(&policy, client, &verified.scopes, &facts, request, now)?;
    let Some(user) = &facts.user else {
        return Err(OAuthError::InvalidGrant(
            "the assertion's subject is not a user of this server".into(),
        ));
    };
    user_absent::record(
        app,
        &policy,
        client,
        user,
        GrantType::JwtBearer,
        &AuthContext::default(),
        &decision,
        Some(used),
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use crate::policy::external::External;
    use projections::consents::{Consent, Decision as Granted};
    use projections::users::User;
    use serde_json::Value;

    fn policy(strict: bool) -> Policy {
        testing::policy(&format!(
            r#"
            [policy]
            strict_consent = {strict}
            [[authorizers]]
            name = "consent"
            type = "consent"
            [[scopes]]
            name = "profile"
            default = true
            [[scopes]]
            name = "messages:read"
            authorizers = ["consent"]
            [[scopes]]
            name = "admin"
            [[scopes]]
            name = "account.*"
        "#
        ))
    }

    fn app_client() -> Client {
        let mut c = client("app");
        c.spec.grant_types = vec![GRANT_TYPE.into()];
        c.spec.scopes = ["profile", "messages:read", "admin", "account.*"]
            .map(String::from)
            .to_vec();
        c
    }

    fn given(consent: bool, disabled: bool) -> Facts {
        Facts {
            user: Some(User {
                username: "ann".into(),
                subject: "sub-ann".into(),
                attributes: Value::Null,
                has_password: false,
                totp_enabled: false,
                created_at: 0,
                disabled: disabled.then(|| "left".into()),
            }),
            consents: if consent {
                vec![Consent {
                    consent_id: "c1".into(),
                    subject: "sub-ann".into(),
                    client_id: "app".into(),
                    decision: Granted::Granted,
                    scopes: vec!["messages:read".into()],
                    authorization_details: Value::Null,
                    given_at: NOW - 100,
                    position: 7,
                    expires_at: None,
                    revoked_at: None,
                }]
            } else {
                vec![]
            },
            external: External::default(),
        }
    }

    const ISSUER: &[&str] = &["profile", "messages:read", "account.*"];

    fn when(strict: bool, facts: &Facts, requested: Option<&[&str]>) -> Result<Vec<String>, String> {
        let issuer: Vec<String> = ISSUER.iter().map(|s| (*s).to_owned()).collect();
        let requested: Option<Vec<String>> = requested.map(|r| r.iter().map(|s| (*s).to_owned()).collect());
        decide(
            &policy(strict),
            &app_client(),
            &issuer,
            facts,
            user_absent::Request {
                scope: requested.as_deref(),
                resource: None,
            },
            NOW,
        )
        .map(|d| d.scope_names())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn jwt_bearer_table() {
        let all: &[&str] = &["profile", "messages:read", "admin"];
        // Given no standing consent, then the consent scope is dropped, and what the issuer may not
        // obtain (admin) is never issued
        assert_eq!(
            when(false, &given(false, false), Some(all)),
            Ok(vec!["profile".into()])
        );
        // Given a standing consent, then issued
        assert_eq!(
            when(false, &given(true, false), Some(all)),
            Ok(vec!["profile".into(), "messages:read".into()])
        );
        // Under strict_consent the ledger's consent does not count
        assert_eq!(
            when(true, &given(true, false), Some(all)),
            Ok(vec!["profile".into()])
        );
        // Given no scope requested, then the client's defaults the issuer allows
        assert_eq!(
            when(false, &given(false, false), None),
            Ok(vec!["profile".into()])
        );
        // Given a dynamic scope under an allowed template, then issued
        assert_eq!(
            when(false, &given(false, false), Some(&["account.42"])),
            Ok(vec!["account.42".into()])
        );
        // Given only scopes beyond the issuer's, then invalid_scope
        assert_eq!(
            when(false, &given(true, false), Some(&["admin"])),
            Err("invalid_scope".into())
        );
        // Given a disabled user or no local user, then invalid_grant
        assert_eq!(
            when(false, &given(true, true), Some(all)),
            Err("invalid_grant".into())
        );
        assert_eq!(
            when(false, &Facts::default(), Some(all)),
            Err("invalid_grant".into())
        );
    }
}
