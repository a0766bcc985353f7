//! The JWT bearer assertion grant (RFC 7523 §2.1) over HTTP, on SQLite and PostgreSQL: a trusted
//! issuer's assertion names a local user who is absent, so consent comes only from the ledger; each
//! assertion is used once; keys fetched from a jwks_uri follow rotation without being hammered; and
//! the forgeries RFC 7523 and RFC 8725 warn about are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::assertions::{IssuerKey, claims, jwks, toml_inline};
use common::flows::{claims as token_claims, code_flow, register_app};
use common::users::{add_user, login, no_redirect_client};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use reqwest::header::COOKIE;
use serde_json::{Value, json};

const URN: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ISS: &str = "https://idp.partner.example";
const PASSWORD: &str = "correct horse battery";

/// The seed example's policy: `messages:read` needs consent. One trusted issuer with inline keys, and
/// `extra` (more issuers).
fn config(strict: bool, key: &IssuerKey, extra: &str) -> String {
    format!(
        r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[policy]
strict_consent = {strict}
[[authorizers]]
name = "consent"
type = "consent"
[[scopes]]
name = "profile"
description = "See your profile"
default = true
[[scopes]]
name = "messages:read"
description = "Read your messages"
authorizers = ["consent"]
[[scopes]]
name = "admin"
description = "Administer"
[[trusted_issuers]]
issuer = "{ISS}"
subjects = ["ann", "bob", "carl"]
subject_mapping = {{ by = "username" }}
scopes = ["profile", "messages:read"]
algorithms = ["ES256"]
jwks = {}
{extra}
"#,
        toml_inline(&jwks(&[key]))
    )
}

async fn setup(db: &TestDb, strict: bool, key: &IssuerKey, extra: &str) -> (TestServer, String) {
    let s = TestServer::start(db, &config(strict, key, extra)).await;
    let secret = register_app(
        &s,
        "app",
        &["profile", "messages:read", "admin"],
        json!({"grant_types": [URN, "authorization_code", "refresh_token"]}),
    )
    .await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    (s, secret)
}

async fn bearer(s: &TestServer, secret: &str, assertion: &str, scope: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("app", secret)),
            &[("grant_type", URN), ("assertion", assertion), ("scope", scope)],
        )
        .await;
    (status, body)
}

fn scopes(body: &Value) -> Vec<String> {
    let jwt = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"));
    token_claims(jwt)["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

fn refused(status: u16, body: &Value, because: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(because), "{description}");
}

async fn events(s: &TestServer) -> Vec<(u64, Event)> {
    let store: &dyn EventStore = s.app.store.as_ref();
    store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let r = e.decode().unwrap();
            (r.position, r.event)
        })
        .collect()
}

async fn last_token_issued(s: &TestServer) -> projections::event::TokenIssued {
    events(s)
        .await
        .into_iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::TokenIssued(t) => Some(t),
            _ => None,
        })
        .unwrap()
}

/// What the last token's trail says about `scope`'s consent.
async fn consent_cited(s: &TestServer, scope: &str) -> Value {
    let trail = last_token_issued(s).await.decision_trail;
    trail["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scope"] == scope)
        .unwrap_or_else(|| panic!("{scope} not in {trail}"))
        .clone()
}

on_both_stores!(
    consent_for_an_assertion_comes_only_from_the_ledger,
    strict_consent_never_reuses_a_ledger_consent,
    assertion_replay_is_refused,
    an_assertion_replayed_at_the_same_moment_gets_one_token,
    an_unknown_kid_refetches_the_jwks_uri_at_most_once_a_minute,
    alg_none_assertion_is_refused,
    hmac_signed_with_the_public_key_is_refused,
    an_assertion_for_another_audience_is_refused,
    an_expired_or_too_long_assertion_is_refused,
    a_subject_the_issuer_may_not_assert_or_no_local_user_is_refused,
    a_disabled_user_gets_no_token,
    an_untrusted_issuer_or_a_client_without_the_grant_is_refused,
    trust_changes_are_recorded_in_the_ledger_once,
    a_trusted_issuers_jwt_is_exchanged_into_a_new_delegation_once,
    may_act_in_a_foreign_token_is_enforced_without_actor_token,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A service that may exchange tokens, impersonating or acting as itself.
async fn exchanging_service(s: &TestServer) -> String {
    s.register(json!({
        "client_id": "svc", "name": "Service", "kind": "first_party", "audience": "machine",
        "grant_types": [EXCHANGE, "client_credentials"], "scopes": ["profile", "messages:read"],
        "token_exchange": {"impersonation": true, "actors": ["svc"]},
    }))
    .await
    .unwrap()
}

async fn exchange(s: &TestServer, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut all = vec![("grant_type", EXCHANGE), ("subject_token_type", JWT_TYPE)];
    all.extend_from_slice(form);
    let (status, _, body) = s.post_form("/token", Some(("svc", secret)), &all).await;
    (status, body)
}

async fn a_trusted_issuers_jwt_is_exchanged_into_a_new_delegation_once(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, _) = setup(&db, false, &key, "").await;
    let svc = exchanging_service(&s).await;
    let jwt = key.sign(&claims(&s, ISS, "ann", "x-1"));
    let (status, body) = exchange(&s, &svc, &[("subject_token", &jwt)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    // The user is absent: the consent scope is dropped; the token is ann's, in a new delegation
    assert_eq!(scopes(&body), ["profile"]);
    let issued = last_token_issued(&s).await;
    assert_eq!(issued.grant_type, EXCHANGE);
    assert_eq!(issued.client_id, "svc");
    assert!(issued.act.is_none());
    assert_eq!(issued.decision_trail["exchanged"]["subject_token"]["iss"], ISS);
    let delegation = issued.delegation_id.clone().unwrap();
    assert!(events(&s).await.iter().any(|(_, e)| matches!(e,
        Event::DelegationCreated(d) if d.delegation_id == delegation && d.grant_type == EXCHANGE)));
    // The same JWT again: refused, nothing issued
    let (status, body) = exchange(&s, &svc, &[("subject_token", &jwt)]).await;
    refused(status, &body, "already exchanged");
    // A JWT of an untrusted issuer: refused
    let forged = IssuerKey::new("k9").sign(&claims(&s, "https://evil.example", "ann", "x-2"));
    let (status, body) = exchange(&s, &svc, &[("subject_token", &forged)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

async fn may_act_in_a_foreign_token_is_enforced_without_actor_token(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, _) = setup(&db, false, &key, "").await;
    let svc = exchanging_service(&s).await;
    let mut c = claims(&s, ISS, "ann", "m-1");
    c["may_act"] = json!({"sub": "svc"});
    // The client may impersonate, but the token names who may act: leaving out the actor is refused
    let (status, body) = exchange(&s, &svc, &[("subject_token", &key.sign(&c))]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // With the named actor's own token, the new token says who acts
    let (status, _, actor) = s
        .post_form(
            "/token",
            Some(("svc", &svc)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "{actor}");
    c["jti"] = json!("m-2");
    let (status, body) = exchange(
        &s,
        &svc,
        &[
            ("subject_token", &key.sign(&c)),
            ("actor_token", actor["access_token"].as_str().unwrap()),
            (
                "actor_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        token_claims(body["access_token"].as_str().unwrap())["act"]["sub"],
        "svc"
    );
}

async fn consent_for_an_assertion_comes_only_from_the_ledger(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;

    // No standing consent: messages:read is dropped, the rest issued, and the trail says why
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, ISS, "ann", "a1")),
        "profile messages:read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile"]);
    let issued = last_token_issued(&s).await;
    assert_eq!(issued.grant_type, URN);
    assert_eq!(
        consent_cited(&s, "messages:read").await["outcome"],
        "dropped_no_consent"
    );

    // Ann consents once on the consent page; from then on the ledger's consent stands for her
    let cookie = login(&s, "ann", PASSWORD).await;
    code_flow(&s, &cookie, ("app", &secret), "messages:read", &["messages:read"]).await;
    let granted_at = events(&s)
        .await
        .into_iter()
        .rev()
        .find_map(|(p, e)| matches!(e, Event::ConsentGranted(_)).then_some(p))
        .unwrap();
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, ISS, "ann", "a2")),
        "profile messages:read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile", "messages:read"]);
    let cited = consent_cited(&s, "messages:read").await["consent"].clone();
    assert_eq!(cited, json!({"from": "ledger", "position": granted_at}));

    // Ann revokes the consent on /account: dropped again
    let page = no_redirect_client()
        .get(format!("{}/account", s.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "action=\"/account/consents/";
    let start = page.find(marker).unwrap_or_else(|| panic!("{page}")) + "action=\"".len();
    let action = &page[start..start + page[start..].find('"').unwrap()];
    let csrf = common::users::csrf_token(&s, &cookie).await;
    let r = no_redirect_client()
        .post(format!("{}{action}", s.base))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, ISS, "ann", "a3")),
        "profile messages:read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile"]);

    // The issuer bounds the scopes: admin is never issued on its assertions, whatever the client may ask
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, ISS, "ann", "a4")),
        "profile admin",
    )
    .await;
    assert_eq!((status, scopes(&body)), (200, vec!["profile".to_owned()]));
    let (status, body) = bearer(&s, &secret, &key.sign(&claims(&s, ISS, "ann", "a5")), "admin").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
}

async fn strict_consent_never_reuses_a_ledger_consent(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, true, &key, "").await;
    let cookie = login(&s, "ann", PASSWORD).await;
    code_flow(&s, &cookie, ("app", &secret), "messages:read", &["messages:read"]).await;
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, ISS, "ann", "s1")),
        "profile messages:read",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile"]);
}

async fn an_assertion_replayed_at_the_same_moment_gets_one_token(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let assertion = key.sign(&claims(&s, ISS, "ann", "raced"));
    // A refused request uses nothing up: the assertion is spent by the token it gets
    let (status, body) = bearer(&s, &secret, &assertion, "admin").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let before = events(&s).await.len();
    let answers =
        futures_util::future::join_all((0..8).map(|_| bearer(&s, &secret, &assertion, "profile"))).await;
    let issued = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(issued, 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        refused(*status, body, "already used");
    }
    // The losers recorded nothing: one delegation and one token
    let added = events(&s).await.split_off(before);
    let tokens = added
        .iter()
        .filter(|(_, e)| matches!(e, Event::TokenIssued(_)))
        .count();
    let delegations = added
        .iter()
        .filter(|(_, e)| matches!(e, Event::DelegationCreated(_)))
        .count();
    assert_eq!((tokens, delegations), (1, 1));
}

async fn assertion_replay_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let assertion = key.sign(&claims(&s, ISS, "ann", "once"));
    let (status, body) = bearer(&s, &secret, &assertion, "profile").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bearer(&s, &secret, &assertion, "profile").await;
    refused(status, &body, "already used");
    // Still refused while it would otherwise verify (within the leeway after exp)
    s.advance(80);
    let (status, body) = bearer(&s, &secret, &assertion, "profile").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// A JWKS endpoint serving whatever key set the test puts in, counting its fetches.
struct KeyServer {
    doc: Mutex<Value>,
    fetches: AtomicUsize,
}

async fn key_server(doc: Value) -> (Arc<KeyServer>, String) {
    use axum::extract::State;
    let state = Arc::new(KeyServer {
        doc: Mutex::new(doc),
        fetches: AtomicUsize::new(0),
    });
    let router = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(|State(k): State<Arc<KeyServer>>| async move {
                k.fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.doc.lock().unwrap().clone())
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (state, url)
}

async fn an_unknown_kid_refetches_the_jwks_uri_at_most_once_a_minute(db: TestDb) {
    const ROTATING: &str = "https://rotating.example";
    let (k1, k2, k3) = (IssuerKey::new("k1"), IssuerKey::new("k2"), IssuerKey::new("k3"));
    let (keys, url) = key_server(jwks(&[&k1])).await;
    let extra = format!(
        "[[trusted_issuers]]\nissuer = \"{ROTATING}\"\nsubjects = \"all\"\n\
         subject_mapping = {{ by = \"username\" }}\nscopes = [\"profile\"]\njwks_uri = \"{url}\"\n"
    );
    let (s, secret) = setup(&db, false, &IssuerKey::new("inline"), &extra).await;
    let fetches = || keys.fetches.load(Ordering::SeqCst);
    assert_eq!(fetches(), 0, "nothing is fetched before an assertion needs it");

    let (status, body) = bearer(
        &s,
        &secret,
        &k1.sign(&claims(&s, ROTATING, "ann", "r1")),
        "profile",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bearer(
        &s,
        &secret,
        &k1.sign(&claims(&s, ROTATING, "ann", "r2")),
        "profile",
    )
    .await;
    assert_eq!((status, fetches()), (200, 1), "cached: {body}");

    // The issuer rotates: an assertion with the new kid refetches once and verifies
    *keys.doc.lock().unwrap() = jwks(&[&k2]);
    let (status, body) = bearer(
        &s,
        &secret,
        &k2.sign(&claims(&s, ROTATING, "ann", "r3")),
        "profile",
    )
    .await;
    assert_eq!((status, fetches()), (200, 2), "{body}");

    // It rotates again within the minute: no refetch, the assertion is refused
    *keys.doc.lock().unwrap() = jwks(&[&k3]);
    let (status, body) = bearer(
        &s,
        &secret,
        &k3.sign(&claims(&s, ROTATING, "ann", "r4")),
        "profile",
    )
    .await;
    refused(status, &body, "kid");
    assert_eq!(fetches(), 2);

    // A minute later the unknown kid refetches again
    s.advance(61);
    let (status, body) = bearer(
        &s,
        &secret,
        &k3.sign(&claims(&s, ROTATING, "ann", "r5")),
        "profile",
    )
    .await;
    assert_eq!((status, fetches()), (200, 3), "{body}");
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn alg_none_assertion_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let c = claims(&s, ISS, "ann", "n1");
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&c));
    let (status, body) = bearer(&s, &secret, &unsigned, "profile").await;
    refused(status, &body, "alg none");
    // Nor with the signature of a real assertion pasted on
    let real = key.sign(&c);
    let forged = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none"})),
        b64(&c),
        real.split('.').nth(2).unwrap()
    );
    let (status, body) = bearer(&s, &secret, &forged, "profile").await;
    refused(status, &body, "alg none");
}

async fn hmac_signed_with_the_public_key_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let c = claims(&s, ISS, "ann", "h1");
    for secret_bytes in [
        key.public_pem.as_bytes().to_vec(),
        key.jwk.to_string().into_bytes(),
    ] {
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("k1".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &c,
            &jsonwebtoken::EncodingKey::from_secret(&secret_bytes),
        )
        .unwrap();
        let (status, body) = bearer(&s, &secret, &forged, "profile").await;
        refused(status, &body, "HMAC");
    }
}

async fn an_assertion_for_another_audience_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let mut c = claims(&s, ISS, "ann", "aud1");
    c["aud"] = json!("https://other-as.example/token");
    let (status, body) = bearer(&s, &secret, &key.sign(&c), "profile").await;
    refused(status, &body, "aud");
    // The issuer identifier is as good as the token endpoint
    c["aud"] = json!(s.base);
    let (status, body) = bearer(&s, &secret, &key.sign(&c), "profile").await;
    assert_eq!(status, 200, "{body}");
}

async fn an_expired_or_too_long_assertion_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let assertion = key.sign(&claims(&s, ISS, "ann", "e1"));
    s.advance(120);
    let (status, body) = bearer(&s, &secret, &assertion, "profile").await;
    refused(status, &body, "expired");
    let mut c = claims(&s, ISS, "ann", "e2");
    c["exp"] = json!(s.now() + 3600);
    let (status, body) = bearer(&s, &secret, &key.sign(&c), "profile").await;
    refused(status, &body, "seconds ahead");
    let mut c = claims(&s, ISS, "ann", "e3");
    c["nbf"] = json!(s.now() + 300);
    let (status, body) = bearer(&s, &secret, &key.sign(&c), "profile").await;
    refused(status, &body, "not valid yet");
}

async fn a_subject_the_issuer_may_not_assert_or_no_local_user_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    add_user(&s, "dave", PASSWORD, json!({})).await;
    // dave is a local user, but the issuer may only speak for ann, bob and carl
    let (status, body) = bearer(&s, &secret, &key.sign(&claims(&s, ISS, "dave", "d1")), "profile").await;
    refused(status, &body, "may not assert this subject");
    // carl may be asserted but has no account here
    let (status, body) = bearer(&s, &secret, &key.sign(&claims(&s, ISS, "carl", "c1")), "profile").await;
    refused(status, &body, "not a user of this server");
}

async fn a_disabled_user_gets_no_token(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let store = s.app.store.as_ref();
    let ann = consent_ledger::users::get(store, "ann").await.unwrap();
    let disable = consent_ledger::users::disable(ann.as_ref(), "ann", "left", s.now()).unwrap();
    store.append(disable).await.unwrap();
    let (status, body) = bearer(&s, &secret, &key.sign(&claims(&s, ISS, "ann", "x1")), "profile").await;
    refused(status, &body, "disabled");
}

async fn an_untrusted_issuer_or_a_client_without_the_grant_is_refused(db: TestDb) {
    let key = IssuerKey::new("k1");
    let (s, secret) = setup(&db, false, &key, "").await;
    let (status, body) = bearer(
        &s,
        &secret,
        &key.sign(&claims(&s, "https://evil.example", "ann", "u1")),
        "profile",
    )
    .await;
    refused(status, &body, "not trusted");
    // The description names no trusted issuer
    assert!(!body.to_string().contains(ISS), "{body}");
    let other = register_app(&s, "web", &["profile"], json!({})).await;
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("web", &other)),
            &[
                ("grant_type", URN),
                ("assertion", &key.sign(&claims(&s, ISS, "ann", "u2"))),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

async fn trust_changes_are_recorded_in_the_ledger_once(db: TestDb) {
    use consent_ledger::trust::issuers;
    let key = IssuerKey::new("k1");
    let (s, _) = setup(&db, false, &key, "").await;
    let trust_events = |all: Vec<(u64, Event)>| -> Vec<Event> {
        all.into_iter()
            .map(|(_, e)| e)
            .filter(|e| {
                matches!(
                    e,
                    Event::TrustedIssuerConfigured(_) | Event::TrustedIssuerRemoved(_)
                )
            })
            .collect()
    };
    let recorded = trust_events(events(&s).await);
    let [Event::TrustedIssuerConfigured(c)] = recorded.as_slice() else {
        panic!("{recorded:?}")
    };
    assert_eq!(c.trust.issuer, ISS);
    let thumbprint = match &c.trust.keys {
        projections::event::TrustedKeys::Jwks { thumbprints } => thumbprints.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(thumbprint.len(), 1);
    // No key material in the ledger: the public key's coordinates do not appear
    let x = key.jwk["x"].as_str().unwrap();
    let raw = s.app.store.read_from(1, 10_000).await.unwrap();
    assert!(raw.iter().all(|e| !e.payload.contains(x)));

    // Starting again with the same configuration records nothing
    let now = s.now();
    assert_eq!(s.app.record_trusted_issuers(now).await.unwrap(), 0);

    // Two nodes starting together with a changed configuration record the change once
    let mut changed = s.app.config.trusted_issuers.clone();
    changed[0].scopes = vec!["profile".into()];
    let store = s.app.store.as_ref();
    let (a, b) = tokio::join!(
        issuers::record(store, &changed, now),
        issuers::record(store, &changed, now)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    // And an issuer no longer configured is recorded as removed
    assert_eq!(issuers::record(store, &[], now).await.unwrap(), 1);
    let recorded = trust_events(events(&s).await);
    assert!(
        matches!(
            recorded.as_slice(),
            [
                Event::TrustedIssuerConfigured(_),
                Event::TrustedIssuerConfigured(c),
                Event::TrustedIssuerRemoved(r)
            ] if c.trust.scopes == ["profile"] && r.issuer == ISS
        ),
        "{recorded:?}"
    );
    let row: Option<projections::trusted_issuers::TrustedIssuer> =
        consent_ledger::store::get(store, ISS).await.unwrap();
    assert!(!row.unwrap().is_trusted());
}
