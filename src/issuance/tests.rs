//! The issuance decision: given a policy and a context, when a token is requested, then these scopes.

use std::collections::BTreeMap;

use projections::clients::Client;
use projections::consents::{Consent, Decision as ConsentDecision};
use projections::delegations::Delegation;
use projections::event::{AuthContext, ClientKind, GrantedScope};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::policy::authorizer::Conditions;
use crate::policy::resolution::ConsentSource;

const NOW: i64 = 1_700_000_000;

fn policy(toml: &str) -> Policy {
    let config = Config::parse("policy.toml", toml).unwrap();
    config.validate("policy.toml").unwrap();
    Policy::from_config(&config).unwrap()
}

fn client(kind: ClientKind, scopes: &[&str]) -> Client {
    let mut c = crate::policy::authorizers::testing::client("app");
    c.spec.kind = kind;
    c.spec.grant_types = vec!["client_credentials".into()];
    c.spec.scopes = scopes.iter().map(|s| s.to_string()).collect();
    c
}

/// The owned facts of one request, borrowed into an [`IssuanceRequest`].
#[derive(Debug, Clone)]
struct Given {
    client: Client,
    attributes: Value,
    requested: Option<Vec<String>>,
    user_present: bool,
    auth: AuthContext,
    delegation: Option<Delegation>,
    consents: Vec<Consent>,
    approved: Vec<String>,
    fresh_since: Option<i64>,
    external: BTreeMap<(String, String), Verdict>,
}

impl Given {
    fn new(client: Client, requested: &[&str]) -> Given {
        Given {
            client,
            attributes: Value::Null,
            requested: Some(requested.iter().map(|s| s.to_string()).collect()),
            user_present: false,
            auth: AuthContext::default(),
            delegation: None,
            consents: vec![],
            approved: vec![],
            fresh_since: None,
            external: BTreeMap::new(),
        }
    }

    fn decide(&self, policy: &Policy) -> Result<Decision, OAuthError> {
        decide(
            policy,
            &IssuanceRequest {
                client: &self.client,
                subject: "alice",
                subject_attributes: &self.attributes,
                requested: self.requested.as_deref(),
                resource: None,
                grant_type: "client_credentials",
                user_present: self.user_present,
                auth: &self.auth,
                delegation: self.delegation.as_ref(),
                authorization_details: &Value::Null,
                consents: &self.consents,
                approved_now: &self.approved,
                fresh_since: self.fresh_since,
                external: &self.external,
                now: NOW,
            },
        )
    }
}

fn consent(scopes: &[&str], position: u64) -> Consent {
    Consent {
        consent_id: format!("c{position}"),
        subject: "alice".into(),
        client_id: "app".into(),
        decision: ConsentDecision::Granted,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        authorization_details: Value::Null,
        given_at: NOW - 100,
        position,
        expires_at: None,
        revoked_at: None,
    }
}

const POLICY: &str = r#"
[[authorizers]]
name = "ask"
type = "consent"
[[authorizers]]
name = "never"
type = "deny"
reason = "retired"
[[authorizers]]
name = "owner"
type = "resource-owner"
attribute = "accounts"
[[scopes]]
name = "profile"
default = true
lifetime_seconds = 120
[[scopes]]
name = "messages"
authorizers = ["ask"]
[[scopes]]
name = "legacy"
authorizers = ["never"]
[[scopes]]
name = "account.{id}.read"
authorizers = ["owner"]
"#;

#[test]
fn a_denied_scope_is_left_out_with_its_reason_and_the_rest_issued() {
    let p = policy(POLICY);
    let given = Given::new(
        client(ClientKind::ThirdParty, &["profile", "legacy"]),
        &["profile", "legacy"],
    );
    let d = given.decide(&p).unwrap();
    assert_eq!(d.scope_names(), vec!["profile"]);
    assert_eq!(
        d.trail[1].outcome,
        Outcome::Denied {
            reason: "retired".into()
        }
    );
    assert_eq!(d.trail[1].authorizers[0].name, "never");
    // The scope's lifetime bounds the token.
    assert_eq!(d.expires_at, NOW + 120);
}

#[test]
fn an_absent_user_gets_a_consent_scope_only_on_a_standing_ledger_consent() {
    let p = policy(POLICY);
    let mut given = Given::new(
        client(ClientKind::ThirdParty, &["profile", "messages"]),
        &["profile", "messages"],
    );
    let d = given.decide(&p).unwrap();
    assert_eq!(d.scope_names(), vec!["profile"]);
    assert_eq!(d.trail[1].outcome, Outcome::DroppedNoConsent);

    given.consents = vec![consent(&["messages"], 42)];
    let d = given.decide(&p).unwrap();
    assert_eq!(d.scope_names(), vec!["profile", "messages"]);
    assert_eq!(
        d.trail[1].outcome,
        Outcome::Issued {
            consent: ConsentSource::Ledger { position: 42 },
            expires_at: None
        }
    );

    let strict = policy(&format!("[policy]\nstrict_consent = true\n{POLICY}"));
    assert_eq!(given.decide(&strict).unwrap().scope_names(), vec!["profile"]);
}

#[test]
fn a_present_user_is_asked_and_nothing_is_issued_before() {
    let p = policy(POLICY);
    let mut given = Given::new(client(ClientKind::ThirdParty, &["messages"]), &["messages"]);
    given.user_present = true;
    let d = given.decide(&p).unwrap();
    assert!(d.scopes.is_empty());
    assert_eq!(d.pending().count(), 1);
    given.approved = vec!["messages".into()];
    assert_eq!(
        given.decide(&p).unwrap().trail[0].outcome,
        Outcome::Issued {
            consent: ConsentSource::UserNow,
            expires_at: None
        }
    );
}

#[test]
fn a_dynamic_scope_passes_its_concrete_value_to_the_authorizers() {
    let p = policy(POLICY);
    let mut given = Given::new(
        client(ClientKind::FirstParty, &["account.{id}.read"]),
        &["account.05542.read", "account.99.read"],
    );
    given.attributes = json!({"accounts": ["05542"]});
    let d = given.decide(&p).unwrap();
    assert_eq!(d.scope_names(), vec!["account.05542.read"]);
    assert_eq!(d.trail[1].template.as_deref(), Some("account.{id}.read"));
    assert!(matches!(d.trail[1].outcome, Outcome::Denied { .. }));
}

#[test]
fn unknown_and_disallowed_scopes_are_recorded_and_nothing_left_is_invalid_scope() {
    let p = policy(POLICY);
    let given = Given::new(
        client(ClientKind::ThirdParty, &["profile"]),
        &["nope", "messages"],
    );
    assert!(matches!(given.decide(&p), Err(OAuthError::InvalidScope(_))));
    let given = Given::new(
        client(ClientKind::ThirdParty, &["profile"]),
        &["nope", "profile", "messages"],
    );
    let d = given.decide(&p).unwrap();
    assert_eq!(
        d.trail.iter().map(|t| t.outcome.clone()).collect::<Vec<_>>(),
        vec![
            Outcome::UnknownScope,
            Outcome::Issued {
                consent: ConsentSource::NotRequired,
                expires_at: Some(NOW + 120)
            },
            Outcome::NotAllowedForClient
        ]
    );
}

// ---- property tests over random policies, contexts and consent histories ----

fn authorizer() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "allow"})),
        "[a-z]{1,8}".prop_map(|r| json!({"type": "deny", "reason": r})),
        any::<bool>().prop_map(|t| json!({"type": "consent", "third_party_only": t})),
        (60i64..3_600, 1i64..60, proptest::option::of(60i64..7_200)).prop_map(|(full, min, step)| {
            let mut a =
                json!({"type": "authentication-freshness", "full_ttl_seconds": full, "min_ttl_seconds": min});
            if let Some(s) = step {
                a["step_up_after_seconds"] = json!(s);
            }
            a
        }),
        prop::sample::select(vec!["pwd", "mfa"])
            .prop_map(|r| json!({"type": "acr", "required": r, "order": ["pwd", "mfa"]})),
    ]
}

const SCOPES: [&str; 5] = ["s0", "s1", "s2", "s3", "s4"];

fn random_policy() -> impl Strategy<Value = Policy> {
    (
        proptest::collection::vec(authorizer(), 1..5),
        proptest::collection::vec(
            (
                proptest::collection::vec(0usize..5, 0..4),
                proptest::option::of(10i64..1_000),
            ),
            5,
        ),
        any::<bool>(),
    )
        .prop_map(|(authorizers, scopes, strict)| {
            let n = authorizers.len();
            let mut config = Config::default();
            config.policy.strict_consent = strict;
            config.authorizers = authorizers
                .into_iter()
                .enumerate()
                .map(|(i, mut a)| {
                    a["name"] = json!(format!("a{i}"));
                    serde_json::from_value(a).unwrap()
                })
                .collect();
            config.scopes = scopes
                .into_iter()
                .enumerate()
                .map(|(i, (assigned, lifetime))| crate::config::ScopeConfig {
                    name: SCOPES[i].into(),
                    description: String::new(),
                    default: i == 0,
                    lifetime_seconds: lifetime,
                    consent_lifetime_seconds: None,
                    authorizers: assigned.into_iter().map(|a| format!("a{}", a % n)).collect(),
                })
                .collect();
            Policy::from_config(&config).unwrap()
        })
}

fn scope_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop::sample::select(vec!["s0", "s1", "s2", "s3", "s4", "s5"]),
        0..6,
    )
    .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

prop_compose! {
    fn situation()(
        third in any::<bool>(),
        requested in proptest::option::of(scope_names()),
        present in any::<bool>(),
        age in proptest::option::of(0i64..10_000),
        acr in proptest::option::of(prop::sample::select(vec!["pwd", "mfa"])),
        held in proptest::option::of(proptest::collection::vec((prop::sample::select(SCOPES.to_vec()), proptest::option::of(NOW - 100..NOW + 500)), 0..4)),
        consents in proptest::collection::vec((scope_names(), any::<bool>(), proptest::option::of(NOW - 100..NOW + 500), any::<bool>()), 0..4),
        approved in scope_names(),
        fresh_since in proptest::option::of(NOW - 10_000..NOW),
    ) -> Given {
        let kind = if third { ClientKind::ThirdParty } else { ClientKind::FirstParty };
        Given {
            client: client(kind, &SCOPES),
            attributes: Value::Null,
            requested,
            user_present: present,
            auth: AuthContext { acr: acr.map(str::to_owned), amr: vec![], auth_time: age.map(|a| NOW - a) },
            delegation: held.map(|held| Delegation {
                delegation_id: "d".into(),
                subject: "alice".into(),
                client_id: "app".into(),
                scopes: held.into_iter().map(|(s, e)| GrantedScope { scope: s.into(), expires_at: e }).collect(),
                authorization_details: Value::Null,
                claims: Value::Null,
                auth: AuthContext::default(),
                grant_type: "authorization_code".into(),
                created_at: NOW - 1_000,
                created_position: 1,
                last_used_at: NOW - 1_000,
                revoked: None,
                audience: vec![],
            }),
            consents: consents
                .into_iter()
                .enumerate()
                .map(|(i, (scopes, granted, expires_at, revoked))| Consent {
                    consent_id: format!("c{i}"),
                    subject: "alice".into(),
                    client_id: "app".into(),
                    decision: if granted { ConsentDecision::Granted } else { ConsentDecision::Denied },
                    scopes,
                    authorization_details: Value::Null,
                    given_at: NOW - 50,
                    position: i as u64 + 1,
                    expires_at,
                    revoked_at: revoked.then_some(NOW - 10),
                })
                .collect(),
            approved: if present { approved } else { vec![] },
            fresh_since: if present { fresh_since } else { None },
            external: BTreeMap::new(),
        }
    }
}

fn needs(conditions: &Option<Verdict>, f: impl Fn(&Conditions) -> bool) -> bool {
    matches!(conditions, Some(Verdict::Conditional { conditions }) if f(conditions))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn issuance_never_exceeds_what_policy_and_consent_allow(p in random_policy(), given in situation()) {
        let Ok(d) = given.decide(&p) else { return Ok(()) };
        // The same context and clock always give the same decision.
        prop_assert_eq!(given.decide(&p).ok(), Some(d.clone()));
        prop_assert!(d.expires_at <= NOW + p.access_token_seconds);
        for issued in &d.scopes {
            let t = d.trail.iter().find(|t| t.scope == issued.scope).unwrap();
            // A denied scope is never in a token.
            let denied = matches!(t.combined, Some(Verdict::Deny { .. }));
            prop_assert!(!denied);
            // exp never exceeds any issued scope's TTL.
            if let Some(exp) = issued.expires_at {
                prop_assert!(d.expires_at <= exp);
            }
            if let Some(ttl) = match &t.combined { Some(Verdict::Conditional { conditions }) => conditions.ttl_seconds, _ => None } {
                prop_assert!(d.expires_at <= NOW + ttl);
            }
            // A step-up needs the user there, and only their authentication settles it: whatever they
            // approved, no issued scope has a step-up the session does not meet.
            if let Some(Verdict::Conditional { conditions: Conditions { step_up: Some(step_up), .. } }) = &t.combined {
                prop_assert!(given.user_present);
                prop_assert!(crate::policy::resolution::step_up_met(step_up, &given.auth, given.fresh_since, NOW));
            }
            if needs(&t.combined, |c| c.consent) && !given.user_present {
                match &given.delegation {
                    // Continuing a delegation never yields more than it holds.
                    Some(del) => prop_assert!(del.scopes_at(NOW).any(|g| g.scope == issued.scope)),
                    // A new delegation without the user: only on a standing consent, never in strict mode.
                    None => {
                        prop_assert!(!p.engine.strict_consent);
                        prop_assert!(projections::queries::standing_consent(&given.consents, "alice", "app", &issued.scope, NOW).is_some());
                    }
                }
            }
        }
    }
}
