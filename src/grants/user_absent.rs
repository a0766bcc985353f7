//! A new delegation for a local user who is not there to be asked: the grants where a client presents
//! something that names the user (a JWT bearer assertion, the user's password, a token from a trusted
//! issuer) instead of sending the user to the consent page.
//!
//! Per DESIGN.md ("The issuance decision", step 3) the user is absent: a consent-requiring scope is
//! issued only on a standing, unrevoked, unexpired consent in the ledger by this user to this client
//! (never under `strict_consent`), and the trail cites that consent's position; a scope that needs a
//! step-up is dropped, since nobody can step up.

use projections::clients::Client;
use projections::consents::Consent;
use projections::event::{AuthContext, UnixSeconds};
use projections::users::User;
use serde_json::Value;

use super::refresh::{self, Minting};
use super::{Exchanged, GrantType, TokenResponse, prepare_access_token, prepare_exchanged_token};
use crate::app::App;
use crate::authorize::issue;
use crate::delegations::{self, Creation};
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::OAuthError;
use crate::policy::external::{self, External};
use crate::store::{self, AppendRequest, RowFilter};

/// What the client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `None` when the request named no scope: the defaults apply.
    pub scope: Option<&'a [String]>,
    /// RFC 8707 `resource`.
    pub resource: Option<&'a str>,
}

/// What the decision is made on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The local user the credential names, if there is one.
    pub user: Option<User>,
    /// Consents this user recorded for this client: the only consent an absent user can give.
    pub consents: Vec<Consent>,
    pub external: External,
}

/// Decides what a new delegation for `facts.user` may hold, with the user absent. Pure.
///
/// `auth` is how the credential authenticated the user (the password grant's `pwd`, nothing for an
/// assertion); it can meet an `acr` step-up only if the credential really carried that class.
pub fn decide(
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    grant: GrantType,
    auth: &AuthContext,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    let user = facts
        .user
        .as_ref()
        .ok_or_else(|| OAuthError::InvalidGrant("the subject is not a user of this server".into()))?;
    if !user.is_enabled() {
        return Err(OAuthError::InvalidGrant("the user's account is disabled".into()));
    }
    issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject: &user.subject,
            subject_attributes: &user.attributes,
            requested: request.scope,
            resource: request.resource,
            grant_type: grant.name(),
            user_present: false,
            auth,
            delegation: None,
            authorization_details: &Value::Null,
            consents: &facts.consents,
            approved_now: &[],
            fresh_since: None,
            external: &facts.external,
            now,
        },
    )
}

/// Reads the user `subject` names, their standing consents to `client`, and the external decision
/// points' verdicts.
pub async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    user: Option<User>,
    grant: GrantType,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let Some(user) = user else {
        return Ok(Facts::default());
    };
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(&user.subject),
            client_id: Some(&client.spec.client_id),
            ..RowFilter::default()
        },
    )
    .await?;
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject: &user.subject,
            grant_type: grant.name(),
            user_present: false,
            requested: request.scope,
            now,
        },
    )
    .await;
    Ok(Facts {
        user: Some(user),
        consents,
        external,
    })
}

/// Records a new delegation holding what `decision` issued, its access token and, when the client may
/// refresh, a refresh token, together with `also` (what the grant records besides: a used assertion,
/// say) in one append; then answers.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    app: &App,
    policy: &Policy,
    client: &Client,
    user: &User,
    grant: GrantType,
    auth: &AuthContext,
    decision: &Decision,
    also: Option<AppendRequest>,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let (delegation_id, created) = new_delegation(client, user, grant, auth, decision, now);
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
    let mut append = created.and(access);
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
            scopes: decision.scope_names(),
            now,
            lifetime_seconds: app.config.tokens.refresh_token_seconds,
            parent_hash: None,
        })?;
        response.refresh_token = Some(value);
        append = append.and(minted);
    }
    if let Some(also) = also {
        append = append.and(also);
    }
    super::record(app, append).await?;
    Ok(response)
}

/// Records a new delegation for a token exchange with the user absent: the delegation and the access
/// token (with whoever acts, and what was exchanged, in its record), never a refresh token.
pub async fn record_exchange(
    app: &App,
    policy: &Policy,
    client: &Client,
    user: &User,
    decision: &Decision,
    exchanged: Exchanged,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let grant = GrantType::TokenExchange;
    let (delegation_id, created) =
        new_delegation(client, user, grant, &AuthContext::default(), decision, now);
    let (response, access) = prepare_exchanged_token(
        app,
        policy,
        client,
        &user.subject,
        grant,
        decision,
        Some(delegation_id),
        exchanged,
    )
    .await?;
    super::record(app, created.and(access)).await?;
    Ok(response)
}

/// The delegation a decision with the user absent makes: its id and the append creating it.
fn new_delegation(
    client: &Client,
    user: &User,
    grant: GrantType,
    auth: &AuthContext,
    decision: &Decision,
    now: UnixSeconds,
) -> (String, AppendRequest) {
    delegations::create(Creation {
        subject: &user.subject,
        client_id: &client.spec.client_id,
        scopes: &issue::granted(decision),
        authorization_details: &Value::Null,
        auth,
        grant_type: grant.name(),
        audience: &decision.audience,
        now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use crate::policy::resolution::ConsentSource;
    use projections::consents::Decision as Granted;

    fn policy(strict: bool) -> Policy {
        let toml = format!(
            r#"
            [policy]
            strict_consent = {strict}
            [[authorizers]]
            name = "consent"
            type = "consent"
            [[authorizers]]
            name = "mfa"
            type = "acr"
            required = "mfa"
            order = ["pwd", "mfa"]
            [[scopes]]
            name = "profile"
            [[scopes]]
            name = "messages:read"
            authorizers = ["consent"]
            [[scopes]]
            name = "pay"
            authorizers = ["mfa"]
        "#
        );
        testing::policy(&toml)
    }

    fn app_client() -> Client {
        let mut c = client("app");
        c.spec.scopes = vec!["profile".into(), "messages:read".into(), "pay".into()];
        c
    }

    fn ann() -> User {
        crate::policy::authorizers::testing::ann()
    }

    fn consent(scope: &str, decision: Granted, expires_at: Option<UnixSeconds>) -> Consent {
        Consent {
            consent_id: format!("c-{scope}"),
            subject: "sub-ann".into(),
            client_id: "app".into(),
            decision,
            scopes: vec![scope.into()],
            authorization_details: Value::Null,
            given_at: NOW - 100,
            position: 42,
            expires_at,
            revoked_at: None,
        }
    }

    fn given(consents: Vec<Consent>) -> Facts {
        Facts {
            user: Some(ann()),
            consents,
            external: External::default(),
        }
    }

    const ALL: &[&str] = &["profile", "messages:read", "pay"];

    fn when(strict: bool, facts: &Facts, auth: &AuthContext) -> Result<Decision, OAuthError> {
        let requested: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
        decide(
            &policy(strict),
            &app_client(),
            facts,
            GrantType::ClientCredentials,
            auth,
            Request {
                scope: Some(&requested),
                resource: None,
            },
            NOW,
        )
    }

    fn issued(d: Result<Decision, OAuthError>) -> Vec<String> {
        match d {
            Ok(d) => d.scope_names(),
            Err(e) => panic!("expected a decision, got {e:?}"),
        }
    }

    #[test]
    fn user_absent_table() {
        let none = AuthContext::default();
        let mfa = AuthContext {
            acr: Some("mfa".into()),
            ..AuthContext::default()
        };
        let mut revoked = consent("messages:read", Granted::Granted, None);
        revoked.revoked_at = Some(NOW - 10);

        // Given no standing consent, then the consent scope is dropped, and the step-up scope too
        assert_eq!(issued(when(false, &given(vec![]), &none)), ["profile"]);
        // Given a standing consent, then it is issued, citing the consent's ledger position
        let standing = when(
            false,
            &given(vec![consent("messages:read", Granted::Granted, None)]),
            &none,
        );
        assert_eq!(issued(standing.clone()), ["profile", "messages:read"]);
        let trail = standing.map(|d| d.trail).unwrap_or_default();
        assert!(trail.iter().any(|t| t.scope == "messages:read"
            && t.outcome
                == issuance::Outcome::Issued {
                    consent: ConsentSource::Ledger { position: 42 },
                    expires_at: None
                }));
        // Given a revoked, an expired or a refused consent, then it is dropped
        assert_eq!(issued(when(false, &given(vec![revoked]), &none)), ["profile"]);
        let expired = consent("messages:read", Granted::Granted, Some(NOW - 1));
        assert_eq!(issued(when(false, &given(vec![expired]), &none)), ["profile"]);
        let refused = consent("messages:read", Granted::Denied, None);
        assert_eq!(issued(when(false, &given(vec![refused]), &none)), ["profile"]);
        // Under strict_consent a standing consent does not make a new delegation
        let standing = consent("messages:read", Granted::Granted, None);
        assert_eq!(issued(when(true, &given(vec![standing]), &none)), ["profile"]);
        // A credential that carried the class meets the step-up
        assert_eq!(issued(when(false, &given(vec![]), &mfa)), ["profile", "pay"]);
        // No such user, or a disabled one, then invalid_grant
        let nobody = Facts::default();
        assert!(matches!(
            when(false, &nobody, &none),
            Err(OAuthError::InvalidGrant(_))
        ));
        let mut disabled = given(vec![]);
        if let Some(u) = disabled.user.as_mut() {
            u.disabled = Some("left".into());
        }
        assert!(matches!(
            when(false, &disabled, &none),
            Err(OAuthError::InvalidGrant(_))
        ));
    }
}
