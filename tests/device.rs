//! The device authorization grant (RFC 8628) over HTTP: a device asks, the user types the code on the
//! verification page and answers on the consent page, and the polling device gets exactly what was
//! approved, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, hidden};
use common::users::{add_user, csrf_token, enroll_totp, location, login, no_redirect_client};
use common::{TestDb, TestServer};
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
[[scopes]]
name = "openid"
description = "Sign you in"
[[scopes]]
name = "photos.read"
description = "See your photos"
authorizers = ["ask"]
[[scopes]]
name = "photos.delete"
description = "Delete your photos"
authorizers = ["ask"]
[[scopes]]
name = "tv.watch"
description = "Watch on this TV"
[[scopes]]
name = "transfers"
description = "Move money"
authorizers = ["ask", "mfa"]
"#;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const PASSWORD: &str = "correct horse battery";

/// A public client for a TV that may use the device grant and refresh.
async fn setup(db: &TestDb) -> TestServer {
    let s = TestServer::start(db, CONFIG).await;
    s.register(json!({
        "client_id": "tv",
        "name": "Living Room TV",
        "token_endpoint_auth_method": "none",
        "grant_types": [DEVICE_GRANT, "refresh_token"],
        "scopes": ["openid", "photos.read", "photos.delete", "tv.watch", "transfers"],
    }))
    .await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    s
}

/// `POST /device_authorization` for the TV.
async fn start(s: &TestServer, scope: &str) -> Value {
    let (status, headers, body) = s
        .post_form(
            "/device_authorization",
            None,
            &[("client_id", "tv"), ("scope", scope)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    body
}

/// The TV polls the token endpoint.
async fn poll(s: &TestServer, client_id: &str, device_code: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code),
                ("client_id", client_id),
            ],
        )
        .await;
    (status, body)
}

fn error_of(polled: &(u16, Value)) -> (u16, &str) {
    (polled.0, polled.1["error"].as_str().unwrap_or("none"))
}

/// The verification page's form for a signed-in browser, prefilled with `user_code`.
async fn code_form(s: &TestServer, cookie: &str, user_code: &str) -> String {
    let r = no_redirect_client()
        .get(format!("{}/device?user_code={user_code}", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Types `typed` on the verification page (as the browser sending `cookie`).
async fn type_code(s: &TestServer, cookie: &str, typed: &str) -> reqwest::Response {
    let page = code_form(s, cookie, "").await;
    no_redirect_client()
        .post(format!("{}/device", s.base))
        .header(COOKIE, cookie)
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("user_code", typed)])
        .send()
        .await
        .unwrap()
}

/// Answers the device consent page: approves `approve`, or denies.
async fn answer(s: &TestServer, cookie: &str, page: &str, approve: Option<&[&str]>) -> reqwest::Response {
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), hidden(page, "csrf")),
        ("user_code".into(), hidden(page, "user_code")),
    ];
    match approve {
        Some(scopes) => {
            form.push(("action".into(), "approve".into()));
            for sc in scopes {
                form.push((format!("scope.{sc}"), "on".into()));
            }
        }
        None => form.push(("action".into(), "deny".into())),
    }
    no_redirect_client()
        .post(format!("{}/device/consent", s.base))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn events(s: &TestServer) -> Vec<Event> {
    s.app
        .store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.decode().unwrap().event)
        .collect()
}

async fn the_whole_flow_gives_the_device_exactly_the_approved_scopes(db: TestDb) {
    let s = setup(&db).await;
    let started = start(&s, "openid photos.read photos.delete").await;
    let user_code = started["user_code"].as_str().unwrap();
    let device_code = started["device_code"].as_str().unwrap();
    // RFC 8628 §3.2, as configured by default
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .bytes()
            .all(|b| b == b'-' || b"BCDFGHJKLMNPQRSTVWXZ".contains(&b))
    );
    assert_eq!(started["verification_uri"], format!("{}/device", s.base));
    assert_eq!(
        started["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", s.base)
    );
    assert_eq!(
        (started["expires_in"].as_i64(), started["interval"].as_i64()),
        (Some(600), Some(5))
    );
    assert!(device_code.len() >= 43);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );

    // Someone not signed in is sent to sign in, and back to the prefilled form.
    let r = no_redirect_client()
        .get(started["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = location(r.headers());
    let back: String =
        form_urlencoded::byte_serialize(format!("/device?user_code={user_code}").as_bytes()).collect();
    assert_eq!(to, format!("/login?return_to={back}"));
    let cookie = login(&s, "ann", PASSWORD).await;
    assert!(
        code_form(&s, &cookie, user_code)
            .await
            .contains(&format!("value=\"{user_code}\""))
    );

    // Typed in lower case without the dash, the code finds the request: the consent page for the TV.
    let typed = user_code.replace('-', "").to_lowercase();
    let r = type_code(&s, &cookie, &typed).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Living Room TV"), "{page}");
    assert!(page.contains("action=\"/device/consent\""), "{page}");
    assert!(page.contains("See your photos") && page.contains("Delete your photos"));
    let r = answer(&s, &cookie, &page, Some(&["photos.read"])).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your device is connected"));

    s.advance(5);
    let (status, token) = poll(&s, "tv", device_code).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "openid photos.read");
    assert_eq!(
        claims(token["access_token"].as_str().unwrap())["scope"],
        "openid photos.read"
    );
    assert!(token["refresh_token"].is_string());
    let id = claims(token["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "tv");

    // The ledger holds the request, the consent answers, the approval and the redemption.
    let all = events(&s).await;
    let requested = all.iter().find_map(|e| match e {
        Event::DeviceAuthorizationRequested(r) => Some(r.clone()),
        _ => None,
    });
    let requested = requested.unwrap();
    assert_eq!(requested.client_id, "tv");
    assert_eq!(requested.interval, 5);
    assert_ne!(
        requested.device_code_hash, device_code,
        "only the hash is recorded"
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::ConsentGranted(c) if c.scopes == ["photos.read"]))
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::ConsentDenied(c) if c.scopes == ["photos.delete"]))
    );
    let approved = all.iter().find_map(|e| match e {
        Event::DeviceAuthorizationApproved(a) => Some(a.clone()),
        _ => None,
    });
    let approved = approved.unwrap();
    assert_eq!(approved.approved, ["photos.read"]);
    assert_eq!(approved.refused, ["photos.delete"]);
    assert_eq!(approved.shown[0]["description"], "See your photos");
    assert_eq!(approved.auth.acr.as_deref(), Some("pwd"));
    let delegation = all.iter().find_map(|e| match e {
        Event::DelegationCreated(d) => Some(d.clone()),
        _ => None,
    });
    let delegation = delegation.unwrap();
    assert_eq!(delegation.grant_type, DEVICE_GRANT);
    assert!(
        all.iter().any(
            |e| matches!(e, Event::DeviceCodeRedeemed(r) if r.delegation_id == delegation.delegation_id)
        )
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::TokenIssued(t) if t.grant_type == DEVICE_GRANT))
    );
}

async fn a_refusal_reaches_the_polling_device_at_its_next_poll(db: TestDb) {
    let s = setup(&db).await;
    let started = start(&s, "photos.read").await;
    let device_code = started["device_code"].as_str().unwrap();
    let cookie = login(&s, "ann", PASSWORD).await;
    let r = type_code(&s, &cookie, started["user_code"].as_str().unwrap()).await;
    let page = r.text().await.unwrap();
    let r = answer(&s, &cookie, &page, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("not connected"));
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "access_denied")
    );
    s.advance(5);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "access_denied")
    );
    let all = events(&s).await;
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::ConsentDenied(c) if c.scopes == ["photos.read"]))
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::DeviceAuthorizationDenied(d) if d.refused == ["photos.read"]))
    );
    // The answered code cannot be answered again.
    let r = type_code(&s, &cookie, started["user_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
}

async fn polling_too_fast_slows_the_device_down(db: TestDb) {
    let s = setup(&db).await;
    let started = start(&s, "tv.watch").await;
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );
    // At once again: slow down, the interval is now 10 s
    assert_eq!(error_of(&poll(&s, "tv", device_code).await), (400, "slow_down"));
    // After 5 s (the old interval): still too fast, now 15 s
    s.advance(5);
    assert_eq!(error_of(&poll(&s, "tv", device_code).await), (400, "slow_down"));
    // Keeping the grown interval: pending again
    s.advance(15);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );
    s.advance(15);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );
}

async fn a_device_code_works_once(db: TestDb) {
    let s = setup(&db).await;
    s.register(json!({
        "client_id": "radio",
        "name": "Kitchen Radio",
        "token_endpoint_auth_method": "none",
        "grant_types": [DEVICE_GRANT],
        "scopes": ["tv.watch"],
    }))
    .await;
    let started = start(&s, "tv.watch").await;
    let device_code = started["device_code"].as_str().unwrap();
    let cookie = login(&s, "ann", PASSWORD).await;
    // Nothing needs consent: typing the code approves it.
    let r = type_code(&s, &cookie, started["user_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your device is connected"));
    // Another client cannot redeem the TV's code.
    assert_eq!(
        error_of(&poll(&s, "radio", device_code).await),
        (400, "invalid_grant")
    );
    let (status, token) = poll(&s, "tv", device_code).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "tv.watch");
    assert!(token.get("id_token").is_none());
    s.advance(5);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "invalid_grant")
    );
    let redeemed = events(&s)
        .await
        .iter()
        .filter(|e| matches!(e, Event::DeviceCodeRedeemed(_)))
        .count();
    assert_eq!(redeemed, 1);
}

async fn user_code_guessing_is_locked_out(db: TestDb) {
    let s = setup(&db).await;
    let started = start(&s, "tv.watch").await;
    let user_code = started["user_code"].as_str().unwrap();
    let cookie = login(&s, "ann", PASSWORD).await;
    for guess in ["BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "FFFF-FFFF", "not a code"] {
        let r = type_code(&s, &cookie, guess).await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("That code is not right"));
    }
    // The sixth attempt is refused before it is checked, even with the right code...
    let r = type_code(&s, &cookie, user_code).await;
    assert_eq!(r.status(), 429);
    // ... and from the same address in another session too.
    add_user(&s, "bob", PASSWORD, json!({})).await;
    let other = login(&s, "bob", PASSWORD).await;
    let r = type_code(&s, &other, user_code).await;
    assert_eq!(r.status(), 429);
    // Once the window has passed, the right code works.
    s.advance(300);
    let started = start(&s, "tv.watch").await;
    let r = type_code(&s, &cookie, started["user_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your device is connected"));
}

async fn an_expired_device_code_is_refused_on_the_page_and_at_the_token_endpoint(db: TestDb) {
    let s = setup(&db).await;
    let started = start(&s, "tv.watch").await;
    let device_code = started["device_code"].as_str().unwrap();
    let cookie = login(&s, "ann", PASSWORD).await;
    s.advance(599);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );
    s.advance(1);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "expired_token")
    );
    let r = type_code(&s, &cookie, started["user_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("This code has expired"), "{text}");
}

async fn a_step_up_scope_sends_the_user_to_the_second_factor(db: TestDb) {
    let s = setup(&db).await;
    // Signed in with a password only; the second factor is enrolled afterwards.
    let cookie = login(&s, "ann", PASSWORD).await;
    let secret = enroll_totp(&s, "ann").await;
    let started = start(&s, "transfers").await;
    let user_code = started["user_code"].as_str().unwrap();
    let device_code = started["device_code"].as_str().unwrap();
    let r = type_code(&s, &cookie, user_code).await;
    assert_eq!(r.status(), 303);
    let back: String =
        form_urlencoded::byte_serialize(format!("/device?user_code={user_code}").as_bytes()).collect();
    assert_eq!(location(r.headers()), format!("/login/totp?return_to={back}"));
    // Ticking the box on a forged consent form settles nothing: the step-up is still due.
    let page = code_form(&s, &cookie, user_code).await;
    let forged = format!("<input name=\"user_code\" value=\"{user_code}\">{page}");
    let r = answer(&s, &cookie, &forged, Some(&["transfers"])).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        error_of(&poll(&s, "tv", device_code).await),
        (400, "authorization_pending")
    );
    // The second factor, and back to the prefilled form; then the consent page, then the token.
    let return_to = format!("/device?user_code={user_code}");
    let csrf = csrf_token(&s, &cookie).await;
    let code = consent_ledger::users::totp::code_at(&secret, s.app.now());
    let r = no_redirect_client()
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
    assert!(
        code_form(&s, &cookie, user_code)
            .await
            .contains(&format!("value=\"{user_code}\""))
    );
    let strong = cookie;
    let r = type_code(&s, &strong, user_code).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Move money"));
    let r = answer(&s, &strong, &page, Some(&["transfers"])).await;
    assert_eq!(r.status(), 200);
    s.advance(5);
    let (status, token) = poll(&s, "tv", device_code).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "transfers");
}

async fn a_stock_oauth2_client_completes_the_device_flow_from_discovery_alone(db: TestDb) {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthUrl, ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
        TokenUrl,
    };
    let s = setup(&db).await;
    let meta = s.get_json("/.well-known/openid-configuration").await;
    let client = BasicClient::new(ClientId::new("tv".into()))
        .set_auth_uri(AuthUrl::new(format!("{}/unused", s.base)).unwrap())
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(meta["device_authorization_endpoint"].as_str().unwrap().into())
                .unwrap(),
        );
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
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("photos.read".into()))
        .request_async(&send)
        .await
        .unwrap();
    assert_eq!(details.verification_uri().as_str(), format!("{}/device", s.base));
    let user_code = details.user_code().secret().clone();
    // The user answers while the device waits: the first poll is pending, then the device sleeps (here,
    // the server's clock moves by the interval instead) while the user approves.
    let cookie = login(&s, "ann", PASSWORD).await;
    let approved = std::sync::Arc::new(tokio::sync::Mutex::new(false));
    let (s_ref, cookie_ref, code_ref) = (&s, cookie.as_str(), user_code.as_str());
    let sleep = |interval: std::time::Duration| {
        let approved = approved.clone();
        async move {
            let mut done = approved.lock().await;
            if !*done {
                let r = type_code(s_ref, cookie_ref, code_ref).await;
                let page = r.text().await.unwrap();
                let r = answer(s_ref, cookie_ref, &page, Some(&["photos.read"])).await;
                assert_eq!(r.status(), 200);
                *done = true;
            }
            s_ref.advance(interval.as_secs() as i64);
        }
    };
    let token = client
        .exchange_device_access_token(&details)
        .request_async(&send, sleep, None)
        .await
        .unwrap();
    assert!(
        *approved.lock().await,
        "the device polled before the user answered"
    );
    let scopes: Vec<&str> = token.scopes().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(scopes, ["openid", "photos.read"]);
    assert!(token.refresh_token().is_some());
    let ann = consent_ledger::users::get(s.app.store.as_ref(), "ann")
        .await
        .unwrap()
        .unwrap();
    let access = claims(token.access_token().secret());
    assert_eq!(access["sub"], ann.subject.as_str());
    assert_eq!(access["scope"], "openid photos.read");
}

async fn the_device_authorization_endpoint_refuses_what_the_client_may_not_have(db: TestDb) {
    let s = setup(&db).await;
    let secret = s
        .register(json!({
            "client_id": "web",
            "name": "Web",
            "grant_types": ["client_credentials"],
            "scopes": ["tv.watch"],
        }))
        .await
        .unwrap();
    let (status, _, body) = s
        .post_form(
            "/device_authorization",
            Some(("web", &secret)),
            &[("scope", "tv.watch")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, _, body) = s
        .post_form(
            "/device_authorization",
            None,
            &[("client_id", "tv"), ("scope", "admin")],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, _, body) = s
        .post_form("/device_authorization", None, &[("client_id", "nobody")])
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    // Nothing refused was recorded.
    assert!(
        !events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::DeviceAuthorizationRequested(_)))
    );
}

async fn a_flood_of_device_requests_keeps_a_bounded_number_waiting(db: TestDb) {
    let s = TestServer::start(
        &db,
        &format!("{CONFIG}\n[limits]\npending_device_requests_max = 3\n"),
    )
    .await;
    s.register(json!({
        "client_id": "tv",
        "name": "Living Room TV",
        "token_endpoint_auth_method": "none",
        "grant_types": [DEVICE_GRANT],
        "scopes": ["tv.watch"],
    }))
    .await;
    for _ in 0..3 {
        start(&s, "tv.watch").await;
    }
    let (status, headers, body) = s
        .post_form(
            "/device_authorization",
            None,
            &[("client_id", "tv"), ("scope", "tv.watch")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    assert!(headers.get("retry-after").is_some());
    let requested = events(&s)
        .await
        .iter()
        .filter(|e| matches!(e, Event::DeviceAuthorizationRequested(_)))
        .count();
    assert_eq!(requested, 3);
    // Their codes are held for two lifetimes (an expired code is told from a wrong one), then the
    // places are free again.
    s.advance(1_201);
    start(&s, "tv.watch").await;
}

on_both_stores!(
    a_flood_of_device_requests_keeps_a_bounded_number_waiting,
    the_whole_flow_gives_the_device_exactly_the_approved_scopes,
    a_refusal_reaches_the_polling_device_at_its_next_poll,
    polling_too_fast_slows_the_device_down,
    a_device_code_works_once,
    user_code_guessing_is_locked_out,
    an_expired_device_code_is_refused_on_the_page_and_at_the_token_endpoint,
    a_step_up_scope_sends_the_user_to_the_second_factor,
    a_stock_oauth2_client_completes_the_device_flow_from_discovery_alone,
    the_device_authorization_endpoint_refuses_what_the_client_may_not_have,
);
