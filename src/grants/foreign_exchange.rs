//! Token exchange (RFC 8693) of a JWT from a trusted issuer (`subject_token_type`
//! `urn:ietf:params:oauth:token-type:jwt`): the token another system issued about one of this server's
//! users becomes an access token of this server.
//!
//! Nothing in this server's ledger stands behind the foreign token, so the exchange makes a new
//! delegation with the user absent (`user_absent.rs`): a consent-requiring scope is issued only on a
//! standing ledger consent, and only scopes the issuer may obtain. The JWT is checked exactly as a JWT
//! bearer assertion is (`trust::verify`) and is used once. Who acts is routed on its claims as for this
//! server's own tokens (`token_exchange::who_acts`): a `may_act` claim demands that actor.

use projections::clients::Client;
use projections::event::{Actor, AuthContext, Party, UnixSeconds};
use serde_json::{Value, json};

use super::jwt_bearer::within_issuer_scopes;
use super::token_exchange::{Acting, Request, Requested, token_types, who_acts};
use super::user_absent;
use super::{Exchanged, GrantType, TokenResponse};
use crate::app::App;
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::trust::{self, Verified, assertion::LEEWAY};

/// What the foreign JWT says, once verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Asserted {
    pub issuer: String,
    pub jti: String,
    /// The scopes the issuer's tokens may obtain at most.
    pub issuer_scopes: Vec<String>,
    /// RFC 8693 §4.4: the one party that may act for the subject.
    pub may_act: Option<Party>,
    /// RFC 8693 §4.1: who already acts in the foreign token.
    pub act: Option<Actor>,
}

impl Asserted {
    fn from_verified(v: &Verified) -> Asserted {
        let claim = |name: &str| v.claims.get(name).cloned().filter(|c| !c.is_null());
        Asserted {
            issuer: v.issuer.clone(),
            jti: v.jti.clone(),
            issuer_scopes: v.scopes.clone(),
            may_act: claim("may_act").and_then(|c| serde_json::from_value(c).ok()),
            act: claim("act").and_then(|c| serde_json::from_value(c).ok()),
        }
    }
}

/// What the exchange is decided on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub asserted: Option<Asserted>,
    /// `None` without an actor token; `Some(None)` for one that is not this server's access token.
    pub actor: Option<Option<Acting>>,
    /// The local user the JWT names, their standing consents, the external verdicts.
    pub absent: user_absent::Facts,
}

/// What the exchange becomes: the decision for a new delegation, and who acts.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub act: Option<Actor>,
}

/// Decides the exchange of a verified foreign JWT. Pure.
pub fn decide(
    policy: &Policy,
    client: &Client,
    issuer: &str,
    facts: &Facts,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Outcome, OAuthError> {
    let exchange = client
        .spec
        .token_exchange
        .as_ref()
        .ok_or_else(|| OAuthError::UnauthorizedClient("this client may not exchange tokens".into()))?;
    let asserted = facts
        .asserted
        .as_ref()
        .ok_or_else(|| OAuthError::InvalidGrant("the subject token is not active".into()))?;
    if request.requested == Requested::RefreshToken {
        return Err(OAuthError::InvalidRequest(
            "a token from another issuer is exchanged for an access token only".into(),
        ));
    }
    let act = who_acts(
        exchange,
        &client.spec.client_id,
        issuer,
        facts.actor.as_ref().map(Option::as_ref),
        asserted.may_act.as_ref(),
        asserted.act.as_ref(),
    )?;
    let within = within_issuer_scopes(policy, client, &asserted.issuer_scopes, request.scope);
    if within.is_empty() {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes may be obtained with this issuer's tokens".into(),
        ));
    }
    let decision = user_absent::decide(
        policy,
        client,
        &facts.absent,
        GrantType::TokenExchange,
        // A foreign token says who the user is, not how they authenticated here: it meets no step-up.
        &AuthContext::default(),
        user_absent::Request {
            scope: Some(&within),
            resource: request.target,
        },
        now,
    )?;
    Ok(Outcome { decision, act })
}

/// Exchanges a foreign JWT: verify it, use up its `jti`, fetch, [`decide`], record a new delegation.
pub async fn grant(
    app: &App,
    client: &Client,
    jwt: &str,
    actor: Option<Option<Acting>>,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let verified = trust::verify(app, jwt, now).await?;
    // Used once, like an assertion: each exchange makes a delegation, and a replayed token must not.
    let key = format!("token-exchange:{}:{}", verified.issuer, verified.jti);
    if !app
        .store
        .claim_once(&key, verified.expires_at + LEEWAY, now)
        .await?
    {
        return Err(OAuthError::InvalidGrant(
            "the subject token was already exchanged".into(),
        ));
    }
    let asserted = Asserted::from_verified(&verified);
    let Some(user) = verified.user else {
        return Err(OAuthError::InvalidGrant(
            "the subject token's subject is not a user of this server".into(),
        ));
    };
    let policy = app.policy();
    let within = within_issuer_scopes(&policy, client, &asserted.issuer_scopes, request.scope);
    let absent = user_absent::fetch(
        app,
        &policy,
        client,
        Some(user),
        GrantType::TokenExchange,
        user_absent::Request {
            scope: Some(&within),
            resource: request.target,
        },
        now,
    )
    .await?;
    let facts = Facts {
        asserted: Some(asserted),
        actor,
        absent,
    };
    let outcome = decide(&policy, client, &app.config.issuer, &facts, request, now)?;
    let (Some(user), Some(asserted)) = (&facts.absent.user, &facts.asserted) else {
        return Err(OAuthError::InvalidGrant("the subject token is not active".into()));
    };
    let mut response = user_absent::record_exchange(
        app,
        &policy,
        client,
        user,
        &outcome.decision,
        Exchanged {
            act: outcome.act,
            from: Some(exchanged_from(asserted, facts.actor.as_ref())),
        },
        now,
    )
    .await?;
    response.issued_token_type = Some(token_types::ACCESS_TOKEN);
    Ok(response)
}

/// What was exchanged, as the decision trail names it.
fn exchanged_from(asserted: &Asserted, actor: Option<&Option<Acting>>) -> Value {
    json!({
        "subject_token_type": token_types::JWT,
        "subject_token": { "iss": asserted.issuer, "jti": asserted.jti },
        "actor_token": actor.and_then(Option::as_ref).map(|a| a.jti.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use crate::policy::external::External;
    use projections::event::{Actors, TokenExchangeSettings};

    const ISSUER: &str = "https://id.example";

    fn policy() -> Policy {
        testing::policy(
            r#"
            [[authorizers]]
            name = "ask"
            type = "consent"
            [[scopes]]
            name = "read"
            default = true
            [[scopes]]
            name = "mail"
            default = true
            authorizers = ["ask"]
            [[scopes]]
            name = "admin"
        "#,
        )
    }

    fn svc(impersonation: bool) -> Client {
        let mut c = client("svc");
        c.spec.grant_types = vec![super::super::token_exchange::GRANT_TYPE.into()];
        c.spec.scopes = vec!["read".into(), "mail".into(), "admin".into()];
        c.spec.token_exchange = Some(TokenExchangeSettings {
            impersonation,
            actors: Actors::Only(vec!["reports".into()]),
            refresh_tokens: false,
        });
        c
    }

    fn given(may_act: Option<&str>, actor: Option<Option<Acting>>) -> Facts {
        Facts {
            asserted: Some(Asserted {
                issuer: "https://sso.partner".into(),
                jti: "j1".into(),
                issuer_scopes: vec!["read".into(), "mail".into()],
                may_act: may_act.map(|sub| Party {
                    sub: sub.into(),
                    iss: None,
                }),
                act: None,
            }),
            actor,
            absent: user_absent::Facts {
                user: Some(crate::policy::authorizers::testing::ann()),
                consents: vec![],
                external: External::default(),
            },
        }
    }

    fn acting(sub: &str) -> Option<Option<Acting>> {
        Some(Some(Acting {
            jti: "a1".into(),
            subject: sub.into(),
            client_id: "svc".into(),
            active: true,
        }))
    }

    const ALL: Request<'static> = Request {
        scope: None,
        target: None,
        requested: Requested::AccessToken,
        actor_token: false,
    };

    fn when(
        client: &Client,
        facts: &Facts,
        request: Request<'_>,
    ) -> Result<(Vec<String>, Option<String>), String> {
        decide(&policy(), client, ISSUER, facts, request, NOW)
            .map(|o| (o.decision.scope_names(), o.act.map(|a| a.sub)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn foreign_exchange_table() {
        let with_actor = Request {
            actor_token: true,
            ..ALL
        };
        // Impersonation: the issuer's scopes, the consent scope dropped without a ledger consent, and a
        // scope the issuer may not obtain never asked for
        assert_eq!(
            when(&svc(true), &given(None, None), ALL),
            Ok((vec!["read".into()], None))
        );
        // Not allowed to impersonate: refused
        assert_eq!(
            when(&svc(false), &given(None, None), ALL),
            Err("invalid_request".into())
        );
        // may_act in the foreign token: an actor is required, even of a client that may impersonate
        assert_eq!(
            when(&svc(true), &given(Some("reports"), None), ALL),
            Err("invalid_request".into())
        );
        assert_eq!(
            when(&svc(true), &given(Some("reports"), acting("reports")), with_actor),
            Ok((vec!["read".into()], Some("reports".into())))
        );
        assert_eq!(
            when(&svc(true), &given(Some("reports"), acting("billing")), with_actor),
            Err("invalid_request".into())
        );
        // Asking for a scope outside the issuer's: invalid_scope
        let admin = vec!["admin".to_owned()];
        let only_admin = Request {
            scope: Some(&admin),
            ..ALL
        };
        assert_eq!(
            when(&svc(true), &given(None, None), only_admin),
            Err("invalid_scope".into())
        );
        // A refresh token is not given for a foreign token
        let refresh = Request {
            requested: Requested::RefreshToken,
            ..ALL
        };
        assert_eq!(
            when(&svc(true), &given(None, None), refresh),
            Err("invalid_request".into())
        );
    }
}
