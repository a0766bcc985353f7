//! The assisted token flow (draft-ideskog-assisted-token) over HTTP: a single-page application frames
//! `/assisted-token`, which posts a token, or why there is none, to the application's registered origin;
//! the popup signs the user in and asks consent on the usual pages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::{claims, hidden};
use common::users::{add_user, location, login, no_redirect_client};
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
name = "profile"
description = "Your name"
[[scopes]]
name = "photos.read"
description = "See your photos"
authorizers = ["ask"]
"#;

const ASSISTED: &str = "urn:curity:params:grant-type:assisted-token";
const ORIGIN: &str = "https://spa.example";
const OTHER_ORIGIN: &str = "http://127.0.0.1:4200";
const PASSWORD: &str = "correct horse battery";

async fn setup(db: &TestDb) -> TestServer {
    let s = TestServer::start(db, CONFIG).await;
    s.register(json!({
        "client_id": "spa",
        "name": "Photo App",
        "token_endpoint_auth_method": "none",
        "grant_types": [ASSISTED],
        "scopes": ["profile", "photos.read"],
        "allowed_origins": [ORIGIN, OTHER_ORIGIN],
    }))
    .await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    s
}

/// `GET /assisted-token?{query}` as the browser sending `cookie`.
async fn get(s: &TestServer, cookie: Option<&str>, query: &str) -> reqwest::Response {
    let mut r = no_redirect_client().get(format!("{}/assisted-token?{query}", s.base));
    if let Some(c) = cookie {
        r = r.header(COOKIE, c);
    }
    r.send().await.unwrap()
}

/// What the page posts: the message, the origins it is posted to, and whether it is for the opener.
fn posted(page: &str) -> Value {
    let raw = page
        .split("data-answer=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no answer in {page}"));
    let unescaped = raw
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    serde_json::from_str(&unescaped).unwrap()
}

/// The frame's answer: status 200, framable by exactly the registered origins, and the posted data.
async fn frame(s: &TestServer, cookie: Option<&str>, query: &str) -> Value {
    let r = get(s, cookie, query).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("frame-ancestors {ORIGIN} {OTHER_ORIGIN};")),
        "{csp}"
    );
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(r.headers().get("x-frame-options").is_none());
    let data = posted(&r.text().await.unwrap());
    assert_eq!(data["origins"], json!([ORIGIN, OTHER_ORIGIN]));
    data
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

async fn the_frame_answers_login_required_then_consent_required_then_a_token(db: TestDb) {
    let s = setup(&db).await;
    let query = "client_id=spa&scope=profile%20photos.read";
    let data = frame(&s, None, query).await;
    assert_eq!(data["message"], json!({"error": "login_required"}));
    assert_eq!(data["popup"], false);

    let cookie = login(&s, "ann", PASSWORD).await;
    let data = frame(&s, Some(&cookie), query).await;
    assert_eq!(data["message"], json!({"error": "consent_required"}));

    // A scope needing no consent comes at once, as a token the ledger records as an assisted token.
    let data = frame(&s, Some(&cookie), "client_id=spa&scope=profile").await;
    let message = &data["message"];
    assert_eq!(message["scope"], "profile");
    assert_eq!(message["token_type"], "Bearer");
    assert!(message["expires_in"].as_i64().unwrap() > 0);
    assert!(message.get("refresh_token").is_none());
    let access = claims(message["access_token"].as_str().unwrap());
    assert_eq!(access["client_id"], "spa");
    let ann = consent_ledger::users::get(s.app.store.as_ref(), "ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access["sub"], ann.subject.as_str());
    assert!(events(&s).await.iter().any(
        |e| matches!(e, Event::DelegationCreated(d) if d.grant_type == ASSISTED && d.client_id == "spa")
    ));
}

async fn the_popup_signs_in_asks_consent_and_posts_the_token_to_the_opener(db: TestDb) {
    let s = setup(&db).await;
    let query = "client_id=spa&scope=profile%20photos.read&mode=popup";
    // Not signed in: the sign-in page, coming back here.
    let r = get(&s, None, query).await;
    assert_eq!(r.status(), 303);
    let back: String =
        form_urlencoded::byte_serialize(format!("/assisted-token?{query}").as_bytes()).collect();
    assert_eq!(location(r.headers()), format!("/login?return_to={back}"));

    let cookie = login(&s, "ann", PASSWORD).await;
    let r = get(&s, Some(&cookie), query).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Photo App") && page.contains("See your photos"),
        "{page}"
    );
    assert!(page.contains("action=\"/assisted-token/consent\""), "{page}");
    let form = [
        ("csrf", hidden(&page, "csrf")),
        ("request", hidden(&page, "request").replace("&#38;", "&")),
        ("action", "approve".into()),
        ("scope.photos.read", "on".into()),
    ];
    let r = no_redirect_client()
        .post(format!("{}/assisted-token/consent", s.base))
        .header(COOKIE, &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = posted(&r.text().await.unwrap());
    assert_eq!(data["popup"], true);
    assert_eq!(data["origins"], json!([ORIGIN, OTHER_ORIGIN]));
    assert_eq!(data["message"]["scope"], "profile photos.read", "{data}");

    // The consent stands: the frame now gets the token without a page.
    let data = frame(&s, Some(&cookie), "client_id=spa&scope=profile%20photos.read").await;
    assert_eq!(data["message"]["scope"], "profile photos.read");
    assert!(
        events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::ConsentGranted(c) if c.scopes == ["photos.read"]))
    );

    // Refusing in the popup posts access_denied.
    let r = get(&s, Some(&cookie), "client_id=spa&scope=photos.read&mode=popup").await;
    let page = r.text().await.unwrap();
    let data = posted(&page);
    assert_eq!(
        data["message"]["scope"], "photos.read",
        "already consented: no page"
    );
}

async fn an_unknown_confidential_or_unregistered_client_gets_an_error_page_and_nothing_is_posted(db: TestDb) {
    let s = setup(&db).await;
    s.register(json!({
        "client_id": "web",
        "name": "Web",
        "redirect_uris": ["https://web.example/cb"],
        "grant_types": ["authorization_code"],
        "scopes": ["profile"],
    }))
    .await;
    s.register(json!({
        "client_id": "native",
        "name": "Native",
        "token_endpoint_auth_method": "none",
        "redirect_uris": ["https://native.example/cb"],
        "grant_types": ["authorization_code"],
        "scopes": ["profile"],
    }))
    .await;
    let cookie = login(&s, "ann", PASSWORD).await;
    for client in ["nobody", "web", "native", ""] {
        let r = get(&s, Some(&cookie), &format!("client_id={client}&scope=profile")).await;
        assert_eq!(r.status(), 400, "{client}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let page = r.text().await.unwrap();
        assert!(
            !page.contains("postMessage") && !page.contains("access_token"),
            "{page}"
        );
    }
}

async fn registration_checks_the_origins_and_that_the_client_is_public(db: TestDb) {
    let s = setup(&db).await;
    let register = |body: Value| {
        let s = &s;
        async move {
            s.http
                .post(format!("{}/admin/clients", s.base))
                .bearer_auth("admin-token-admin-token-admin-token-0123")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let spa = |method: &str, origins: Value| {
        json!({"client_id": "spa2", "name": "SPA", "token_endpoint_auth_method": method,
               "grant_types": [ASSISTED], "scopes": ["profile"], "allowed_origins": origins})
    };
    for bad in [
        json!(["https://spa.example/"]),
        json!(["https://spa.example/app"]),
        json!(["https://*.spa.example"]),
        json!(["http://spa.example"]),
        json!(["*"]),
        json!([]),
    ] {
        assert_eq!(register(spa("none", bad.clone())).await, 400, "{bad}");
    }
    assert_eq!(
        register(spa("client_secret_basic", json!([ORIGIN]))).await,
        400,
        "confidential"
    );
    assert_eq!(
        register(
            json!({"client_id": "spa3", "name": "SPA", "token_endpoint_auth_method": "none",
                        "redirect_uris": ["https://spa.example/cb"], "grant_types": ["authorization_code"],
                        "scopes": ["profile"], "allowed_origins": [ORIGIN]})
        )
        .await,
        400,
        "origins without the grant type"
    );
    assert_eq!(
        register(spa(
            "none",
            json!(["http://localhost:8080", "https://spa.example:8443"])
        ))
        .await,
        201
    );
}

async fn refusing_in_the_popup_posts_access_denied_and_the_token_endpoint_knows_no_such_grant(db: TestDb) {
    let s = setup(&db).await;
    let cookie = login(&s, "ann", PASSWORD).await;
    let r = get(&s, Some(&cookie), "client_id=spa&scope=photos.read&mode=popup").await;
    let page = r.text().await.unwrap();
    let form = [
        ("csrf", hidden(&page, "csrf")),
        ("request", hidden(&page, "request").replace("&#38;", "&")),
        ("action", "deny".into()),
    ];
    let r = no_redirect_client()
        .post(format!("{}/assisted-token/consent", s.base))
        .header(COOKIE, &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = posted(&r.text().await.unwrap());
    assert_eq!(data["message"], json!({"error": "access_denied"}));
    assert!(
        events(&s)
            .await
            .iter()
            .any(|e| matches!(e, Event::ConsentDenied(c) if c.scopes == ["photos.read"]))
    );
    // A form without its CSRF token is refused before anything is decided.
    let r = no_redirect_client()
        .post(format!("{}/assisted-token/consent", s.base))
        .header(COOKIE, &cookie)
        .form(&[
            ("request", "client_id=spa&scope=photos.read"),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (status, _, body) = s
        .post_form("/token", None, &[("grant_type", ASSISTED), ("client_id", "spa")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let meta = s.get_json("/.well-known/oauth-authorization-server").await;
    assert!(
        !meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(ASSISTED))
    );
}

on_both_stores!(
    refusing_in_the_popup_posts_access_denied_and_the_token_endpoint_knows_no_such_grant,
    the_frame_answers_login_required_then_consent_required_then_a_token,
    the_popup_signs_in_asks_consent_and_posts_the_token_to_the_opener,
    an_unknown_confidential_or_unregistered_client_gets_an_error_page_and_nothing_is_posted,
    registration_checks_the_origins_and_that_the_client_is_public,
);
