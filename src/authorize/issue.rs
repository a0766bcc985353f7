//! The events an answered authorization request becomes: the user's consent decisions, and the code (or,
//! for implicit, the delegation) carrying what was decided while the user was present.

use projections::Event;
use projections::event::{
    AuthContext, AuthorizationCodeIssued, ClientSpec, ConsentDenied, ConsentGranted, GrantedScope,
    UnixSeconds, V1,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::request::AuthorizationRequest;
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::policy::resolution::consent_expiry;
use crate::store::{AppendRequest, ExpectedVersion};

/// How long an authorization code can be redeemed.
pub const CODE_SECONDS: i64 = 60;

/// The stream of a code's events; its version makes redemption single-use.
pub fn code_stream(code_hash: &str) -> String {
    projections::event::streams::code(code_hash)
}

/// SHA-256 (hex) of a code: all the ledger holds of it.
pub fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// The scopes a decision issues, as a delegation holds them.
pub fn granted(decision: &Decision) -> Vec<GrantedScope> {
    decision
        .scopes
        .iter()
        .map(|s| GrantedScope {
            scope: s.scope.clone(),
            expires_at: s.expires_at,
        })
        .collect()
}

/// Who is answering and how they signed in.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub request: &'a AuthorizationRequest,
    pub subject: &'a str,
    pub auth: &'a AuthContext,
    pub policy_version: &'a str,
    pub now: UnixSeconds,
}

/// A new code for `decision` and the append recording its hash.
pub fn code(answer: Answer<'_>, decision: &Decision) -> Result<(String, AppendRequest), OAuthError> {
    let code = crate::ids::secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let hash = code_hash(&code);
    let r = answer.request;
    let event = Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
        v: V1,
        code_hash: hash.clone(),
        client_id: r.client_id.clone(),
        subject: answer.subject.to_owned(),
        redirect_uri: r.target.redirect_uri.clone(),
        code_challenge: r.code_challenge.clone(),
        nonce: r.nonce.clone(),
        scopes: granted(decision),
        audience: decision.audience.clone(),
        authorization_details: r.authorization_details.clone(),
        auth: answer.auth.clone(),
        decision_trail: json!({ "scopes": decision.trail }),
        policy_version: Some(answer.policy_version.to_owned()),
        issued_at: answer.now,
        expires_at: answer.now + CODE_SECONDS,
        requested_at: Some(r.created_at),
        redirect_uri_in_request: r.redirect_uri_given,
    });
    Ok((
        code,
        AppendRequest::to_stream(code_stream(&hash), ExpectedVersion::NoStream, vec![event]),
    ))
}

/// What the user decided on the consent page: approval of some scopes, refusal of the rest, and what the
/// page showed them. Empty lists record nothing.
#[derive(Debug, Clone)]
pub struct ConsentAnswer<'a> {
    pub subject: &'a str,
    /// The client asking; with `policy`, it sets how long each approval stands.
    pub client: &'a ClientSpec,
    pub policy: &'a Policy,
    pub approved: Vec<String>,
    pub refused: Vec<String>,
    pub authorization_details: &'a Value,
    pub shown: Value,
    pub now: UnixSeconds,
}

/// The approved scopes grouped by when their consent expires (the shorter of the scope's and the
/// client's consent lifetime from `now`), in the order the scopes came; one group per expiry.
fn approvals_by_expiry(answer: &ConsentAnswer<'_>) -> Vec<(Option<UnixSeconds>, Vec<String>)> {
    let mut groups: Vec<(Option<UnixSeconds>, Vec<String>)> = Vec::new();
    for scope in &answer.approved {
        let lifetime = answer.policy.consent_lifetime_seconds(scope, answer.client);
        let expires_at = consent_expiry(answer.now, lifetime);
        match groups.iter_mut().find(|(e, _)| *e == expires_at) {
            Some((_, scopes)) => scopes.push(scope.clone()),
            None => groups.push((expires_at, vec![scope.clone()])),
        }
    }
    groups
}

/// What the page showed about `scopes` only: the part of `shown` a consent covering them records.
fn shown_for(shown: &Value, scopes: &[String]) -> Value {
    match shown {
        Value::Array(lines) => Value::Array(
            lines
                .iter()
                .filter(|l| l["scope"].as_str().is_some_and(|s| scopes.iter().any(|x| x == s)))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `ConsentGranted` / `ConsentDenied` events for a consent page answer. Approved scopes whose
/// consents expire at different times become one `ConsentGranted` each, so every recorded consent has
/// one expiry, which the account page shows and each decision compares with its own `now`.
pub fn consent(answer: ConsentAnswer<'_>) -> AppendRequest {
    let mut out = AppendRequest::default();
    let mut add = |event: Event, id: &str| {
        out = std::mem::take(&mut out).and(AppendRequest::to_stream(
            projections::event::streams::consent(id),
            ExpectedVersion::NoStream,
            vec![event],
        ));
    };
    let groups = approvals_by_expiry(&answer);
    let several = groups.len() > 1;
    for (expires_at, scopes) in groups {
        let id = crate::ids::id();
        let shown = if several {
            shown_for(&answer.shown, &scopes)
        } else {
            answer.shown.clone()
        };
        add(
            Event::ConsentGranted(ConsentGranted {
                v: V1,
                consent_id: id.clone(),
                subject: answer.subject.to_owned(),
                client_id: answer.client.client_id.clone(),
                scopes,
                authorization_details: answer.authorization_details.clone(),
                expires_at,
                at: answer.now,
                shown,
            }),
            &id,
        );
    }
    if !answer.refused.is_empty() {
        let id = crate::ids::id();
        add(
            Event::ConsentDenied(ConsentDenied {
                v: V1,
                consent_id: id.clone(),
                subject: answer.subject.to_owned(),
                client_id: answer.client.client_id.clone(),
                scopes: answer.refused,
                at: answer.now,
            }),
            &id,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let config = crate::config::Config::parse(
            "t.toml",
            r#"
            [[scopes]]
            name = "accounts"
            consent_lifetime_seconds = 15552000
            [[scopes]]
            name = "payments"
            consent_lifetime_seconds = 300
            [[scopes]]
            name = "profile"
            "#,
        )
        .unwrap();
        Policy::from_config(&config).unwrap()
    }

    /// (scopes, expires_at, what the page showed) of each `ConsentGranted` recorded.
    fn granted_of(append: &AppendRequest) -> Vec<(Vec<String>, Option<UnixSeconds>, Value)> {
        append
            .events
            .iter()
            .filter_map(|e| match &e.event {
                Event::ConsentGranted(g) => Some((g.scopes.clone(), g.expires_at, g.shown.clone())),
                _ => None,
            })
            .collect()
    }

    fn answer<'a>(policy: &'a Policy, client: &'a ClientSpec, approved: &[&str]) -> ConsentAnswer<'a> {
        ConsentAnswer {
            subject: "u-ann",
            client,
            policy,
            approved: approved.iter().map(|s| s.to_string()).collect(),
            refused: vec![],
            authorization_details: &Value::Null,
            shown: json!(
                approved
                    .iter()
                    .map(|s| json!({"scope": s, "description": s, "lifetime": "x"}))
                    .collect::<Vec<_>>()
            ),
            now: 1_000,
        }
    }

    #[test]
    fn each_approval_expires_after_the_shorter_of_the_scope_and_client_lifetimes() {
        let policy = policy();
        let open = ClientSpec {
            client_id: "tpp".into(),
            ..ClientSpec::default()
        };
        // Given a client with no lifetime of its own: each scope's lifetime, one consent per expiry
        let got = granted_of(&consent(answer(
            &policy,
            &open,
            &["accounts", "profile", "payments"],
        )));
        assert_eq!(
            got.iter().map(|(s, e, _)| (s.clone(), *e)).collect::<Vec<_>>(),
            vec![
                (vec!["accounts".to_owned()], Some(1_000 + 15_552_000)),
                (vec!["profile".to_owned()], None),
                (vec!["payments".to_owned()], Some(1_300)),
            ]
        );
        // and each consent records what the page showed about its own scopes only
        assert_eq!(
            got[1].2,
            json!([{"scope": "profile", "description": "profile", "lifetime": "x"}])
        );

        // Given a client whose consents last 90 days: it caps the 180-day scope and the unlimited one
        let ninety_days = ClientSpec {
            consent_lifetime_seconds: Some(90 * 86_400),
            ..open
        };
        let got = granted_of(&consent(answer(
            &policy,
            &ninety_days,
            &["accounts", "profile", "payments"],
        )));
        assert_eq!(
            got.iter().map(|(s, e, _)| (s.clone(), *e)).collect::<Vec<_>>(),
            vec![
                (
                    vec!["accounts".to_owned(), "profile".to_owned()],
                    Some(1_000 + 90 * 86_400)
                ),
                (vec!["payments".to_owned()], Some(1_300)),
            ]
        );
        // One expiry: the whole answer is one consent with everything the page showed
        let got = granted_of(&consent(answer(&policy, &ninety_days, &["accounts", "profile"])));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2.as_array().map(Vec::len), Some(2));
    }
}
