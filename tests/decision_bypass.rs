//! Attacks on the issuance decision over HTTP, on SQLite and PostgreSQL: each test is named after what it
//! stops. A consent answer settles consent only; tokens narrow and never widen; what a request named is
//! what its redemption must repeat.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::*;
use common::users::{add_user, location, login, no_redirect_client};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

const CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[authorizers]]
name = "ask"
type = "consent"
[[authorizers]]
name = "mfa"
type = "acr"
required = "mfa"
order = ["pwd", "mfa"]
[[scopes]]
name = "openid"
[[scopes]]
name = "profile"
description = "See your name"
authorizers = ["ask"]
[[scopes]]
name = "photos.read"
description = "See your photos"
authorizers = ["ask"]
[[scopes]]
name = "transfers"
description = "Move money"
authorizers = ["ask", "mfa"]
"#;

const SCOPES: &[&str] = &["openid", "profile", "photos.read", "transfers"];
const PASSWORD: &str = "correct horse battery";

async fn setup(db: &TestDb, extra: Value) -> (TestServer, String, String) {
    let s = TestServer::start(db, CONFIG).await;
    let secret = register_app(&s, "printer", SCOPES, extra).await;
    add_user(&s, "ann", PASSWORD, json!({"name": "Ann"})).await;
    let cookie = login(&s, "ann", PASSWORD).await;
    (s, secret, cookie)
}

async fn events(s: &TestServer) -> Vec<Event> {
    let store: &dyn EventStore = s.app.store.as_ref();
    let mut out = vec![];
    for e in store.read_from(1, 10_000).await.unwrap() {
        out.push(e.decode().unwrap().event);
    }
    out
}

fn codes_issued(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::AuthorizationCodeIssued(_)))
        .count()
}

/// A form's CSRF field as this browser's pages carry it: GETs `path` and reads the hidden field, keeping
/// any cookie the page sets.
async fn csrf_from_page(s: &TestServer, cookie: &str, path: &str) -> (String, String) {
    let r = no_redirect_client()
        .get(format!("{}{path}", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let mut cookie = cookie.to_owned();
    for v in r.headers().get_all(SET_COOKIE) {
        let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
        let name = pair.split('=').next().unwrap().to_owned();
        let kept: Vec<&str> = cookie
            .split("; ")
            .filter(|c| !c.starts_with(&format!("{name}=")))
            .collect();
        cookie = kept.join("; ");
        cookie = format!("{cookie}; {pair}");
    }
    let page = r.text().await.unwrap();
    (cookie, hidden(&page, "csrf"))
}

on_both_stores!(
    posting_the_consent_form_cannot_settle_a_step_up,
    refusing_every_asked_scope_issues_no_code,
    a_refresh_cannot_move_a_grant_to_another_audience,
    a_code_cannot_be_redeemed_without_the_redirect_uri_its_request_named,
    an_overflowing_max_age_is_refused_not_wrapped,
    another_client_cannot_burn_a_pushed_request_uri,
);

/// RFC 9700 §2.4 / DESIGN.md "Who settles what": a password-only session asks for a scope that needs mfa
/// and, instead of the second factor, posts the consent form for the pending request itself.
async fn posting_the_consent_form_cannot_settle_a_step_up(db: TestDb) {
    let (s, secret, _) = setup(&db, json!({})).await;
    add_user(&s, "bob", "another good password", json!({})).await;
    let cookie = login(&s, "bob", "another good password").await;
    common::users::enroll_totp(&s, "bob").await;
    let p = pkce();
    let r = authorize(
        &s,
        Some(&cookie),
        &code_request("printer", "profile transfers", &p),
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = location(r.headers());
    assert!(to.starts_with("/login/totp?return_to="), "{to}");
    let return_to = params_of(&to)["return_to"].clone();
    let id = params_of(&return_to)["id"].clone();
    let (cookie, csrf) = csrf_from_page(&s, &cookie, &to).await;

    let r = no_redirect_client()
        .post(format!("{}/authorize/consent", s.base))
        .header(COOKIE, &cookie)
        .form(&[
            ("id", id.as_str()),
            ("csrf", csrf.as_str()),
            ("action", "approve"),
            ("scope.transfers", "on"),
            ("scope.profile", "on"),
        ])
        .send()
        .await
        .unwrap();
    // The answer settles nothing: the user is sent to the second factor, and no code or consent exists.
    assert_eq!(r.status(), 303);
    let to = location(r.headers());
    assert!(to.starts_with("/login/totp?"), "{to}");
    let recorded = events(&s).await;
    assert_eq!(codes_issued(&recorded), 0);
    assert!(
        !recorded.iter().any(|e| matches!(e, Event::ConsentGranted(_))),
        "the forged answer recorded a consent"
    );
    // And no token ever carries `transfers` with acr pwd.
    assert!(recorded.iter().all(|e| match e {
        Event::TokenIssued(t) => !t.scopes.iter().any(|sc| sc == "transfers"),
        _ => true,
    }));
    let _ = secret;
}

/// RFC 6749 §4.1.2.1: a user who refuses every scope they were asked about gives the client no code, not
/// even one for the scopes that needed no consent (which would tell the client who the user is).
async fn refusing_every_asked_scope_issues_no_code(db: TestDb) {
    let (s, _secret, cookie) = setup(&db, json!({})).await;
    let p = pkce();
    for approve in [None, Some(&[][..])] {
        let r = authorize(&s, Some(&cookie), &code_request("printer", "openid profile", &p)).await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        let r = answer_consent(&s, &cookie, &page, approve).await;
        assert_eq!(r.status(), 303);
        let params = params_of(&location(r.headers()));
        assert_eq!(params["error"], "access_denied", "{params:?}");
        assert!(!params.contains_key("code"));
    }
    assert_eq!(codes_issued(&events(&s).await), 0);
}

/// RFC 8707 §2.2 / RFC 9700 §4.10: a grant given for one audience is refreshed with `resource` naming
/// another audience the client may use.
async fn a_refresh_cannot_move_a_grant_to_another_audience(db: TestDb) {
    let (s, secret, cookie) = setup(
        &db,
        json!({"resources": ["https://api.example", "https://payments.example"]}),
    )
    .await;
    let p = pkce();
    let mut request = code_request("printer", "openid", &p);
    request.push(("resource", "https://api.example"));
    let q = code_for(&s, &cookie, &request, &[]).await;
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        json!(["https://api.example"])
    );
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("printer", &secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", "https://payments.example"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    // The refused attempt used nothing up: the granted audience still refreshes.
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("printer", &secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", "https://api.example"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        json!(["https://api.example"])
    );
    let created = events(&s)
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::DelegationCreated(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.audience, ["https://api.example"]);
}

/// RFC 6749 §4.1.3: the token request must repeat the `redirect_uri` its authorization request named.
async fn a_code_cannot_be_redeemed_without_the_redirect_uri_its_request_named(db: TestDb) {
    let (s, secret, cookie) = setup(&db, json!({})).await;
    let p = pkce();
    let q = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("printer", &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("code_verifier", &p.verifier),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
}

/// A `max_age` near `i64::MAX` would overflow `auth_time + max_age`; it is refused to the client.
async fn an_overflowing_max_age_is_refused_not_wrapped(db: TestDb) {
    let (s, _secret, cookie) = setup(&db, json!({})).await;
    let p = pkce();
    let mut request = code_request("printer", "openid", &p);
    request.push(("max_age", "9223372036854775807"));
    let r = authorize(&s, Some(&cookie), &request).await;
    assert_eq!(r.status(), 303);
    let params = params_of(&location(r.headers()));
    assert_eq!(params["error"], "invalid_request", "{params:?}");
    // The largest accepted value works and does not force a sign-in.
    let mut request = code_request("printer", "openid", &p);
    request.push(("max_age", "315360000"));
    let params = code_for(&s, &cookie, &request, &[]).await;
    assert!(params.contains_key("code"), "{params:?}");
}

/// RFC 9126 §4: a `request_uri` belongs to the client that pushed it; another client presenting it must not
/// use it up before the rightful client does.
async fn another_client_cannot_burn_a_pushed_request_uri(db: TestDb) {
    let (s, secret, cookie) = setup(&db, json!({})).await;
    register_app(&s, "other", SCOPES, json!({})).await;
    let p = pkce();
    let mut form = code_request("printer", "openid", &p);
    form.retain(|(k, _)| *k != "client_id");
    let (status, _, body) = s.post_form("/par", Some(("printer", &secret)), &form).await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap().to_owned();
    let stolen = authorize(
        &s,
        Some(&cookie),
        &[("client_id", "other"), ("request_uri", &uri)],
    )
    .await;
    assert_eq!(stolen.status(), 400);
    let r = authorize(
        &s,
        Some(&cookie),
        &[("client_id", "printer"), ("request_uri", &uri)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(params_of(&location(r.headers())).contains_key("code"));
}
