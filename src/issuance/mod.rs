//! The issuance decision: one pure function from the request context, the fetched facts and the policy
//! (with the clock as an argument) to the scopes, audience and lifetime of a token, with a trail that says
//! why for every requested scope. Every grant type calls it.

mod policy;

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::consents::Consent;
use projections::delegations::Delegation;
use projections::event::{AuthContext, ClientSpec, UnixSeconds};
use serde::Serialize;
use serde_json::Value;

pub use policy::{Policy, undeclared_message};

#[cfg(test)]
mod tests;

use crate::oauth::OAuthError;
use crate::policy::authorizer::{Context, StepUp, Verdict};
use crate::policy::engine::AuthorizerVerdict;
use crate::policy::resolution::{self, ConsentSource, Resolution, Situation};

/// The scope that opens the audit API. Built in rather than configured: granted by client credentials
/// only, and only to a client registered as an auditor ([`ClientSpec::auditor`]).
pub const AUDIT_SCOPE: &str = "audit";

/// What a grant asks the pipeline to decide, with every fact fetched beforehand.
#[derive(Debug, Clone)]
pub struct IssuanceRequest<'a> {
    pub client: &'a Client,
    pub subject: &'a str,
    pub subject_attributes: &'a Value,
    /// `None` when the request named no scope: the defaults apply.
    pub requested: Option<&'a [String]>,
    /// RFC 8707 `resource`.
    pub resource: Option<&'a str>,
    pub grant_type: &'a str,
    pub user_present: bool,
    pub auth: &'a AuthContext,
    pub delegation: Option<&'a Delegation>,
    pub authorization_details: &'a Value,
    /// Consents this subject recorded for this client.
    pub consents: &'a [Consent],
    /// Scopes the user approved during this request: settles their consent, never a step-up.
    pub approved_now: &'a [String],
    /// When the user's interaction began (the authorization request's arrival); a sign-in since then
    /// is fresh for it. `None` without an interaction.
    pub fresh_since: Option<UnixSeconds>,
    /// Verdicts fetched from external decision points, by (authorizer, scope).
    pub external: &'a BTreeMap<(String, String), Verdict>,
    pub now: UnixSeconds,
}

/// What became of one requested scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Issued {
        consent: ConsentSource,
        expires_at: Option<UnixSeconds>,
    },
    UnknownScope,
    NotAllowedForClient,
    Denied {
        reason: String,
    },
    DroppedNoConsent,
    /// The delegation being continued does not hold the scope.
    DroppedNotHeld,
    DroppedStepUp,
    /// Waiting for the user: consent, step-up, or both.
    AskUser {
        consent: bool,
        step_up: Option<StepUp>,
    },
}

impl Outcome {
    /// The outcome's name, as the trail writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Issued { .. } => "issued",
            Outcome::UnknownScope => "unknown_scope",
            Outcome::NotAllowedForClient => "not_allowed_for_client",
            Outcome::Denied { .. } => "denied",
            Outcome::DroppedNoConsent => "dropped_no_consent",
            Outcome::DroppedNotHeld => "dropped_not_held",
            Outcome::DroppedStepUp => "dropped_step_up",
            Outcome::AskUser { .. } => "ask_user",
        }
    }
}

/// One line of the decision trail: the concrete scope, the template it matched, each authorizer's
/// verdict, their combination and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeTrail {
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorizers: Vec<AuthorizerVerdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combined: Option<Verdict>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A scope that will be in the token, with its own expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedScope {
    pub scope: String,
    pub expires_at: Option<UnixSeconds>,
}

/// The decision: what the token carries, what the user must still be asked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub scopes: Vec<IssuedScope>,
    pub audience: Vec<String>,
    pub issued_at: UnixSeconds,
    /// The minimum of the token lifetime and every issued scope's expiry.
    pub expires_at: UnixSeconds,
    pub trail: Vec<ScopeTrail>,
    /// Whether the defaults were used because no scope was requested.
    pub defaulted: bool,
}

impl Decision {
    /// Names of the issued scopes, in request order.
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.scope.clone()).collect()
    }

    /// Scopes the user must be asked about before issuance.
    pub fn pending(&self) -> impl Iterator<Item = &ScopeTrail> {
        self.trail
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::AskUser { .. }))
    }
}

/// Whether `client` may ask for `scope`, which matched the configured `template`.
pub fn client_may_request(client: &ClientSpec, template: &str, scope: &str) -> bool {
    client.scopes.iter().any(|c| c == template || c == scope)
}

/// The scopes a request is decided for: those it names, or the static defaults the client may have.
pub fn candidates(policy: &Policy, client: &ClientSpec, requested: Option<&[String]>) -> Vec<String> {
    match requested {
        Some(r) => r.to_vec(),
        None => policy
            .engine
            .scopes
            .iter()
            .filter(|s| s.default && matches!(s.template, crate::policy::templates::Template::Static(_)))
            .filter(|s| client_may_request(client, &s.name, &s.name))
            .map(|s| s.name.clone())
            .collect(),
    }
}

/// Decides a token for `request` under `policy`. Pure: the same inputs always give the same decision.
pub fn decide(policy: &Policy, request: &IssuanceRequest<'_>) -> Result<Decision, OAuthError> {
    let engine = &policy.engine;
    let client = &request.client.spec;
    let audience = audience(policy, client, request.resource, request.delegation)?;
    let allowed = |template: &str, scope: &str| client_may_request(client, template, scope);
    let candidates = candidates(policy, client, request.requested);
    let ctx = Context {
        client: request.client,
        subject: request.subject,
        subject_attributes: request.subject_attributes,
        grant_type: request.grant_type,
        user_present: request.user_present,
        auth: request.auth,
        delegation: request.delegation,
        authorization_details: request.authorization_details,
        now: request.now,
        external: request.external,
    };
    let situation = Situation {
        subject: request.subject,
        client_id: &client.client_id,
        user_present: request.user_present,
        delegation: request.delegation,
        consents: request.consents,
        strict_consent: engine.strict_consent,
        approved_now: request.approved_now,
        auth: request.auth,
        fresh_since: request.fresh_since,
        now: request.now,
    };

    let mut trail = Vec::with_capacity(candidates.len());
    let mut scopes = Vec::new();
    for scope in candidates {
        if scope == AUDIT_SCOPE {
            let line = audit_trail(client, request.grant_type);
            if let Outcome::Issued { expires_at, .. } = &line.outcome {
                scopes.push(IssuedScope {
                    scope: line.scope.clone(),
                    expires_at: *expires_at,
                });
            }
            trail.push(line);
            continue;
        }
        let Some((def, value)) = engine.find(&scope) else {
            trail.push(ScopeTrail {
                scope,
                template: None,
                authorizers: vec![],
                combined: None,
                outcome: Outcome::UnknownScope,
            });
            continue;
        };
        if !allowed(&def.name, &scope) {
            trail.push(ScopeTrail {
                scope,
                template: Some(def.name.clone()),
                authorizers: vec![],
                combined: None,
                outcome: Outcome::NotAllowedForClient,
            });
            continue;
        }
        let evaluation = engine.evaluate(def, &scope, value, &ctx);
        let consent_lifetime = def.consent_lifetime_seconds_for(client);
        let outcome = match &evaluation.combined {
            Verdict::Deny { reason } => Outcome::Denied {
                reason: reason.clone(),
            },
            Verdict::Allow => resolution_outcome(resolution::resolve(
                &scope,
                &Default::default(),
                def.lifetime_seconds,
                consent_lifetime,
                &situation,
            )),
            Verdict::Conditional { conditions } => resolution_outcome(resolution::resolve(
                &scope,
                conditions,
                def.lifetime_seconds,
                consent_lifetime,
                &situation,
            )),
        };
        if let Outcome::Issued { expires_at, .. } = &outcome {
            scopes.push(IssuedScope {
                scope: scope.clone(),
                expires_at: *expires_at,
            });
        }
        trail.push(ScopeTrail {
            scope,
            template: Some(def.name.clone()),
            authorizers: evaluation.verdicts,
            combined: Some(evaluation.combined),
            outcome,
        });
    }
    let pending = trail.iter().any(|t| matches!(t.outcome, Outcome::AskUser { .. }));
    if scopes.is_empty() && !pending {
        return Err(OAuthError::InvalidScope(
            "none of the requested scopes can be granted".into(),
        ));
    }
    let lifetime_end = request.now + policy.access_token_seconds;
    let expires_at = scopes
        .iter()
        .filter_map(|s| s.expires_at)
        .fold(lifetime_end, i64::min);
    Ok(Decision {
        scopes,
        audience,
        issued_at: request.now,
        expires_at,
        trail,
        defaulted: request.requested.is_none(),
    })
}

/// RFC 8707: whom the token is for. A new grant takes the requested resource (one the client registered)
/// or the client's first; a continued delegation narrows to one of the audiences it granted, and never
/// reaches another (`invalid_target`).
fn audience(
    policy: &Policy,
    client: &ClientSpec,
    resource: Option<&str>,
    delegation: Option<&Delegation>,
) -> Result<Vec<String>, OAuthError> {
    let registered = |r: &str| client.resources.iter().any(|a| a == r);
    let fallback = || {
        client
            .resources
            .first()
            .cloned()
            .unwrap_or_else(|| policy.default_audience.clone())
    };
    let granted: Option<Vec<String>> = delegation.map(|d| match d.audience.is_empty() {
        // Recorded before delegations kept their audiences: the one a new grant got by default.
        true => vec![fallback()],
        false => d.audience.clone(),
    });
    match (resource, granted) {
        (Some(r), Some(granted)) if registered(r) && granted.iter().any(|g| g == r) => Ok(vec![r.to_owned()]),
        (Some(_), Some(_)) => Err(OAuthError::InvalidTarget(
            "the resource is not one this grant was given for".into(),
        )),
        (Some(r), None) if registered(r) => Ok(vec![r.to_owned()]),
        (Some(_), None) => Err(OAuthError::InvalidTarget(
            "the resource is not allowed for this client".into(),
        )),
        (None, Some(granted)) => Ok(granted),
        (None, None) => Ok(vec![fallback()]),
    }
}

/// The `audit` scope's line of the trail: issued to an auditor asking by client credentials (the client
/// is its own subject, so there is nobody whose consent it needs), denied with the reason otherwise.
fn audit_trail(client: &ClientSpec, grant_type: &str) -> ScopeTrail {
    let refused = if !client.auditor {
        Some("the audit scope is granted only to a client registered as an auditor")
    } else if grant_type != crate::grants::GrantType::ClientCredentials.name() {
        Some("the audit scope is granted by client_credentials only")
    } else {
        None
    };
    let (combined, outcome) = match refused {
        Some(reason) => (
            Verdict::Deny {
                reason: reason.into(),
            },
            Outcome::Denied {
                reason: reason.into(),
            },
        ),
        None => (
            Verdict::Allow,
            Outcome::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: None,
            },
        ),
    };
    ScopeTrail {
        scope: AUDIT_SCOPE.into(),
        template: Some(AUDIT_SCOPE.into()),
        authorizers: vec![],
        combined: Some(combined),
        outcome,
    }
}

fn resolution_outcome(r: Resolution) -> Outcome {
    match r {
        Resolution::Issued { consent, expires_at } => Outcome::Issued { consent, expires_at },
        Resolution::AskUser { consent, step_up } => Outcome::AskUser { consent, step_up },
        Resolution::DroppedNoConsent => Outcome::DroppedNoConsent,
        Resolution::DroppedNotHeld => Outcome::DroppedNotHeld,
        Resolution::DroppedStepUp => Outcome::DroppedStepUp,
    }
}
