//! The sign-in, consent, step-up and account pages in a real browser (headless Chromium through
//! chromedriver), on SQLite: what a person sees and does, and what the client gets from it.
//!
//! Skipped when `/usr/bin/chromedriver` is missing, unless `CONSENT_LEDGER_BROWSER_TESTS=required`.
//! The consent page's screenshot is saved to `target/browser-artifacts/consent-page.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::browser::{Browser, Callback, authorize_url, exchange};
use common::flows::{Pkce, REDIRECT, claims, introspect, pkce, register_app};
use common::users::{add_user, enroll_totp};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use fantoccini::Locator;
use projections::Event;
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
"#;

const SCOPES: &[&str] = &["openid", "photos.read", "photos.delete", "transfers"];
const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    browser: Browser,
    s: TestServer,
    cb: Callback,
    secret: String,
    _db: TestDb,
}

/// A browser, a server on SQLite, a client registered with the callback as its redirect URI, and the
/// user `ann`. `None` when the browser tests are skipped.
async fn setup() -> Option<Setup> {
    let browser = Browser::start().await?;
    let db = TestDb::sqlite();
    let s = TestServer::start(&db, CONFIG).await;
    let cb = Callback::start().await;
    // The callback, and the placeholder the HTTP-only helpers (`common::flows`) redirect to.
    let secret = register_app(
        &s,
        "printer",
        SCOPES,
        json!({"redirect_uris": [cb.url, REDIRECT]}),
    )
    .await;
    add_user(&s, "ann", PASSWORD, json!({})).await;
    Some(Setup {
        browser,
        s,
        cb,
        secret,
        _db: db,
    })
}

impl Setup {
    fn client(&self) -> (&str, &str) {
        ("printer", &self.secret)
    }

    async fn open_authorize(&self, scope: &str, p: &Pkce) {
        let url = authorize_url(&self.s, "printer", &self.cb.url, scope, &p.challenge);
        self.browser.client.goto(&url).await.unwrap();
    }

    /// Waits for the consent page.
    async fn consent_form(&self) {
        let found = self
            .browser
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("form[action='/authorize/consent']"))
            .await;
        if let Err(e) = found {
            let (at, seen) = (self.browser.path().await, self.browser.text().await);
            panic!("no consent page at {at}: {e}\n{seen}");
        }
    }

    /// Unticks the scope whose label mentions `description`.
    async fn untick(&self, description: &str) {
        let label = self
            .browser
            .client
            .find(Locator::XPath(&format!(
                "//label[contains(normalize-space(.), '{description}')]"
            )))
            .await
            .unwrap();
        let id = label.attr("for").await.unwrap().unwrap();
        let checkbox = self.browser.client.find(Locator::Id(&id)).await.unwrap();
        assert!(checkbox.is_selected().await.unwrap(), "scopes start ticked");
        checkbox.click().await.unwrap();
        assert!(!checkbox.is_selected().await.unwrap());
    }

    /// Clicks "Allow selected" and returns what the client's callback received.
    async fn approve(&self) -> BTreeMap<String, String> {
        self.browser.record_csp_violations().await;
        self.browser.button("Allow selected").await.click().await.unwrap();
        let Some(params) = self.cb.next().await else {
            let (at, seen) = (self.browser.path().await, self.browser.text().await);
            let recorded: Vec<&str> = self.events().await.iter().map(|e| e.event_type()).collect();
            let csp = self.browser.csp_violations().await;
            panic!(
                "the client's callback received nothing; the browser is at {at}:\n{seen}\nthe ledger holds: \
                 {recorded:?}\nContent-Security-Policy violations: {csp:?}"
            );
        };
        assert_eq!(params["state"], "st-browser", "{params:?}");
        assert!(params.contains_key("code"), "{params:?}");
        params
    }

    /// Exchanges the code as the client; returns the token response.
    async fn redeem(&self, params: &BTreeMap<String, String>, p: &Pkce) -> Value {
        let (status, body) =
            exchange(&self.s, self.client(), &params["code"], &p.verifier, &self.cb.url).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A whole code flow in the browser for a user not yet signed in: sign in, approve all.
    async fn code_flow(&self, scope: &str) -> Value {
        let p = pkce();
        self.open_authorize(scope, &p).await;
        self.browser.sign_in("ann", PASSWORD).await;
        self.consent_form().await;
        let params = self.approve().await;
        self.redeem(&params, &p).await
    }

    async fn events(&self) -> Vec<Event> {
        let store: &dyn EventStore = self.s.app.store.as_ref();
        let mut out = vec![];
        for e in store.read_from(1, 10_000).await.unwrap() {
            out.push(e.decode().unwrap().event);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_code_flow_issues_exactly_the_approved_scopes() {
    let Some(t) = setup().await else { return };
    let p = pkce();
    t.open_authorize("openid photos.read photos.delete", &p).await;
    // Not signed in: the sign-in page, filled in by its labels.
    t.browser.wait_for_path("/login").await;
    assert!(t.browser.text().await.contains("Sign in"));
    t.browser.sign_in("ann", PASSWORD).await;
    t.consent_form().await;
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Allow Photo Printer to access your account?"),
        "{seen}"
    );
    assert!(
        seen.contains("See your photos") && seen.contains("For 1 hour"),
        "{seen}"
    );
    assert!(
        seen.contains("Delete your photos") && seen.contains("Until you revoke it"),
        "{seen}"
    );
    assert!(seen.contains("Signed in as ann"), "{seen}");
    let shot = t.browser.screenshot("consent-page.png").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1_000,
        "{}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());

    t.untick("Delete your photos").await;
    let params = t.approve().await;
    let body = t.redeem(&params, &p).await;
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["scope"], "openid photos.read", "{at}");
    assert_eq!(body["scope"], "openid photos.read");
    // The browser ended at the client's callback.
    assert!(t.browser.text().await.contains("Received"));
    t.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_asks_for_the_authenticator_code() {
    let Some(t) = setup().await else { return };
    add_user(&t.s, "bob", PASSWORD, json!({})).await;
    // Bob signs in with his password; with nowhere else to go he lands on his (empty) account page.
    t.browser
        .client
        .goto(&format!("{}/login", t.s.base))
        .await
        .unwrap();
    t.browser.sign_in("bob", PASSWORD).await;
    t.browser.wait_for_path("/account").await;
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Signed in as bob") && seen.contains("No application has access"),
        "{seen}"
    );
    // The second factor is enrolled after he signed in; moving money needs it.
    let secret = enroll_totp(&t.s, "bob").await;
    let p = pkce();
    t.open_authorize("openid transfers", &p).await;
    t.browser.wait_for_path("/login/totp").await;
    let seen = t.browser.text().await;
    assert!(seen.contains("This request needs a second factor"), "{seen}");
    let now = t.s.now();
    let code = consent_ledger::users::totp::code_at(&secret, now);
    t.browser
        .field_labelled("Authentication code")
        .await
        .send_keys(&code)
        .await
        .unwrap();
    t.browser.button("Verify").await.click().await.unwrap();
    t.consent_form().await;
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Move money") && seen.contains("Photo Printer"),
        "{seen}"
    );
    let params = t.approve().await;
    let body = t.redeem(&params, &p).await;
    assert_eq!(body["scope"], "openid transfers", "{body}");
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "mfa", "{id}");
    let delegation = t
        .events()
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::DelegationCreated(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(delegation.auth.acr.as_deref(), Some("mfa"));
    assert!(delegation.auth.amr.contains(&"otp".to_owned()));
    t.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_the_account_page_ends_the_refresh_token() {
    let Some(t) = setup().await else { return };
    let body = t.code_flow("openid photos.read").await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    t.browser
        .client
        .goto(&format!("{}/account", t.s.base))
        .await
        .unwrap();
    t.browser.wait_for_path("/account").await;
    let seen = t.browser.text().await;
    assert!(seen.contains("Applications with access"), "{seen}");
    let row = t
        .browser
        .client
        .find(Locator::XPath(
            "//table[.//caption[contains(., 'Access you gave')]]//tr[th[normalize-space(.)='Photo Printer']]",
        ))
        .await
        .unwrap();
    let row_text = row.text().await.unwrap();
    assert!(
        row_text.contains("See your photos") && row_text.contains("signed in on this site"),
        "{row_text}"
    );
    t.browser.screenshot("account-page.png").await;

    t.browser
        .button("Remove access of Photo Printer")
        .await
        .click()
        .await
        .unwrap();
    t.browser.wait_for_path("/account").await;
    // The history is folded: opened, it says why the access ended
    let summary = t
        .browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//summary[contains(., 'History')]"))
        .await
        .unwrap();
    summary.click().await.unwrap();
    let row = t
        .browser
        .client
        .find(Locator::XPath(
            "//table[.//caption[contains(., 'Access that ended')]]//tr[th[normalize-space(.)='Photo Printer']]",
        ))
        .await
        .unwrap();
    let row_text = row.text().await.unwrap();
    assert!(
        row_text.contains("Revoked") && row_text.contains("by you"),
        "{row_text}"
    );
    let seen = t.browser.text().await;
    assert!(seen.contains("No application has access"), "{seen}");

    let (status, _, body) =
        t.s.post_form(
            "/token",
            Some(t.client()),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(introspect(&t.s, t.client(), &access).await["active"], false);
    t.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_standing_consent_goes_straight_back_to_the_client() {
    let Some(t) = setup().await else { return };
    // Ann consented earlier (from another device, over plain HTTP).
    let cookie = common::users::login(&t.s, "ann", PASSWORD).await;
    common::flows::code_flow(&t.s, &cookie, t.client(), "openid photos.read", &["photos.read"]).await;
    // In the browser she signs in and out again from her account page, which lists that consent.
    t.browser
        .client
        .goto(&format!("{}/login", t.s.base))
        .await
        .unwrap();
    t.browser.sign_in("ann", PASSWORD).await;
    t.browser.wait_for_path("/account").await;
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Photo Printer") && seen.contains("In force"),
        "{seen}"
    );
    t.browser.button("Sign out").await.click().await.unwrap();
    t.browser.wait_for_path("/login").await;
    // The consent stands: signing in is all the next request asks, and the client gets its code.
    let p = pkce();
    t.open_authorize("openid photos.read", &p).await;
    t.browser.record_csp_violations().await;
    t.browser.sign_in("ann", PASSWORD).await;
    let Some(params) = t.cb.next().await else {
        let (at, seen) = (t.browser.path().await, t.browser.text().await);
        let csp = t.browser.csp_violations().await;
        panic!(
            "the client's callback received nothing; the browser is at {at}:\n{seen}\n\
             Content-Security-Policy violations: {csp:?}"
        );
    };
    assert_eq!(params["state"], "st-browser", "{params:?}");
    let body = t.redeem(&params, &p).await;
    assert_eq!(body["scope"], "openid photos.read", "{body}");
    t.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gets_exactly_what_was_approved_on_the_verification_page() {
    let Some(t) = setup().await else { return };
    let device_grant = "urn:ietf:params:oauth:grant-type:device_code";
    t.s.register(json!({
        "client_id": "tv",
        "name": "Living Room TV",
        "token_endpoint_auth_method": "none",
        "grant_types": [device_grant],
        "scopes": SCOPES,
    }))
    .await;
    let (status, _, started) =
        t.s.post_form(
            "/device_authorization",
            None,
            &[("client_id", "tv"), ("scope", "openid photos.read photos.delete")],
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", device_grant),
        ("device_code", device_code.as_str()),
        ("client_id", "tv"),
    ];
    let poll = || t.s.post_form("/token", None, &form);
    let (status, _, pending) = poll().await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    // The person opens the address the TV shows, signs in, and types the code as they read it.
    let uri = started["verification_uri"].as_str().unwrap();
    t.browser.client.goto(uri).await.unwrap();
    t.browser.sign_in("ann", PASSWORD).await;
    t.browser.wait_for_path("/device").await;
    let typed = started["user_code"].as_str().unwrap().to_lowercase();
    t.browser
        .field_labelled("Code")
        .await
        .send_keys(&typed)
        .await
        .unwrap();
    t.browser.button("Continue").await.click().await.unwrap();
    let found = t
        .browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form[action='/device/consent']"))
        .await;
    if let Err(e) = found {
        let (at, seen) = (t.browser.path().await, t.browser.text().await);
        panic!("no consent page at {at}: {e}\n{seen}");
    }
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Allow Living Room TV to access your account?"),
        "{seen}"
    );
    t.untick("Delete your photos").await;
    t.browser.record_csp_violations().await;
    t.browser.button("Allow selected").await.click().await.unwrap();
    let done = t
        .browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//h1[contains(., 'Your device is connected')]"))
        .await;
    if let Err(e) = done {
        let csp = t.browser.csp_violations().await;
        panic!("not connected: {e}\n{}\n{csp:?}", t.browser.text().await);
    }

    t.s.advance(5);
    let (status, _, token) = poll().await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "openid photos.read");
    let at = claims(token["access_token"].as_str().unwrap());
    assert_eq!(at["scope"], "openid photos.read", "{at}");
    t.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciba_client_gets_exactly_what_was_approved_on_the_approvals_page() {
    let Some(t) = setup().await else { return };
    let ciba = "urn:openid:params:grant-type:ciba";
    let secret =
        t.s.register(json!({
            "client_id": "bank",
            "name": "Example Bank",
            "grant_types": [ciba],
            "scopes": SCOPES,
            "backchannel_token_delivery_mode": "poll",
        }))
        .await
        .unwrap();
    let bank = ("bank", secret.as_str());
    let (status, _, started) =
        t.s.post_form(
            "/bc-authorize",
            Some(bank),
            &[
                ("scope", "openid photos.read photos.delete"),
                ("login_hint", "ann"),
                ("binding_message", "Code 4711"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let id = started["auth_req_id"].as_str().unwrap().to_owned();
    let form = [("grant_type", ciba), ("auth_req_id", id.as_str())];
    let poll = || t.s.post_form("/token", Some(bank), &form);
    let (status, _, pending) = poll().await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    // The person opens their approvals page, signs in, sees the request with its message, approves it.
    let url = format!("{}/approvals", t.s.base);
    t.browser.client.goto(&url).await.unwrap();
    t.browser.sign_in("ann", PASSWORD).await;
    t.browser.wait_for_path("/approvals").await;
    let seen = t.browser.text().await;
    assert!(
        seen.contains("Example Bank") && seen.contains("Code 4711"),
        "{seen}"
    );
    t.browser.button("Approve").await.click().await.unwrap();
    let found = t
        .browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form[action='/approvals/consent']"))
        .await;
    if let Err(e) = found {
        let (at, seen) = (t.browser.path().await, t.browser.text().await);
        panic!("no consent page at {at}: {e}\n{seen}");
    }
    t.untick("Delete your photos").await;
    t.browser.record_csp_violations().await;
    t.browser.button("Allow selected").await.click().await.unwrap();
    let done = t
        .browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//h1[contains(., 'Request approved')]"))
        .await;
    if let Err(e) = done {
        let csp = t.browser.csp_violations().await;
        panic!("not approved: {e}\n{}\n{csp:?}", t.browser.text().await);
    }

    t.s.advance(5);
    let (status, _, token) = poll().await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "openid photos.read");
    t.browser.close().await;
}

/// A single-page application's page at `http://127.0.0.1:<port>/` that frames `/assisted-token` and
/// writes every message it receives (origin and data) into `#got`.
async fn spa_page(listener: tokio::net::TcpListener, frame_src: String) {
    let html = format!(
        "<!doctype html><html><body><pre id=\"got\"></pre>\
         <script>window.addEventListener('message', function (e) {{\
           document.getElementById('got').textContent += e.origin + ' ' + JSON.stringify(e.data) + '\\n';\
         }});</script>\
         <iframe id=\"f\" src=\"{frame_src}\"></iframe></body></html>"
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assisted_token_reaches_only_the_registered_origin() {
    let Some(t) = setup().await else { return };
    let registered = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unregistered = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registered_origin = format!("http://{}", registered.local_addr().unwrap());
    let unregistered_origin = format!("http://{}", unregistered.local_addr().unwrap());
    t.s.register(json!({
        "client_id": "spa",
        "name": "Photo App",
        "token_endpoint_auth_method": "none",
        "grant_types": ["urn:curity:params:grant-type:assisted-token"],
        "scopes": ["openid"],
        "allowed_origins": [registered_origin],
    }))
    .await;
    let frame_src = format!("{}/assisted-token?client_id=spa&scope=openid", t.s.base);
    spa_page(registered, frame_src.clone()).await;
    spa_page(unregistered, frame_src).await;

    // Signed in on this server, the frame on the registered origin posts a token to it.
    t.browser
        .client
        .goto(&format!("{}/login", t.s.base))
        .await
        .unwrap();
    t.browser.sign_in("ann", PASSWORD).await;
    t.browser.wait_for_path("/account").await;
    let got = |origin: String| {
        let browser = &t.browser;
        async move {
            browser.client.goto(&format!("{origin}/")).await.unwrap();
            let mut text = String::new();
            for _ in 0..40 {
                text = browser
                    .client
                    .find(Locator::Id("got"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if !text.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            text
        }
    };
    let text = got(registered_origin.clone()).await;
    let (from, data) = text
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("nothing posted: {text:?}"));
    assert_eq!(from, t.s.base, "posted by the server's page");
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["scope"], "openid", "{data}");
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(claims(data["access_token"].as_str().unwrap())["client_id"], "spa");

    // Framed by an origin it did not register, the page is refused: nothing arrives.
    let text = got(unregistered_origin).await;
    assert_eq!(text, "", "an unregistered origin received {text}");
    t.browser.close().await;
}
