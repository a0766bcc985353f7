//! The account page over HTTP, on SQLite and PostgreSQL: listing delegations and consents, revoking them
//! (and what that does to tokens and to the next authorization), ownership, CSRF and signing in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::flows::*;
use common::users::{add_user, location, login, no_redirect_client};
use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use reqwest::header::COOKIE;
use serde_json::json;

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
name = "photos.read"
description = "See your photos"
lifetime_seconds = 3600
authorizers = ["ask"]
[[scopes]]
name = "photos.delete"
description = "Delete your photos"
authorizers = ["ask"]
"#;

const SCOPES: &[&str] = &["openid", "photos.read", "photos.delete"];
const ANN_PASSWORD: &str = "correct horse battery";

async fn setup(db: &TestDb) -> (TestServer, String, String) {
    let s = TestServer::start(db, CONFIG).await;
    let secret = register_app(&s, "printer", SCOPES, json!({})).await;
    add_user(&s, "ann", ANN_PASSWORD, json!({})).await;
    let cookie = login(&s, "ann", ANN_PASSWORD).await;
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

/// The CSRF token forms carry for the browser sending `cookie`.
async fn csrf_of(s: &TestServer, cookie: &str) -> String {
    common::users::csrf_token(s, cookie).await
}

async fn account(s: &TestServer, cookie: Option<&str>) -> reqwest::Response {
    let mut req = no_redirect_client().get(format!("{}/account", s.base));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.unwrap()
}

async fn account_page(s: &TestServer, cookie: &str) -> String {
    let r = account(s, Some(cookie)).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The revoke form actions of a kind (`delegations` or `consents`) on the page, in page order.
fn revoke_actions(page: &str, kind: &str) -> Vec<String> {
    let marker = format!("action=\"/account/{kind}/");
    page.match_indices(&marker)
        .map(|(i, _)| {
            let start = i + "action=\"".len();
            let len = page[start..].find('"').unwrap();
            page[start..start + len].to_owned()
        })
        .collect()
}

async fn post(s: &TestServer, path: &str, cookie: Option<&str>, csrf: Option<&str>) -> reqwest::Response {
    let mut req = no_redirect_client().post(format!("{}{path}", s.base));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let form: Vec<(&str, &str)> = csrf.map(|t| ("csrf", t)).into_iter().collect();
    req.form(&form).send().await.unwrap()
}

async fn refresh(s: &TestServer, client: (&str, &str), token: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some(client),
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await;
    (status, body)
}

on_both_stores!(
    the_page_lists_a_delegation_and_revoking_it_ends_its_tokens,
    revoking_a_consent_makes_the_next_authorization_ask_again,
    only_the_owner_may_revoke,
    a_revoke_without_the_csrf_token_is_refused,
    nobody_signed_in_goes_to_the_login_page,
);

async fn the_page_lists_a_delegation_and_revoking_it_ends_its_tokens(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let client = ("printer", secret.as_str());
    let empty = account_page(&s, &cookie).await;
    assert!(empty.contains("No application has access"), "{empty}");
    assert!(empty.contains("action=\"/logout\""), "a sign-out button: {empty}");
    let tokens = code_flow(
        &s,
        &cookie,
        client,
        "openid photos.read photos.delete",
        &["photos.read", "photos.delete"],
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&s, client, access).await["active"], true);

    let page = account_page(&s, &cookie).await;
    // Headings, a captioned table, the client's name, every scope with its lifetime, and a named button.
    assert!(page.contains("<h1>Your account</h1>"), "{page}");
    assert!(page.contains("<caption>"), "{page}");
    assert!(page.contains("<th scope=\"row\">Photo Printer</th>"), "{page}");
    for scope in ["openid", "photos.read", "photos.delete"] {
        assert!(page.contains(&format!("<code>{scope}</code>")), "{scope}: {page}");
    }
    assert!(
        page.contains("See your photos") && page.contains("Delete your photos"),
        "{page}"
    );
    assert!(
        page.contains("Until revoked"),
        "photos.delete has no expiry: {page}"
    );
    assert!(page.contains("Until 20"), "photos.read lives an hour: {page}");
    assert!(page.contains(">Remove access<"), "{page}");
    assert!(
        page.contains("signed in on this site"),
        "how it was granted: {page}"
    );
    assert!(page.contains("Granted"), "the consent is listed: {page}");
    let actions = revoke_actions(&page, "applications");
    assert_eq!(actions, ["/account/applications/printer/remove"], "{page}");

    let before = events(&s).await.len();
    let r = post(&s, &actions[0], Some(&cookie), Some(&csrf_of(&s, &cookie).await)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/account");
    // The delegation ends and the standing consent is withdrawn, in one append
    let evs = events(&s).await;
    assert_eq!(evs.len(), before + 2, "{:?}", &evs[before..]);
    assert!(
        evs[before..]
            .iter()
            .any(|e| matches!(e, Event::DelegationRevoked(d) if d.reason == "revoked_by_user")),
        "{:?}",
        &evs[before..]
    );
    assert!(
        evs[before..]
            .iter()
            .any(|e| matches!(e, Event::ConsentRevoked(_)))
    );

    let (status, body) = refresh(&s, client, refresh_token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(introspect(&s, client, access).await["active"], false);

    let page = account_page(&s, &cookie).await;
    assert!(page.contains("No application has access"), "{page}");
    assert!(page.contains("History: access that ended (1)"), "{page}");
    assert!(page.contains("Revoked 20") && page.contains("(by you)"), "{page}");
    assert!(revoke_actions(&page, "applications").is_empty(), "{page}");
    // Removing twice appends nothing more.
    let r = post(&s, &actions[0], Some(&cookie), Some(&csrf_of(&s, &cookie).await)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(events(&s).await.len(), before + 2);
    // The next authorization asks again
    let p = pkce();
    let r = authorize(&s, Some(&cookie), &code_request("printer", "photos.read", &p)).await;
    assert_eq!(r.status(), 200, "the consent page again");
}

async fn revoking_a_consent_makes_the_next_authorization_ask_again(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    code_flow(&s, &cookie, ("printer", &secret), "photos.read", &["photos.read"]).await;
    let p = pkce();
    let r = authorize(&s, Some(&cookie), &code_request("printer", "photos.read", &p)).await;
    assert_eq!(r.status(), 303, "a standing consent: no page");
    assert!(params_of(&location(r.headers())).contains_key("code"));

    let page = account_page(&s, &cookie).await;
    assert!(page.contains(">Revoke consent for Photo Printer<"), "{page}");
    let actions = revoke_actions(&page, "consents");
    assert_eq!(actions.len(), 1, "{page}");
    let r = post(&s, &actions[0], Some(&cookie), Some(&csrf_of(&s, &cookie).await)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/account");
    assert!(matches!(events(&s).await.last(), Some(Event::ConsentRevoked(_))));

    let r = authorize(&s, Some(&cookie), &code_request("printer", "photos.read", &p)).await;
    assert_eq!(r.status(), 200, "the consent page again");
    let consent = r.text().await.unwrap();
    assert!(consent.contains("See your photos"), "{consent}");

    let page = account_page(&s, &cookie).await;
    assert!(page.contains("Revoked 20"), "{page}");
    assert!(revoke_actions(&page, "consents").is_empty(), "{page}");
}

async fn only_the_owner_may_revoke(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    code_flow(&s, &cookie, ("printer", &secret), "photos.read", &["photos.read"]).await;
    let page = account_page(&s, &cookie).await;
    let delegation = revoke_actions(&page, "applications").remove(0);
    let consent = revoke_actions(&page, "consents").remove(0);

    add_user(&s, "bob", "another good password", json!({})).await;
    let bob = login(&s, "bob", "another good password").await;
    let bobs = account_page(&s, &bob).await;
    assert!(
        !bobs.contains("Photo Printer"),
        "bob sees none of ann's grants: {bobs}"
    );
    let before = events(&s).await.len();
    for path in [
        delegation.as_str(),
        consent.as_str(),
        "/account/delegations/no-such-id/revoke",
        "/account/applications/no-such-client/remove",
        "/account/consents/no-such-id/revoke",
    ] {
        let r = post(&s, path, Some(&bob), Some(&csrf_of(&s, &bob).await)).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("no such grant"));
    }
    assert_eq!(events(&s).await.len(), before, "nothing appended");
    // Ann's grants still stand.
    let page = account_page(&s, &cookie).await;
    assert_eq!(revoke_actions(&page, "applications"), vec![delegation]);
    assert_eq!(revoke_actions(&page, "consents"), vec![consent]);
}

async fn a_revoke_without_the_csrf_token_is_refused(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    code_flow(&s, &cookie, ("printer", &secret), "photos.read", &["photos.read"]).await;
    let page = account_page(&s, &cookie).await;
    let delegation = revoke_actions(&page, "applications").remove(0);
    let consent = revoke_actions(&page, "consents").remove(0);
    let before = events(&s).await.len();
    let wrong = "x".repeat(43);
    for path in [&delegation, &consent] {
        let r = post(&s, path, Some(&cookie), None).await;
        assert_eq!(r.status(), 403, "no token: {path}");
        let r = post(&s, path, Some(&cookie), Some(&wrong)).await;
        assert_eq!(r.status(), 403, "a wrong token: {path}");
    }
    assert_eq!(events(&s).await.len(), before, "nothing appended");
}

async fn nobody_signed_in_goes_to_the_login_page(db: TestDb) {
    let (s, secret, cookie) = setup(&db).await;
    let r = account(&s, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/login?return_to=%2Faccount");
    // A signed-out browser (its CSRF cookie kept) cannot revoke either.
    code_flow(&s, &cookie, ("printer", &secret), "photos.read", &["photos.read"]).await;
    let page = account_page(&s, &cookie).await;
    let delegation = revoke_actions(&page, "applications").remove(0);
    // A signed-out browser: a pre-session id and the token bound to it.
    let r = no_redirect_client()
        .get(format!("{}/login", s.base))
        .send()
        .await
        .unwrap();
    let presession = common::users::set_cookie_header(r.headers(), "cl_csrf").unwrap();
    let signed_out = presession.split(';').next().unwrap().to_owned();
    let signed_out_csrf = hidden(&r.text().await.unwrap(), "csrf");
    let before = events(&s).await.len();
    let r = post(&s, &delegation, Some(&signed_out), Some(&signed_out_csrf)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/login?return_to=%2Faccount");
    assert_eq!(events(&s).await.len(), before);
    // Signing out from the page ends the session.
    let csrf = csrf_of(&s, &cookie).await;
    let r = post(&s, "/logout", Some(&cookie), Some(&csrf)).await;
    assert_eq!(r.status(), 303);
    let r = account(&s, Some(&cookie)).await;
    assert_eq!(r.status(), 303);
}
