//! The password grant (RFC 6749 §4.3) over HTTP, on SQLite and PostgreSQL: off unless a client lists
//! it, the sign-in page's limits, the user absent for consent and step-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, code_flow, register_app};
use common::users::{add_user, enroll_totp, login};
use common::{TestDb, TestServer};
use projections::Event;
use serde_json::{Value, json};

const CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[login]
failed_attempts_max = 3
[[authorizers]]
name = "ask"
type = "consent"
[[authorizers]]
name = "mfa"
type = "acr"
required = "mfa"
order = ["pwd", "mfa"]
[[scopes]]
name = "profile"
description = "See your profile"
default = true
[[scopes]]
name = "messages:read"
description = "Read your messages"
authorizers = ["ask"]
[[scopes]]
name = "pay"
description = "Make payments"
authorizers = ["mfa"]
"#;

const PASSWORD: &str = "correct horse battery";

async fn setup(db: &TestDb, extra: Value) -> (TestServer, String) {
    let s = TestServer::start(db, CONFIG).await;
    let mut body = json!({"grant_types": ["password", "authorization_code", "refresh_token"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let secret = register_app(&s, "legacy", &["profile", "messages:read", "pay"], body).await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    (s, secret)
}

async fn password_grant(s: &TestServer, secret: &str, password: &str, scope: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("legacy", secret)),
            &[
                ("grant_type", "password"),
                ("username", "ann"),
                ("password", password),
                ("scope", scope),
            ],
        )
        .await;
    (status, body)
}

fn scopes(body: &Value) -> Vec<String> {
    let jwt = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"));
    claims(jwt)["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

async fn last_token_issued(s: &TestServer) -> projections::event::TokenIssued {
    let events = s.app.store.read_from(1, 10_000).await.unwrap();
    events
        .into_iter()
        .rev()
        .find_map(|e| match e.decode().unwrap().event {
            Event::TokenIssued(t) => Some(t),
            _ => None,
        })
        .unwrap()
}

on_both_stores!(
    the_user_is_absent_so_consent_comes_only_from_the_ledger,
    a_step_up_scope_is_dropped_and_second_factor_users_are_refused,
    password_guessing_is_limited_like_the_sign_in_page,
    the_password_grant_is_off_unless_the_client_lists_it,
    a_stock_oauth2_client_gets_a_token_with_a_password,
);

async fn the_user_is_absent_so_consent_comes_only_from_the_ledger(db: TestDb) {
    let (s, secret) = setup(&db, json!({})).await;
    // No consent yet: the consent scope is dropped, the rest issued, and the delegation refreshes
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile messages:read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile"]);
    assert!(body["refresh_token"].is_string(), "{body}");
    let issued = last_token_issued(&s).await;
    assert_eq!(issued.grant_type, "password");
    let trail = issued.decision_trail.to_string();
    assert!(trail.contains("dropped_no_consent"), "{trail}");

    // Ann consents on the consent page once; from then on the ledger's consent stands for her
    let cookie = login(&s, "ann", PASSWORD).await;
    code_flow(
        &s,
        &cookie,
        ("legacy", &secret),
        "messages:read",
        &["messages:read"],
    )
    .await;
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile messages:read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes(&body), ["profile", "messages:read"]);
    let trail = last_token_issued(&s).await.decision_trail;
    let cited = trail["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scope"] == "messages:read")
        .unwrap()["consent"]
        .clone();
    assert_eq!(cited["from"], "ledger", "{trail}");
    assert!(cited["position"].as_u64().unwrap() > 0, "{trail}");
}

async fn a_step_up_scope_is_dropped_and_second_factor_users_are_refused(db: TestDb) {
    let (s, secret) = setup(&db, json!({})).await;
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile pay").await;
    assert_eq!((status, scopes(&body)), (200, vec!["profile".to_owned()]));

    enroll_totp(&s, "ann").await;
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // A client allowed to sign such users in with the password alone: still no step-up scope
    let trusted = register_app(
        &s,
        "trusted",
        &["profile", "pay"],
        json!({"grant_types": ["password"], "password_grant_second_factor_users": true}),
    )
    .await;
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("trusted", &trusted)),
            &[
                ("grant_type", "password"),
                ("username", "ann"),
                ("password", PASSWORD),
                ("scope", "profile pay"),
            ],
        )
        .await;
    assert_eq!((status, scopes(&body)), (200, vec!["profile".to_owned()]));
}

async fn password_guessing_is_limited_like_the_sign_in_page(db: TestDb) {
    let (s, secret) = setup(&db, json!({})).await;
    for _ in 0..3 {
        let (status, body) = password_grant(&s, &secret, "wrong password!", "profile").await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    }
    // Past the limit even the right password is not checked
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        body["error_description"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    // The sign-in page counts the same attempts
    let r = common::users::submit_password(&s, "ann", PASSWORD).await.1;
    assert_eq!(r.status(), 429);
    // The window passes: the right password works again
    s.advance(s.app.config.login.lockout_window_seconds + 1);
    let (status, body) = password_grant(&s, &secret, PASSWORD, "profile").await;
    assert_eq!(status, 200, "{body}");
}

async fn the_password_grant_is_off_unless_the_client_lists_it(db: TestDb) {
    let (s, _) = setup(&db, json!({})).await;
    let other = register_app(&s, "web", &["profile"], json!({})).await;
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(("web", &other)),
            &[
                ("grant_type", "password"),
                ("username", "ann"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // Nor can a dynamically registered client be given it
    let r = s
        .http
        .post(format!("{}/admin/clients", s.base))
        .bearer_auth("admin-token-admin-token-admin-token-0123")
        .json(
            &json!({"client_id": "dyn", "name": "Dyn", "dynamically_registered": true,
                      "grant_types": ["password"], "scopes": ["profile"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn a_stock_oauth2_client_gets_a_token_with_a_password(db: TestDb) {
    use oauth2::{
        AuthUrl, ClientId, ClientSecret, ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse,
        TokenUrl, basic::BasicClient,
    };
    let (s, secret) = setup(&db, json!({})).await;
    let meta = s.get_json("/.well-known/oauth-authorization-server").await;
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("password"))
    );
    let client = BasicClient::new(ClientId::new("legacy".into()))
        .set_client_secret(ClientSecret::new(secret))
        .set_auth_uri(AuthUrl::new(meta["authorization_endpoint"].as_str().unwrap().into()).unwrap())
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap());
    let http = s.http.clone();
    let send = move |req: oauth2::HttpRequest| {
        let http = http.clone();
        async move {
            let (parts, body) = req.into_parts();
            let r = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(r.status().as_u16());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            Ok::<_, reqwest::Error>(out.body(r.bytes().await?.to_vec()).unwrap())
        }
    };
    let username = ResourceOwnerUsername::new("ann".into());
    let password = ResourceOwnerPassword::new(PASSWORD.into());
    let token = client
        .exchange_password(&username, &password)
        .add_scope(Scope::new("profile".into()))
        .request_async(&send)
        .await
        .unwrap();
    assert_eq!(token.scopes().unwrap()[0].as_str(), "profile");
    assert!(token.refresh_token().is_some());
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .request_async(&send)
        .await
        .unwrap();
    assert_eq!(claims(refreshed.access_token().secret())["scope"], "profile");
}
