//! The policy engine through `client_credentials`, on SQLite and PostgreSQL: each authorizer type, the
//! decision trail in the ledger, `audit explain`, and a policy change taking effect on the next token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestDb, TestServer};
use consent_ledger::store::{AppendRequest, ExpectedVersion};
use projections::Event;
use projections::event::{ConsentGranted, V1};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-admin-token-admin-token-0123";

const POLICY: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
[tokens]
access_token_seconds = 600

[[authorizers]]
name = "open"
type = "allow"
[[authorizers]]
name = "retired"
type = "deny"
reason = "this scope is retired"
[[authorizers]]
name = "ask"
type = "consent"
[[authorizers]]
name = "ask-third-parties"
type = "consent"
third_party_only = true
[[authorizers]]
name = "fresh"
type = "authentication-freshness"
full_ttl_seconds = 3600
min_ttl_seconds = 90
[[authorizers]]
name = "first-party-only"
type = "client"
kinds = ["first_party"]
[[authorizers]]
name = "billing-group"
type = "subject"
require = [{ attribute = "groups", contains = "billing" }]
[[authorizers]]
name = "mfa"
type = "acr"
required = "mfa"
order = ["pwd", "mfa"]
[[authorizers]]
name = "own-account"
type = "resource-owner"
attribute = "accounts"
[[authorizers]]
name = "payment-limits"
type = "authorization-details"
types = ["payment_initiation"]
required_fields = ["instructedAmount.amount", "creditorName"]
amount_field = "instructedAmount.amount"
allow_up_to = 100.0
consent_up_to = 1000.0
[[authorizers]]
name = "first-party-rego"
type = "rego"
source = """
package consent_ledger
import rego.v1
default decision := {"verdict": "deny", "reason": "rego: third parties may not read reports"}
decision := {"verdict": "allow"} if input.context.client.kind == "first_party"
"""

[[scopes]]
name = "read"
default = true
authorizers = ["open"]
[[scopes]]
name = "legacy"
authorizers = ["retired"]
[[scopes]]
name = "messages"
authorizers = ["ask"]
[[scopes]]
name = "profile"
authorizers = ["ask-third-parties"]
[[scopes]]
name = "session"
authorizers = ["fresh"]
[[scopes]]
name = "internal"
authorizers = ["first-party-only"]
[[scopes]]
name = "invoices"
authorizers = ["billing-group"]
[[scopes]]
name = "transfers"
authorizers = ["mfa"]
[[scopes]]
name = "account.{id}.read"
authorizers = ["own-account"]
[[scopes]]
name = "payments"
authorizers = ["payment-limits"]
[[scopes]]
name = "reports"
authorizers = ["first-party-rego"]
"#;

const ALL: &[&str] = &[
    "read",
    "legacy",
    "messages",
    "profile",
    "session",
    "internal",
    "invoices",
    "transfers",
    "account.{id}.read",
    "payments",
    "reports",
];

async fn client(s: &TestServer, id: &str, kind: &str, metadata: Value) -> String {
    s.register(
        json!({"client_id": id, "name": id, "kind": kind, "audience": "machine",
                      "grant_types": ["client_credentials"], "scopes": ALL, "metadata": metadata}),
    )
    .await
    .unwrap()
}

/// Requests `scope` (and optional authorization details); returns the granted scopes, the token lifetime
/// and the decision trail the ledger recorded.
async fn issue(
    s: &TestServer,
    id: &str,
    secret: &str,
    scope: &str,
    details: Option<Value>,
) -> (Vec<String>, i64, Value, String) {
    let details = details.map(|d| d.to_string());
    let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
    if let Some(d) = &details {
        form.push(("authorization_details", d));
    }
    let (status, _, body) = s.post_form("/token", Some((id, secret)), &form).await;
    assert_eq!(status, 200, "{body}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(body["access_token"].as_str().unwrap())
        .unwrap()
        .claims;
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let trail = consent_ledger::audit::explain::explain(s.app.store.as_ref(), &jti)
        .await
        .unwrap()
        .unwrap();
    let scopes = body["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    (scopes, lifetime, trail["decision_trail"]["scopes"].clone(), jti)
}

fn outcome<'a>(trail: &'a Value, scope: &str) -> &'a Value {
    trail
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scope"] == scope)
        .unwrap()
}

async fn each_authorizer_type_decides_its_scopes_and_the_trail_says_why(db: TestDb) {
    let s = TestServer::start(&db, POLICY).await;
    let first = client(
        &s,
        "first",
        "first_party",
        json!({"groups": ["billing"], "accounts": ["42"]}),
    )
    .await;
    let third = client(&s, "third", "third_party", json!({"groups": ["sales"]})).await;

    // allow, deny, consent (none standing), consent for third parties only, freshness (no authentication:
    // the shortest TTL), client kind, subject attributes, acr (a step-up nobody can perform), resource
    // owner, rego.
    let (scopes, lifetime, trail, _) = issue(
        &s,
        "first",
        &first,
        "read legacy messages profile session internal invoices transfers account.42.read account.7.read reports",
        None,
    )
    .await;
    assert_eq!(
        scopes,
        vec![
            "read",
            "profile",
            "session",
            "internal",
            "invoices",
            "account.42.read",
            "reports"
        ]
    );
    assert_eq!(lifetime, 90, "the freshness TTL bounds the token");
    assert_eq!(outcome(&trail, "legacy")["reason"], "this scope is retired");
    assert_eq!(outcome(&trail, "legacy")["authorizers"][0]["name"], "retired");
    assert_eq!(outcome(&trail, "messages")["outcome"], "dropped_no_consent");
    assert_eq!(outcome(&trail, "transfers")["outcome"], "dropped_step_up");
    assert_eq!(outcome(&trail, "account.7.read")["outcome"], "denied");
    assert_eq!(
        outcome(&trail, "account.42.read")["template"],
        "account.{id}.read"
    );
    assert_eq!(
        outcome(&trail, "session")["combined"]["conditions"]["ttl_seconds"],
        90
    );

    let (scopes, _, trail, _) = issue(
        &s,
        "third",
        &third,
        "read profile internal invoices reports",
        None,
    )
    .await;
    assert_eq!(scopes, vec!["read"]);
    assert_eq!(outcome(&trail, "profile")["outcome"], "dropped_no_consent");
    assert_eq!(outcome(&trail, "internal")["outcome"], "denied");
    assert_eq!(outcome(&trail, "invoices")["outcome"], "denied");
    assert_eq!(
        outcome(&trail, "reports")["reason"],
        "rego: third parties may not read reports"
    );

    // authorization details: within the allowed band, in the consent band (no consent: dropped), above it.
    let payment = |amount: &str| json!([{"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": "EUR"}, "creditorName": "Acme"}]);
    let (scopes, ..) = issue(&s, "first", &first, "read payments", Some(payment("45.00"))).await;
    assert_eq!(scopes, vec!["read", "payments"]);
    let (_, _, trail, _) = issue(&s, "first", &first, "read payments", Some(payment("450.00"))).await;
    assert_eq!(outcome(&trail, "payments")["outcome"], "dropped_no_consent");
    let (_, _, trail, _) = issue(&s, "first", &first, "read payments", Some(payment("4500.00"))).await;
    assert_eq!(outcome(&trail, "payments")["outcome"], "denied");
}

async fn a_standing_consent_in_the_ledger_lets_an_absent_subject_have_the_scope(db: TestDb) {
    let s = TestServer::start(&db, POLICY).await;
    let secret = client(&s, "svc", "third_party", json!({})).await;
    let (scopes, ..) = issue(&s, "svc", &secret, "read messages", None).await;
    assert_eq!(scopes, vec!["read"]);
    let granted = Event::ConsentGranted(ConsentGranted {
        v: V1,
        consent_id: "k1".into(),
        subject: "svc".into(),
        client_id: "svc".into(),
        scopes: vec!["messages".into()],
        authorization_details: Value::Null,
        expires_at: None,
        at: s.app.now(),
        shown: Value::Null,
    });
    let r = s
        .app
        .store
        .append(AppendRequest::to_stream(
            "consent-k1",
            ExpectedVersion::NoStream,
            vec![granted],
        ))
        .await
        .unwrap();
    let (scopes, _, trail, _) = issue(&s, "svc", &secret, "read messages", None).await;
    assert_eq!(scopes, vec!["read", "messages"]);
    assert_eq!(
        outcome(&trail, "messages")["consent"],
        json!({"from": "ledger", "position": r.first_position})
    );
}

async fn a_policy_change_applies_to_the_next_token_and_never_to_tokens_out(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("consent-ledger.toml");
    std::fs::write(&file, POLICY).unwrap();
    let s = TestServer::start_from_file(&db, &file).await;
    let secret = client(&s, "svc", "first_party", json!({})).await;
    let before = s.app.policy().version.clone();
    let (scopes, _, _, jti1) = issue(&s, "svc", &secret, "read internal", None).await;
    assert_eq!(scopes, vec!["read", "internal"]);

    // Retire `internal` and reload.
    std::fs::write(
        &file,
        POLICY.replace(
            "name = \"internal\"\nauthorizers = [\"first-party-only\"]",
            "name = \"internal\"\nauthorizers = [\"retired\"]",
        ),
    )
    .unwrap();
    let r = s
        .http
        .post(format!("{}/admin/policy/reload", s.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = r.json::<Value>().await.unwrap()["policy_version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(after, before);

    let (scopes, _, trail, jti2) = issue(&s, "svc", &secret, "read internal", None).await;
    assert_eq!(scopes, vec!["read"]);
    assert_eq!(outcome(&trail, "internal")["reason"], "this scope is retired");
    let explain = |jti: String| {
        let s = &s;
        async move {
            consent_ledger::audit::explain::explain(s.app.store.as_ref(), &jti)
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(explain(jti1.clone()).await["policy_version"], before);
    assert_eq!(explain(jti2).await["policy_version"], after);
    // Both versions are in the ledger, each once.
    let published: Vec<_> = s
        .app
        .store
        .read_from(1, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "PolicyPublished")
        .collect();
    assert_eq!(published.len(), 2);
    assert!(published[1].payload.contains(&after));

    // A broken file is refused and the policy in force stays.
    std::fs::write(&file, "[[scopes]]\nname = \"x\"\nauthorizers = [\"missing\"]\n").unwrap();
    let r = s
        .http
        .post(format!("{}/admin/policy/reload", s.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.app.policy().version, after);
}

on_both_stores!(
    each_authorizer_type_decides_its_scopes_and_the_trail_says_why,
    a_standing_consent_in_the_ledger_lets_an_absent_subject_have_the_scope,
    a_policy_change_applies_to_the_next_token_and_never_to_tokens_out,
);

#[tokio::test]
async fn audit_explain_prints_each_scopes_authorizers_and_outcome() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db, POLICY).await;
    let secret = client(&s, "svc", "first_party", json!({})).await;
    let (_, _, _, jti) = issue(&s, "svc", &secret, "read legacy", None).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
            .args(["--database", &db.url, "audit", "explain"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = run(&[&jti]);
    assert!(ok, "{text}");
    assert!(
        text.contains("scope legacy: denied: this scope is retired"),
        "{text}"
    );
    assert!(text.contains("retired (deny): deny"), "{text}");
    assert!(
        text.contains("scope read: issued, consent not_required"),
        "{text}"
    );
    let (ok, json_text) = run(&[&jti, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(v["decision_trail"]["scopes"][1]["outcome"], "denied");
    assert!(!run(&["no-such-jti"]).0);
}
