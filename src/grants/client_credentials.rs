//! RFC 6749 §4.4: the client credentials grant. The client is the subject; no user is present, so a
//! consent-requiring scope is issued only on a standing consent in the ledger, and step-up is impossible.

use projections::clients::Client;
use projections::consents::Consent;
use projections::event::{AuthContext, UnixSeconds};
use serde_json::Value;

use super::{GrantType, TokenResponse, issue_access_token};
use crate::app::App;
use crate::issuance::{self, Decision, IssuanceRequest, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::policy::external::{self, External};
use crate::store::{self, RowFilter};

/// The token request's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub scope: Option<&'a [String]>,
    pub resource: Option<&'a str>,
    /// RFC 9396 `authorization_details` (an array), or `Null`.
    pub authorization_details: &'a Value,
}

/// What the decision is made on, read before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Standing consents of the client as its own subject.
    pub consents: Vec<Consent>,
    pub external: External,
}

/// Decides a client credentials request. Pure: the client is the subject, nobody is present, so a
/// consent-requiring scope needs a standing ledger consent and a step-up drops its scope.
pub fn decide(
    policy: &Policy,
    client: &Client,
    facts: &Facts,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Decision, OAuthError> {
    let subject = client.spec.client_id.as_str();
    issuance::decide(
        policy,
        &IssuanceRequest {
            client,
            subject,
            subject_attributes: &client.spec.metadata,
            requested: request.scope,
            resource: request.resource,
            grant_type: GrantType::ClientCredentials.name(),
            user_present: false,
            auth: &AuthContext::default(),
            delegation: None,
            authorization_details: request.authorization_details,
            consents: &facts.consents,
            approved_now: &[],
            fresh_since: None,
            external: &facts.external,
            now,
        },
    )
}

/// Reads the client's standing consents and the external decision points' verdicts.
async fn fetch(
    app: &App,
    policy: &Policy,
    client: &Client,
    request: Request<'_>,
    now: UnixSeconds,
) -> Result<Facts, OAuthError> {
    let subject = client.spec.client_id.as_str();
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(subject),
            client_id: Some(subject),
            ..RowFilter::default()
        },
    )
    .await?;
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject,
            grant_type: GrantType::ClientCredentials.name(),
            user_present: false,
            requested: request.scope,
            now,
        },
    )
    .await;
    Ok(Facts { consents, external })
}

/// Issues an access token whose subject is the client itself: fetch, [`decide`], record.
pub async fn grant(
    app: &App,
    client: &Client,
    form: &Form,
    now: UnixSeconds,
) -> Result<TokenResponse, OAuthError> {
    let limits = &app.config.limits;
    let scope = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let authorization_details = match form.get("authorization_details") {
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array)
            .ok_or_else(|| OAuthError::InvalidRequest("authorization_details must be a JSON array".into()))?,
        None => Value::Null,
    };
    let request = Request {
        scope: scope.as_deref(),
        resource: form.get("resource"),
        authorization_details: &authorization_details,
    };
    let policy = app.policy();
    let facts = fetch(app, &policy, client, request, now).await?;
    let decision = decide(&policy, client, &facts, request, now)?;
    issue_access_token(
        app,
        &policy,
        client,
        &client.spec.client_id,
        GrantType::ClientCredentials,
        decision,
        None,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorizers::testing::{self, NOW, client};
    use projections::consents::Decision as Granted;

    fn policy() -> Policy {
        let toml = r#"
            default_audience = "https://api.example"
            [[authorizers]]
            name = "ask"
            type = "consent"
            [[authorizers]]
            name = "fresh"
            type = "authentication-freshness"
            full_ttl_seconds = 600
            step_up_after_seconds = 60
            [[authorizers]]
            name = "mfa"
            type = "acr"
            required = "mfa"
            order = ["pwd", "mfa"]
            [[scopes]]
            name = "read"
            default = true
            [[scopes]]
            name = "mail"
            authorizers = ["ask"]
            [[scopes]]
            name = "pay"
            authorizers = ["mfa"]
        "#;
        testing::policy(toml)
    }

    fn machine() -> Client {
        let mut c = client("svc");
        c.spec.grant_types = vec!["client_credentials".into()];
        c.spec.scopes = vec!["read".into(), "mail".into(), "pay".into()];
        c
    }

    fn consent(scope: &str) -> Consent {
        Consent {
            consent_id: "c1".into(),
            subject: "svc".into(),
            client_id: "svc".into(),
            decision: Granted::Granted,
            scopes: vec![scope.into()],
            authorization_details: Value::Null,
            given_at: NOW - 10,
            position: 7,
            expires_at: None,
            revoked_at: None,
        }
    }

    fn when(facts: &Facts, scope: &[&str], resource: Option<&str>) -> Result<Vec<String>, String> {
        let scope: Vec<String> = scope.iter().map(|s| (*s).to_owned()).collect();
        let request = Request {
            scope: (!scope.is_empty()).then_some(&scope[..]),
            resource,
            authorization_details: &Value::Null,
        };
        decide(&policy(), &machine(), facts, request, NOW)
            .map(|d| d.scope_names())
            .map_err(|e| e.to_string())
    }

    /// Given facts, when these scopes (and resource) are asked, then these scopes or this error.
    type Case<'a> = (
        &'a str,
        &'a Facts,
        Vec<&'a str>,
        Option<&'a str>,
        Result<Vec<&'a str>, &'a str>,
    );

    #[test]
    fn audit_is_issued_to_an_auditor_alone_and_the_trail_says_why() {
        let scope = vec!["audit".to_owned(), "read".to_owned()];
        let request = Request {
            scope: Some(&scope),
            resource: None,
            authorization_details: &Value::Null,
        };
        let mut auditor = machine();
        auditor.spec.auditor = true;
        let granted = decide(&policy(), &auditor, &Facts::default(), request, NOW).unwrap();
        assert_eq!(granted.scope_names(), ["audit", "read"]);
        let refused = decide(&policy(), &machine(), &Facts::default(), request, NOW).unwrap();
        assert_eq!(refused.scope_names(), ["read"]);
        let line = refused.trail.iter().find(|t| t.scope == "audit").unwrap();
        assert!(
            matches!(&line.outcome, crate::issuance::Outcome::Denied { reason } if reason.contains("auditor")),
            "{line:?}"
        );
    }

    #[test]
    fn client_credentials_table() {
        let none = Facts::default();
        let consented = Facts {
            consents: vec![consent("mail")],
            ..Facts::default()
        };
        let cases: Vec<Case<'_>> = vec![
            ("no scope: the defaults", &none, vec![], None, Ok(vec!["read"])),
            ("a plain scope", &none, vec!["read"], None, Ok(vec!["read"])),
            (
                "consent needed, none standing: dropped",
                &none,
                vec!["read", "mail"],
                None,
                Ok(vec!["read"]),
            ),
            (
                "consent standing in the ledger",
                &consented,
                vec!["read", "mail"],
                None,
                Ok(vec!["read", "mail"]),
            ),
            (
                "a step-up nobody can do: dropped",
                &none,
                vec!["read", "pay"],
                None,
                Ok(vec!["read"]),
            ),
            ("nothing left", &none, vec!["pay"], None, Err("invalid_scope")),
            (
                "an unregistered resource",
                &none,
                vec!["read"],
                Some("https://other.example"),
                Err("invalid_target"),
            ),
        ];
        for (name, facts, scope, resource, then) in cases {
            let then = then
                .map(|v| v.into_iter().map(str::to_owned).collect())
                .map_err(str::to_owned);
            assert_eq!(when(facts, &scope, resource), then, "{name}");
        }
    }
}
