//! OpenID Client-Initiated Backchannel Authentication (CIBA Core 1.0) over HTTP: a client asks for a
//! user at `/bc-authorize`, the user answers on `/approvals` through the consent page, and the client
//! gets exactly what was approved, once, by polling or after a ping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, hidden};
use common::users::{add_user, csrf_token, location, login, no_redirect_client};
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
[[scopes]]
name = "openid"
description = "Sign you in"
[[scopes]]
name = "payments.read"
description = "See your payments"
authorizers = ["ask"]
[[scopes]]
name = "payments.make"
description = "Make payments"
authorizers = ["ask"]
"#;

const CIBA: &str = "urn:openid:params:grant-type:ciba";
const PASSWORD: &str = "correct horse battery";
const SCOPES: &[&str] = &["openid", "payments.read", "payments.make"];

/// A poll-mode client `bank` that may refresh, and the users ann and bob. Returns the server and the
/// bank's secret.
async fn setup(db: &TestDb) -> (TestServer, String) {
    let s = TestServer::start(db, CONFIG).await;
    let secret = s
        .register(json!({
            "client_id": "bank",
            "name": "Example Bank",
            "grant_types": [CIBA, "refresh_token"],
            "scopes": SCOPES,
            "backchannel_token_delivery_mode": "poll",
        }))
        .await
        .unwrap();
    add_user(&s, "ann", PASSWORD, json!({})).await;
    add_user(&s, "bob", PASSWORD, json!({})).await;
    (s, secret)
}

/// `POST /bc-authorize` as `client`.
async fn bc_authorize(s: &TestServer, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    let (status, headers, body) = s.post_form("/bc-authorize", Some(client), form).await;
    if status == 200 {
        assert_eq!(headers["cache-control"], "no-store");
    }
    (status, body)
}

/// A request for ann's `scope`, which must be accepted; its `auth_req_id`.
async fn start(s: &TestServer, secret: &str, scope: &str) -> String {
    let (status, body) = bc_authorize(
        s,
        ("bank", secret),
        &[
            ("scope", scope),
            ("login_hint", "ann"),
            ("binding_message", "Pay 12 EUR: W4SCT"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["expires_in"].as_i64(), body["interval"].as_i64()),
        (Some(300), Some(5))
    );
    let id = body["auth_req_id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 43);
    id
}

/// The client asks the token endpoint.
async fn poll(s: &TestServer, client: (&str, &str), auth_req_id: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", CIBA), ("auth_req_id", auth_req_id)],
        )
        .await;
    (status, body)
}

fn error_of(polled: &(u16, Value)) -> (u16, &str) {
    (polled.0, polled.1["error"].as_str().unwrap_or("none"))
}

/// The approvals page for the browser sending `cookie`.
async fn approvals(s: &TestServer, cookie: &str) -> String {
    let r = no_redirect_client()
        .get(format!("{}/approvals", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Approves the request `id` (the hash the page names it by) on the approvals page: its consent page,
/// or its approval when nothing needs asking.
async fn choose(s: &TestServer, cookie: &str, id: &str) -> reqwest::Response {
    choose_to(s, cookie, id, "approve").await
}

/// Answers `action` (approve or deny) for the request `id` on the approvals page.
async fn choose_to(s: &TestServer, cookie: &str, id: &str, action: &str) -> reqwest::Response {
    let csrf = csrf_token(s, cookie).await;
    no_redirect_client()
        .post(format!("{}/approvals", s.base))
        .header(COOKIE, cookie)
        .form(&[("csrf", csrf.as_str()), ("request", id), ("action", action)])
        .send()
        .await
        .unwrap()
}

/// Answers the consent page: approves `approve`, or denies.
async fn answer(s: &TestServer, cookie: &str, page: &str, approve: Option<&[&str]>) -> reqwest::Response {
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), hidden(page, "csrf")),
        ("request".into(), hidden(page, "request")),
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
        .post(format!("{}/approvals/consent", s.base))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

fn hash(auth_req_id: &str) -> String {
    consent_ledger::ciba::hash(auth_req_id)
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

/// Ann approves `id` on the approvals page, keeping `approve`.
async fn approve(s: &TestServer, cookie: &str, id: &str, approve: &[&str]) {
    let r = choose(s, cookie, &hash(id)).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    if page.contains("Request approved") {
        // Nothing needed asking (openid alone): approved at once.
        return;
    }
    assert!(page.contains("action=\"/approvals/consent\""), "{page}");
    let r = answer(s, cookie, &page, Some(approve)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Request approved"));
}

async fn ciba_poll_flow_gives_the_client_exactly_the_approved_scopes(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let id = start(&s, &secret, "openid payments.read payments.make").await;
    assert_eq!(
        error_of(&poll(&s, bank, &id).await),
        (400, "authorization_pending")
    );

    // Someone not signed in is sent to sign in, and back to the approvals page.
    let r = no_redirect_client()
        .get(format!("{}/approvals", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/login?return_to=%2Fapprovals");

    // Ann sees the request: the client, its message, what it asks, how long it waits.
    let cookie = login(&s, "ann", PASSWORD).await;
    let page = approvals(&s, &cookie).await;
    assert!(page.contains("Example Bank"), "{page}");
    assert!(page.contains("Pay 12 EUR: W4SCT"), "{page}");
    assert!(page.contains("payments.make"), "{page}");
    assert!(page.contains("5 minutes"), "{page}");
    let r = choose(&s, &cookie, &hash(&id)).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("See your payments") && page.contains("Make payments"));
    assert!(
        page.contains("Pay 12 EUR: W4SCT"),
        "the consent page shows the message: {page}"
    );
    let r = answer(&s, &cookie, &page, Some(&["payments.read"])).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Request approved"));
    // Answered, it no longer waits on the page.
    assert!(!approvals(&s, &cookie).await.contains("W4SCT"));

    s.advance(5);
    let (status, token) = poll(&s, bank, &id).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "openid payments.read");
    assert!(token["refresh_token"].is_string());
    let id_token = claims(token["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], "bank");
    let ann: projections::users::User = consent_ledger::store::get(s.app.store.as_ref(), "ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id_token["sub"], ann.subject.as_str());

    // The ledger holds only the hash, the answers, the approval, a delegation granted by CIBA.
    let all = events(&s).await;
    let requested = all
        .iter()
        .find_map(|e| match e {
            Event::BackchannelAuthenticationRequested(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(requested.auth_req_id_hash, hash(&id));
    assert_eq!(requested.binding_message.as_deref(), Some("Pay 12 EUR: W4SCT"));
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::ConsentDenied(c) if c.scopes == ["payments.make"]))
    );
    assert!(all.iter().any(
        |e| matches!(e, Event::BackchannelAuthenticationApproved(a) if a.approved == ["payments.read"])
    ));
    let delegation = all
        .iter()
        .find_map(|e| match e {
            Event::DelegationCreated(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(delegation.grant_type, CIBA);
    let account = no_redirect_client()
        .get(format!("{}/account", s.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains("Example Bank"), "{account}");
    assert!(account.contains("approved on your approvals page"), "{account}");
    assert!(all.iter().any(|e| matches!(e,
        Event::BackchannelAuthenticationRedeemed(r) if r.delegation_id == delegation.delegation_id)));
}

async fn ciba_polling_too_fast_is_told_to_slow_down(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let id = start(&s, &secret, "openid").await;
    assert_eq!(
        error_of(&poll(&s, bank, &id).await),
        (400, "authorization_pending")
    );
    assert_eq!(error_of(&poll(&s, bank, &id).await), (400, "slow_down"));
    s.advance(10);
    assert_eq!(
        error_of(&poll(&s, bank, &id).await),
        (400, "authorization_pending")
    );
}

async fn ciba_refusal_reaches_the_poller_as_access_denied(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let id = start(&s, &secret, "openid payments.read").await;
    let cookie = login(&s, "ann", PASSWORD).await;
    let page = choose(&s, &cookie, &hash(&id)).await.text().await.unwrap();
    let r = answer(&s, &cookie, &page, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Request refused"));
    assert_eq!(error_of(&poll(&s, bank, &id).await), (400, "access_denied"));
    assert!(
        events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::BackchannelAuthenticationDenied(_)))
    );
    // An answered request cannot be answered again.
    let r = answer(&s, &cookie, &page, Some(&["payments.read"])).await;
    assert_eq!(r.status(), 404);

    // Refused straight from the list, without opening it: the same for the client.
    let id = start(&s, &secret, "openid").await;
    let r = choose_to(&s, &cookie, &hash(&id), "deny").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Request refused"));
    assert_eq!(error_of(&poll(&s, bank, &id).await), (400, "access_denied"));
}

async fn ciba_expired_request_is_expired_token(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let (status, body) = bc_authorize(
        &s,
        bank,
        &[
            ("scope", "openid"),
            ("login_hint", "ann"),
            ("requested_expiry", "60"),
        ],
    )
    .await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(60)), "{body}");
    let id = body["auth_req_id"].as_str().unwrap();
    s.advance(60);
    assert_eq!(error_of(&poll(&s, bank, id).await), (400, "expired_token"));
    // Nor can ann answer it any more: it is not listed, and choosing it says so.
    let cookie = login(&s, "ann", PASSWORD).await;
    assert!(!approvals(&s, &cookie).await.contains("Example Bank"));
    assert_eq!(choose(&s, &cookie, &hash(id)).await.status(), 404);
}

async fn ciba_auth_req_id_works_once(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let id = start(&s, &secret, "openid payments.read").await;
    let cookie = login(&s, "ann", PASSWORD).await;
    approve(&s, &cookie, &id, &["payments.read"]).await;
    // Two concurrent polls: exactly one gets tokens.
    let (a, b) = tokio::join!(poll(&s, bank, &id), poll(&s, bank, &id));
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&200) && statuses.contains(&400), "{a:?} {b:?}");
    let loser = if a.0 == 400 { &a } else { &b };
    assert_eq!(error_of(loser), (400, "invalid_grant"));
    s.advance(5);
    assert_eq!(error_of(&poll(&s, bank, &id).await), (400, "invalid_grant"));
    let redeemed = events(&s)
        .await
        .iter()
        .filter(|e| matches!(e, Event::BackchannelAuthenticationRedeemed(_)))
        .count();
    assert_eq!(redeemed, 1);
}

async fn ciba_another_clients_auth_req_id_is_invalid_grant(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let other = s
        .register(json!({
            "client_id": "shop",
            "name": "Shop",
            "grant_types": [CIBA],
            "scopes": ["openid"],
            "backchannel_token_delivery_mode": "poll",
        }))
        .await
        .unwrap();
    let id = start(&s, &secret, "openid").await;
    let cookie = login(&s, "ann", PASSWORD).await;
    approve(&s, &cookie, &id, &[]).await;
    assert_eq!(
        error_of(&poll(&s, ("shop", &other), &id).await),
        (400, "invalid_grant")
    );
    assert_eq!(
        error_of(&poll(&s, ("shop", &other), "no-such-id").await),
        (400, "invalid_grant")
    );
    // The bank's own request is untouched by the attempt.
    assert_eq!(poll(&s, ("bank", &secret), &id).await.0, 200);
}

async fn ciba_bc_authorize_refuses_bad_requests(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("scope", "openid"), ("login_hint", "nobody")],
            "unknown_user_id",
        ),
        (
            &[
                ("scope", "openid"),
                ("login_hint", "ann"),
                ("binding_message", &"x".repeat(65)),
            ],
            "invalid_binding_message",
        ),
        (
            &[
                ("scope", "openid"),
                ("login_hint", "ann"),
                ("binding_message", "two\nlines"),
            ],
            "invalid_binding_message",
        ),
        (&[("scope", "openid")], "invalid_request"),
        (
            &[
                ("scope", "openid"),
                ("login_hint", "ann"),
                ("id_token_hint", "a.b.c"),
            ],
            "invalid_request",
        ),
        (
            &[("scope", "openid"), ("login_hint_token", "eyJ.x.y")],
            "invalid_request",
        ),
        (
            &[("scope", "payments.read"), ("login_hint", "ann")],
            "invalid_scope",
        ),
        (
            &[("scope", "openid"), ("login_hint", "ann"), ("user_code", "1234")],
            "invalid_request",
        ),
        (
            &[
                ("scope", "openid"),
                ("login_hint", "ann"),
                ("requested_expiry", "100000"),
            ],
            "invalid_request",
        ),
    ];
    for (form, expected) in cases {
        let (status, body) = bc_authorize(&s, bank, form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(*expected)),
            "{form:?}: {body}"
        );
    }
    // login_hint_token says so.
    let (_, body) = bc_authorize(&s, bank, &[("scope", "openid"), ("login_hint_token", "eyJ.x.y")]).await;
    assert_eq!(body["error_description"], "login_hint_token is not supported");

    // A ping client without its notification token.
    let listener = listen().await;
    let pinger = register_ping_client(&s, &listener).await;
    let (status, body) = bc_authorize(
        &s,
        ("pinger", &pinger),
        &[("scope", "openid"), ("login_hint", "ann")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // A client without the grant.
    let web = s
        .register(json!({
            "client_id": "web",
            "name": "Web",
            "grant_types": ["client_credentials"],
            "scopes": ["openid"],
        }))
        .await
        .unwrap();
    let (status, body) = bc_authorize(&s, ("web", &web), &[("scope", "openid"), ("login_hint", "ann")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // Unauthenticated.
    let (status, body) = bc_authorize(
        &s,
        ("bank", "wrong"),
        &[("scope", "openid"), ("login_hint", "ann")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));

    // Nothing refused was recorded.
    assert!(
        !events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::BackchannelAuthenticationRequested(_)))
    );
}

async fn ciba_id_token_hint_names_the_user(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    // A first round gives the bank an ID token for ann.
    let id = start(&s, &secret, "openid").await;
    let cookie = login(&s, "ann", PASSWORD).await;
    approve(&s, &cookie, &id, &[]).await;
    let (_, token) = poll(&s, bank, &id).await;
    let id_token = token["id_token"].as_str().unwrap().to_owned();
    let (status, body) = bc_authorize(&s, bank, &[("scope", "openid"), ("id_token_hint", &id_token)]).await;
    assert_eq!(status, 200, "{body}");
    let page = approvals(&s, &cookie).await;
    assert!(page.contains("Example Bank"), "{page}");
    // Not an ID token of this server: refused.
    let (status, body) = bc_authorize(
        &s,
        bank,
        &[("scope", "openid"), ("id_token_hint", "eyJhbGciOiJub25lIn0.e30.")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
}

async fn another_users_request_is_not_shown_or_answerable(db: TestDb) {
    let (s, secret) = setup(&db).await;
    let bank = ("bank", secret.as_str());
    let id = start(&s, &secret, "openid payments.read").await;
    let bob = login(&s, "bob", PASSWORD).await;
    // Bob does not see ann's request...
    let page = approvals(&s, &bob).await;
    assert!(!page.contains("W4SCT"), "{page}");
    assert!(page.contains("Nothing is waiting"), "{page}");
    // ...cannot open it by naming it...
    let r = choose(&s, &bob, &hash(&id)).await;
    assert_eq!(r.status(), 404);
    // ...nor answer it with a consent form built for it.
    let csrf = csrf_token(&s, &bob).await;
    let r = no_redirect_client()
        .post(format!("{}/approvals/consent", s.base))
        .header(COOKIE, &bob)
        .form(&[
            ("csrf", csrf.as_str()),
            ("request", hash(&id).as_str()),
            ("action", "approve"),
            ("scope.payments.read", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = no_redirect_client()
        .post(format!("{}/approvals/consent", s.base))
        .header(COOKIE, &bob)
        .form(&[
            ("csrf", csrf.as_str()),
            ("request", hash(&id).as_str()),
            ("action", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The request still waits for ann.
    assert_eq!(
        error_of(&poll(&s, bank, &id).await),
        (400, "authorization_pending")
    );
    assert!(!events(&s).await.iter().any(|e| matches!(
        e,
        Event::BackchannelAuthenticationApproved(_) | Event::BackchannelAuthenticationDenied(_)
    )));
    let ann = login(&s, "ann", PASSWORD).await;
    assert!(approvals(&s, &ann).await.contains("W4SCT"));
}

/// A local port for a notification endpoint.
async fn listen() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Serves the notification endpoint `/cb` on `listener`: every ping it receives (its `Authorization`
/// header and body) goes to the receiver.
/// The first `failures` pings are answered 503.
async fn serve(
    listener: tokio::net::TcpListener,
    failures: usize,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    tx.send((auth, body)).unwrap();
                    if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    rx
}

async fn register_ping_client(s: &TestServer, listener: &tokio::net::TcpListener) -> String {
    let endpoint = format!("http://{}/cb", listener.local_addr().unwrap());
    s.register(json!({
        "client_id": "pinger",
        "name": "Ping Bank",
        "grant_types": [CIBA],
        "scopes": SCOPES,
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": endpoint,
    }))
    .await
    .unwrap()
}

async fn ciba_ping_is_delivered_once_with_the_clients_token(db: TestDb) {
    let (s, _) = setup(&db).await;
    let listener = listen().await;
    let secret = register_ping_client(&s, &listener).await;
    let mut pings = serve(listener, 0).await;
    let pinger = ("pinger", secret.as_str());
    let (status, body) = bc_authorize(
        &s,
        pinger,
        &[
            ("scope", "openid payments.read"),
            ("login_hint", "ann"),
            ("client_notification_token", "notify-me-8d2f"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["auth_req_id"].as_str().unwrap().to_owned();
    // The notification token is never in the ledger.
    let all = serde_json::to_string(&events(&s).await).unwrap();
    assert!(!all.contains("notify-me-8d2f") && !all.contains(&id));

    let cookie = login(&s, "ann", PASSWORD).await;
    approve(&s, &cookie, &id, &["payments.read"]).await;
    let (auth, ping) = tokio::time::timeout(std::time::Duration::from_secs(10), pings.recv())
        .await
        .expect("the ping arrives")
        .unwrap();
    assert_eq!(auth, "Bearer notify-me-8d2f");
    assert_eq!(ping, json!({ "auth_req_id": id }));
    let (status, token) = poll(&s, pinger, &id).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "openid payments.read");
    // Once: nothing more arrives.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), pings.recv())
            .await
            .is_err()
    );
}

async fn ciba_ping_refused_by_the_client_is_tried_again_and_a_refusal_is_pinged_too(db: TestDb) {
    let (s, _) = setup(&db).await;
    let listener = listen().await;
    let secret = register_ping_client(&s, &listener).await;
    let mut pings = serve(listener, 1).await;
    let (status, body) = bc_authorize(
        &s,
        ("pinger", &secret),
        &[
            ("scope", "openid payments.read"),
            ("login_hint", "ann"),
            ("client_notification_token", "tok-2"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["auth_req_id"].as_str().unwrap().to_owned();
    let cookie = login(&s, "ann", PASSWORD).await;
    let page = choose(&s, &cookie, &hash(&id)).await.text().await.unwrap();
    assert_eq!(answer(&s, &cookie, &page, None).await.status(), 200);
    let wait = std::time::Duration::from_secs(10);
    for _ in 0..2 {
        let (auth, ping) = tokio::time::timeout(wait, pings.recv()).await.unwrap().unwrap();
        assert_eq!(
            (auth.as_str(), &ping),
            ("Bearer tok-2", &json!({ "auth_req_id": id }))
        );
    }
    assert_eq!(
        error_of(&poll(&s, ("pinger", &secret), &id).await),
        (400, "access_denied")
    );
}

async fn a_flood_of_ciba_requests_keeps_a_bounded_number_waiting(db: TestDb) {
    let s = TestServer::start(&db, &format!("{CONFIG}\n[ciba]\npending_requests_max = 2\n")).await;
    let secret = s
        .register(json!({
            "client_id": "bank",
            "name": "Example Bank",
            "grant_types": [CIBA],
            "scopes": SCOPES,
            "backchannel_token_delivery_mode": "poll",
        }))
        .await
        .unwrap();
    add_user(&s, "ann", PASSWORD, json!({})).await;
    let form = [("scope", "openid"), ("login_hint", "ann")];
    for _ in 0..2 {
        assert_eq!(bc_authorize(&s, ("bank", &secret), &form).await.0, 200);
    }
    let (status, headers, body) = s.post_form("/bc-authorize", Some(("bank", &secret)), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    assert!(headers.get("retry-after").is_some());
    // Once they expire, the places are free again.
    s.advance(301);
    assert_eq!(bc_authorize(&s, ("bank", &secret), &form).await.0, 200);
}

async fn ciba_registration_checks_the_delivery_mode(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    let refused = |body: Value| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/admin/clients", s.base))
                .bearer_auth("admin-token-admin-token-admin-token-0123")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let base = |extra: Value| {
        let mut b = json!({
            "client_id": "c",
            "name": "C",
            "grant_types": [CIBA],
            "scopes": ["openid"],
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, why) in [
        (json!({}), "no delivery mode"),
        (json!({"backchannel_token_delivery_mode": "push"}), "push"),
        (
            json!({"backchannel_token_delivery_mode": "ping"}),
            "ping without endpoint",
        ),
        (
            json!({"backchannel_token_delivery_mode": "ping",
                   "backchannel_client_notification_endpoint": "http://example.com/cb"}),
            "plain http off loopback",
        ),
        (
            json!({"backchannel_token_delivery_mode": "poll", "token_endpoint_auth_method": "none"}),
            "public client",
        ),
    ] {
        let (status, text) = refused(base(extra)).await;
        assert_eq!(status, 400, "{why}: {text}");
    }
    let (status, text) = refused(base(json!({"backchannel_token_delivery_mode": "push"}))).await;
    assert!(text.contains("push is not supported"), "{status} {text}");
    s.register(base(json!({
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": "https://client.example/cb",
    })))
    .await;
}

async fn ciba_discovery_names_the_endpoint_and_modes(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    let meta = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["backchannel_authentication_endpoint"],
        format!("{}/bc-authorize", s.base)
    );
    assert_eq!(
        meta["backchannel_token_delivery_modes_supported"],
        json!(["poll", "ping"])
    );
    assert_eq!(meta["backchannel_user_code_parameter_supported"], false);
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(CIBA))
    );
}

on_both_stores!(
    ciba_poll_flow_gives_the_client_exactly_the_approved_scopes,
    ciba_polling_too_fast_is_told_to_slow_down,
    ciba_refusal_reaches_the_poller_as_access_denied,
    ciba_expired_request_is_expired_token,
    ciba_auth_req_id_works_once,
    ciba_another_clients_auth_req_id_is_invalid_grant,
    ciba_bc_authorize_refuses_bad_requests,
    ciba_id_token_hint_names_the_user,
    another_users_request_is_not_shown_or_answerable,
    ciba_ping_is_delivered_once_with_the_clients_token,
    ciba_ping_refused_by_the_client_is_tried_again_and_a_refusal_is_pinged_too,
    ciba_registration_checks_the_delivery_mode,
    a_flood_of_ciba_requests_keeps_a_bounded_number_waiting,
    ciba_discovery_names_the_endpoint_and_modes,
);
