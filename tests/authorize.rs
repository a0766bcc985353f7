//! The authorization endpoint and the code grant over HTTP, on SQLite and PostgreSQL: validation, the
//! consent page, PKCE, code replay, PAR, implicit, form_post, prompt handling, ID tokens and userinfo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::*;
use common::users::{add_user, location, login};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use reqwest::header::COOKIE;
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
[[authorizers]]
name = "never"
type = "deny"
reason = "not for anyone"
[[scopes]]
name = "openid"
description = "Sign you in"
[[scopes]]
name = "profile"
description = "See your name"
authorizers = ["ask"]
[[scopes]]
name = "email"
description = "See your email address"
authorizers = ["ask"]
[[scopes]]
name = "photos.read"
description = "See your photos"
lifetime_seconds = 3600
authorizers = ["ask"]
[[scopes]]
name = "photos.delete"
description = "Delete your photos"
authorizers = ["ask"]
[[scopes]]
name = "transfers"
description = "Move money"
authorizers = ["ask", "mfa"]
[[scopes]]
name = "forbidden"
description = "Never granted"
authorizers = ["never"]
"#;

const SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "photos.read",
    "photos.delete",
    "transfers",
    "forbidden",
];

async fn setup(db: &TestDb) -> (TestServer, String, String) {
    let s = TestServer::start(db, CONFIG).await;
    let secret = register_app(&s, "printer", SCOPES, json!({})).await;
    add_user(
        &s,
        "ann",
        "correct horse battery",
        json!({"name": "Ann", "email": "ann@example.com"}),
    )
    .await;
    let cookie = login(&s, "ann", "correct horse battery").await;
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

on_both_stores!(
    consent_approving_some_scopes_issues_exactly_those,
    denying_everything_returns_access_denied,
    an_untrusted_redirect_uri_gets_an_error_page_not_a_redirect,
    pkce_is_required_s256_only_and_checked,
    a_replayed_code_revokes_everything_it_issued,
    a_standing_consent_is_not_asked_again_unless_prompt_consent,
    prompt_none_answers_with_errors,
    nobody_signed_in_goes_to_the_login_page_and_back,
    pushed_requests_are_used_once_and_required_when_configured,
    implicit_returns_a_token_in_the_fragment_only_when_enabled,
    form_post_posts_the_code_to_the_client,
    id_token_and_userinfo_carry_the_granted_claims,
    an_acr_step_up_needs_the_second_factor,
    a_code_is_bound_to_its_client_and_redirect_uri,
);

async fn consent_approving_some_scopes_issues_exactly_those(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let p = pkce();
    let r = authorize(
        &s,
        Some(&cookie),
        &code_request("printer", "openid photos.read photos.delete", &p),
    )
    .await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = r.text().await.unwrap();
    // The page names the client, its kind, each pending scope with its description and lifetime.
    assert!(
        page.contains("Photo Printer") && page.contains("third-party"),
        "{page}"
    );
    assert!(
        page.contains("See your photos") && page.contains("For 1 hour"),
        "{page}"
    );
    assert!(
        page.contains("Delete your photos") && page.contains("Until you revoke it"),
        "{page}"
    );
    let r = answer_consent(&s, &cookie, &page, Some(&["photos.read"])).await;
    assert_eq!(r.status(), 303);
    let params = params_of(&location(r.headers()));
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], s.base);
    let (status, body) = exchange(&s, ("printer", &secret), &params["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid photos.read");
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["scope"], "openid photos.read");
    assert!(body["refresh_token"].is_string());
    // The ledger holds the approval, the refusal (with what was shown), the code, and the delegation.
    let evs = events(&s).await;
    let granted: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::ConsentGranted(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].scopes, vec!["photos.read"]);
    assert!(granted[0].shown.to_string().contains("Delete your photos"));
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::ConsentDenied(d) if d.scopes == vec!["photos.delete"]))
    );
    let delegation = evs
        .iter()
        .find_map(|e| match e {
            Event::DelegationCreated(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let held: Vec<&str> = delegation.scopes.iter().map(|g| g.scope.as_str()).collect();
    assert_eq!(held, vec!["openid", "photos.read"]);
    assert!(
        delegation.scopes[1].expires_at.is_some(),
        "photos.read lives an hour"
    );
    assert_eq!(delegation.auth.acr.as_deref(), Some("pwd"));
    // The rows the flow wrote are what a replay of the log gives, and the chain is intact.
    let store = s.app.store.as_ref();
    assert_eq!(
        consent_ledger::audit::replay::compare(store).await.unwrap(),
        vec![]
    );
    assert!(matches!(
        consent_ledger::audit::verify::verify(store, None).await.unwrap(),
        consent_ledger::audit::verify::Verdict::Intact { .. }
    ));
}

async fn denying_everything_returns_access_denied(db: TestDb) {
    let (s, _secret, cookie) = setup(&db).await;
    let p = pkce();
    let r = authorize(&s, Some(&cookie), &code_request("printer", "photos.read", &p)).await;
    let page = r.text().await.unwrap();
    let r = answer_consent(&s, &cookie, &page, None).await;
    assert_eq!(r.status(), 303);
    let params = params_of(&location(r.headers()));
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-123");
    assert!(
        events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::ConsentDenied(d) if d.scopes == vec!["photos.read"]))
    );
    // The same consent form cannot be answered twice.
    let again = answer_consent(&s, &cookie, &page, Some(&["photos.read"])).await;
    assert_eq!(again.status(), 400);
}

async fn an_untrusted_redirect_uri_gets_an_error_page_not_a_redirect(db: TestDb) {
    let (s, _secret, cookie) = setup(&db).await;
    let p = pkce();
    let mut params = code_request("printer", "openid", &p);
    params[2] = ("redirect_uri", "https://evil.example/cb");
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("not registered"));
    params[1] = ("client_id", "nobody");
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 400);
    // A valid client and redirect URI get errors at the redirect URI.
    let mut params = code_request("printer", "openid", &p);
    params[0] = ("response_type", "id_token");
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        params_of(&location(r.headers()))["error"],
        "unsupported_response_type"
    );
}

async fn pkce_is_required_s256_only_and_checked(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let p = pkce();
    let without: Vec<_> = code_request("printer", "openid", &p)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let r = authorize(&s, Some(&cookie), &without).await;
    let q = params_of(&location(r.headers()));
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));
    let mut plain = code_request("printer", "openid", &p);
    plain[6] = ("code_challenge_method", "plain");
    let r = authorize(&s, Some(&cookie), &plain).await;
    assert_eq!(params_of(&location(r.headers()))["error"], "invalid_request");
    // A wrong or missing verifier is refused; the right one works.
    let q = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let other = pkce();
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&other.verifier)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let q = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let q = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let (status, _) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200);
}

async fn a_replayed_code_revokes_everything_it_issued(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let p = pkce();
    let q = code_for(
        &s,
        &cookie,
        &code_request("printer", "openid photos.read", &p),
        &["photos.read"],
    )
    .await;
    let (status, first) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&s, ("printer", &secret), access).await["active"], true);
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        introspect(&s, ("printer", &secret), access).await["active"],
        false
    );
    assert_eq!(
        introspect(&s, ("printer", &secret), refresh).await["active"],
        false
    );
    let evs = events(&s).await;
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::DelegationRevoked(d) if d.reason == "code_replay"))
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::AuthorizationCodeRedeemed(_)))
            .count(),
        1
    );
}

async fn a_standing_consent_is_not_asked_again_unless_prompt_consent(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    code_flow(&s, &cookie, ("printer", &secret), "openid email", &["email"]).await;
    let p = pkce();
    // Asked once: the second request goes straight back with a code.
    let r = authorize(&s, Some(&cookie), &code_request("printer", "openid email", &p)).await;
    assert_eq!(r.status(), 303);
    assert!(params_of(&location(r.headers())).contains_key("code"));
    let mut params = code_request("printer", "openid email", &p);
    params.push(("prompt", "consent"));
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 200, "prompt=consent shows the page again");
}

async fn prompt_none_answers_with_errors(db: TestDb) {
    let (s, _secret, cookie) = setup(&db).await;
    let p = pkce();
    let mut params = code_request("printer", "openid photos.read", &p);
    params.push(("prompt", "none"));
    let r = authorize(&s, None, &params).await;
    assert_eq!(params_of(&location(r.headers()))["error"], "login_required");
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(params_of(&location(r.headers()))["error"], "consent_required");
    let mut params = code_request("printer", "transfers", &p);
    params.push(("prompt", "none"));
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(
        params_of(&location(r.headers()))["error"],
        "access_denied",
        "acr mfa cannot be reached by an account without a second factor"
    );
    let mut params = code_request("printer", "openid", &p);
    params.push(("prompt", "none"));
    let r = authorize(&s, Some(&cookie), &params).await;
    assert!(params_of(&location(r.headers())).contains_key("code"));
}

async fn nobody_signed_in_goes_to_the_login_page_and_back(db: TestDb) {
    let (s, _secret, _cookie) = setup(&db).await;
    let p = pkce();
    let r = authorize(&s, None, &code_request("printer", "openid", &p)).await;
    assert_eq!(r.status(), 303);
    let to = location(r.headers());
    assert!(to.starts_with("/login?return_to=%2Fauthorize%2Fresume"), "{to}");
    let return_to = params_of(&to)["return_to"].clone();
    let cookie = login(&s, "ann", "correct horse battery").await;
    let r = no_redirect_client_get(&s, &return_to, &cookie).await;
    assert_eq!(r.status(), 303);
    assert!(params_of(&location(r.headers())).contains_key("code"));
    // max_age=0 demands a fresh sign-in even with a session.
    let mut params = code_request("printer", "openid", &p);
    params.push(("max_age", "0"));
    // A second after signing in, the sign-in is older than max_age allows.
    s.advance(1);
    let r = authorize(&s, Some(&cookie), &params).await;
    assert!(location(r.headers()).starts_with("/login?prompt=login"));
}

async fn no_redirect_client_get(s: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    common::users::no_redirect_client()
        .get(format!("{}{path}", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn pushed_requests_are_used_once_and_required_when_configured(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let p = pkce();
    let mut form = code_request("printer", "openid", &p);
    form.retain(|(k, _)| *k != "client_id");
    let (status, _, body) = s.post_form("/par", Some(("printer", &secret)), &form).await;
    assert_eq!(status, 201, "{body}");
    let uri = body["request_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let params = [("client_id", "printer"), ("request_uri", uri.as_str())];
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 303);
    assert!(params_of(&location(r.headers())).contains_key("code"));
    let again = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(again.status(), 400, "a request_uri is used once");
    // A bad pushed request is refused at once, to the client.
    let (status, _, body) = s
        .post_form(
            "/par",
            Some(("printer", &secret)),
            &[("response_type", "code"), ("redirect_uri", REDIRECT)],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    // A client that must use PAR cannot send its request on the query string.
    register_app(
        &s,
        "strict",
        SCOPES,
        json!({"require_pushed_authorization_requests": true}),
    )
    .await;
    let r = authorize(&s, Some(&cookie), &code_request("strict", "openid", &p)).await;
    assert_eq!(params_of(&location(r.headers()))["error"], "invalid_request");
}

async fn implicit_returns_a_token_in_the_fragment_only_when_enabled(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let params = [
        ("response_type", "token"),
        ("client_id", "printer"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "s1"),
    ];
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(params_of(&location(r.headers()))["error"], "unauthorized_client");
    let secret2 = register_app(&s, "spa", SCOPES, json!({"grant_types": ["implicit"]})).await;
    let mut params = params;
    params[1] = ("client_id", "spa");
    let r = authorize(&s, Some(&cookie), &params).await;
    let to = location(r.headers());
    assert!(to.starts_with(&format!("{REDIRECT}#")), "{to}");
    let f = params_of(&to);
    assert_eq!(f["token_type"], "Bearer");
    assert_eq!(f["state"], "s1");
    assert!(!f.contains_key("refresh_token"));
    assert_eq!(
        introspect(&s, ("spa", &secret2), &f["access_token"]).await["active"],
        true
    );
    let _ = secret;
}

async fn form_post_posts_the_code_to_the_client(db: TestDb) {
    let (s, _secret, cookie) = setup(&db).await;
    let p = pkce();
    let mut params = code_request("printer", "openid", &p);
    params.push(("response_mode", "form_post"));
    let r = authorize(&s, Some(&cookie), &params).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action https://app.example"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(page.contains(&format!("action=\"{REDIRECT}\"")), "{page}");
    assert!(!hidden(&page, "code").is_empty());
    assert_eq!(hidden(&page, "state"), "st-123");
}

async fn id_token_and_userinfo_carry_the_granted_claims(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let p = pkce();
    let mut params = code_request("printer", "openid email", &p);
    params.push(("nonce", "n-0S6_WzA2Mj"));
    let q = code_for(&s, &cookie, &params, &["email"]).await;
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "printer");
    assert_eq!(id["iss"], s.base);
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["acr"], "pwd");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["email"], "ann@example.com");
    assert!(id.get("name").is_none(), "profile was not requested");
    let access = body["access_token"].as_str().unwrap();
    let info: Value = reqwest::Client::new()
        .get(format!("{}/userinfo", s.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["email"], "ann@example.com");
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", s.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // Without openid there is no ID token, and userinfo refuses the access token.
    let body = code_flow(&s, &cookie, ("printer", &secret), "email", &["email"]).await;
    assert!(body.get("id_token").is_none());
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", s.base))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

async fn an_acr_step_up_needs_the_second_factor(db: TestDb) {
    let (s, secret, _cookie) = setup(&db).await;
    add_user(&s, "bob", "another good password", json!({})).await;
    // Signed in with a password only; the second factor is enrolled afterwards.
    let cookie = login(&s, "bob", "another good password").await;
    let totp = common::users::enroll_totp(&s, "bob").await;
    let p = pkce();
    let r = authorize(&s, Some(&cookie), &code_request("printer", "transfers", &p)).await;
    assert_eq!(r.status(), 303);
    let to = location(r.headers());
    assert!(to.starts_with("/login/totp?return_to="), "{to}");
    let return_to = params_of(&to)["return_to"].clone();
    let csrf = common::users::csrf_token(&s, &cookie).await;
    let code = consent_ledger::users::totp::code_at(&totp, s.app.now());
    let r = common::users::no_redirect_client()
        .post(format!("{}/login/totp", s.base))
        .header(COOKIE, &cookie)
        .form(&[
            ("code", code.as_str()),
            ("csrf", &csrf),
            ("return_to", &return_to),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(r.headers()), return_to);
    // Back at /authorize: the step-up is done, consent is asked, and the code carries acr mfa.
    let r = no_redirect_client_get(&s, &return_to, &cookie).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let r = answer_consent(&s, &cookie, &page, Some(&["transfers"])).await;
    let q = params_of(&location(r.headers()));
    let (status, body) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "transfers");
    let d = events(&s)
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::DelegationCreated(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(d.auth.acr.as_deref(), Some("mfa"));
    assert!(d.auth.amr.contains(&"otp".to_owned()));
}

async fn a_code_is_bound_to_its_client_and_redirect_uri(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let other = register_app(&s, "other", SCOPES, json!({})).await;
    let p = pkce();
    let q = code_for(&s, &cookie, &code_request("printer", "openid", &p), &[]).await;
    let (status, body) = exchange(&s, ("other", &other), &q["code"], Some(&p.verifier)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("printer", &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", "https://app.example/other"),
                ("code_verifier", &p.verifier),
            ],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    // Neither failure used the code up.
    let (status, _) = exchange(&s, ("printer", &secret), &q["code"], Some(&p.verifier)).await;
    assert_eq!(status, 200);
}
