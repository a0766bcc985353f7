//! The pages' defences against floods and forgery, over HTTP on SQLite and PostgreSQL: bounded
//! authorization requests kept off the ledger, purging of expired entries, and CSRF tokens bound to the
//! session with a key every node shares.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{HeaderMap, HeaderValue, header};
use common::flows::*;
use common::users::{add_user, csrf_token, location, login, no_redirect_client, set_cookie_header};
use common::{TestDb, TestServer};
use consent_ledger::http::csrf;
use serde_json::json;

const CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
default_audience = "https://api.example"
[[authorizers]]
name = "ask"
type = "consent"
[[scopes]]
name = "read"
description = "Read messages"
authorizers = ["ask"]
"#;

const PASSWORD: &str = "correct horse battery";

fn config(extra: &str) -> String {
    format!("{CONFIG}\n{extra}\n")
}

async fn pending_rows(s: &TestServer) -> u64 {
    s.app
        .store
        .off_ledger_count("authorize", s.app.now())
        .await
        .unwrap()
}

/// The error a redirect to the client carries, or `None` when the browser is sent elsewhere.
fn client_error(r: &reqwest::Response) -> Option<String> {
    let to = location(r.headers());
    to.starts_with(REDIRECT)
        .then(|| params_of(&to).get("error").cloned().unwrap_or_default())
}

async fn a_flood_of_anonymous_authorize_requests_keeps_a_bounded_number_of_rows(db: TestDb) {
    let s = TestServer::start(&db, &config("[limits]\npending_requests_max = 5")).await;
    register_app(&s, "printer", &["read"], json!({})).await;
    let p = pkce();
    let mut kept = 0;
    for _ in 0..12 {
        let r = authorize(&s, None, &code_request("printer", "read", &p)).await;
        assert_eq!(r.status(), 303);
        match client_error(&r) {
            None => kept += 1,
            Some(e) => assert_eq!(e, "temporarily_unavailable"),
        }
    }
    assert_eq!(kept, 5);
    assert_eq!(pending_rows(&s).await, 5, "the flood left only the cap behind");
}

async fn one_address_cannot_take_every_pending_request_place(db: TestDb) {
    let s = TestServer::start(&db, &config("[limits]\npending_requests_per_address_max = 3")).await;
    register_app(&s, "printer", &["read"], json!({})).await;
    let p = pkce();
    let mut errors = vec![];
    for _ in 0..6 {
        let r = authorize(&s, None, &code_request("printer", "read", &p)).await;
        errors.push(client_error(&r));
    }
    let refused = Some("temporarily_unavailable".to_owned());
    assert_eq!(
        errors,
        [None, None, None, refused.clone(), refused.clone(), refused]
    );
    assert_eq!(pending_rows(&s).await, 3);
}

async fn over_long_authorize_parameters_are_refused_and_not_stored(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    register_app(&s, "printer", &["read"], json!({})).await;
    let p = pkce();
    let request = |extra: Vec<(&'static str, String)>| {
        let mut params: Vec<(String, String)> = code_request("printer", "read", &p)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            params.push((k.to_owned(), v));
        }
        params
    };
    let send = |params: Vec<(String, String)>| {
        let s = &s;
        async move {
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            authorize(s, None, &pairs).await
        }
    };

    // An over-long state is never echoed back: the user sees an error page.
    let r = send(request(vec![("state", "s".repeat(513))])).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("state is longer than 512 bytes"));
    for (name, value) in [
        ("nonce", "n".repeat(513)),
        ("login_hint", "h".repeat(257)),
        (
            "authorization_details",
            format!("[{{\"type\":\"{}\"}}]", "d".repeat(4096)),
        ),
        // Each value within its own bound, the request as a whole too large to keep.
        ("resource", format!("https://api.example/{}", "r".repeat(9000))),
    ] {
        let r = send(request(vec![(name, value)])).await;
        assert_eq!(client_error(&r).as_deref(), Some("invalid_request"), "{name}");
    }
    assert_eq!(pending_rows(&s).await, 0, "nothing was kept");
    // Values at their bounds pass.
    let r = send(request(vec![
        ("state", "s".repeat(512)),
        ("nonce", "n".repeat(512)),
    ]))
    .await;
    assert_eq!(client_error(&r), None);
    assert_eq!(pending_rows(&s).await, 1);
}

async fn expired_off_ledger_rows_are_purged_on_insert(db: TestDb) {
    let store = db.open().await;
    store
        .off_ledger_put("authorize", "old", "{}", Some(100), 50)
        .await
        .unwrap();
    store
        .off_ledger_put("session", "live", "{}", Some(10_000), 50)
        .await
        .unwrap();
    store
        .off_ledger_put("par", "old", "{}", Some(100), 50)
        .await
        .unwrap();
    assert_eq!(store.off_ledger_count("authorize", 50).await.unwrap(), 1);
    assert_eq!(store.off_ledger_count("authorize", 101).await.unwrap(), 0);
    // Any insert after the expiry deletes every expired entry, whatever its namespace.
    store
        .off_ledger_put("session", "new", "{}", Some(10_000), 200)
        .await
        .unwrap();
    // Taking "as of" time 0 would return an entry still stored: these are gone.
    assert_eq!(store.off_ledger_take("authorize", "old", 0).await.unwrap(), None);
    assert_eq!(store.off_ledger_take("par", "old", 0).await.unwrap(), None);
    assert!(
        store
            .off_ledger_take("session", "live", 0)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.off_ledger_count("session", 200).await.unwrap(), 1);

    // Insert-if-absent: the first value stays; an expired one is replaced.
    let first = store
        .off_ledger_insert("secret", "k", "one", None, 0)
        .await
        .unwrap();
    let second = store
        .off_ledger_insert("secret", "k", "two", None, 0)
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
    store
        .off_ledger_insert("t", "k", "old", Some(10), 5)
        .await
        .unwrap();
    assert_eq!(
        store
            .off_ledger_insert("t", "k", "new", Some(100), 20)
            .await
            .unwrap(),
        "new"
    );
}

fn headers_with(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    h
}

async fn post_form(s: &TestServer, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    no_redirect_client()
        .post(format!("{}{path}", s.base))
        .header(header::COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn planted_csrf_cookie_and_field_are_refused(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    register_app(&s, "printer", &["read"], json!({})).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    add_user(&s, "mallory", PASSWORD, json!({})).await;
    let planted = "p".repeat(43);

    // Login CSRF: a planted cookie and the same value in the field do not sign anyone in.
    let r = post_form(
        &s,
        "/login",
        &format!("cl_csrf={planted}"),
        &[
            ("username", "mallory"),
            ("password", PASSWORD),
            ("csrf", &planted),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie_header(r.headers(), "cl_session").is_none());

    // A signed-in victim: the planted pair next to her session cookie passes no form.
    let alice = login(&s, "alice", PASSWORD).await;
    let session = alice.split("; ").next().unwrap();
    let victim = format!("{session}; cl_csrf={planted}");
    let r = post_form(&s, "/logout", &victim, &[("csrf", &planted)]).await;
    assert_eq!(r.status(), 403);
    // Nor does a pair the attacker got honestly from the server for their own pre-session id.
    let r = no_redirect_client()
        .get(format!("{}/login", s.base))
        .send()
        .await
        .unwrap();
    let own = set_cookie_header(r.headers(), "cl_csrf").unwrap();
    let own_cookie = own.split(';').next().unwrap().to_owned();
    let own_token = hidden(&r.text().await.unwrap(), "csrf");
    let victim = format!("{session}; {own_cookie}");
    let r = post_form(&s, "/logout", &victim, &[("csrf", &own_token)]).await;
    assert_eq!(r.status(), 403);
    // Nor mallory's token from her own session.
    let mallory = login(&s, "mallory", PASSWORD).await;
    let mallory_token = csrf_token(&s, &mallory).await;
    let r = post_form(&s, "/logout", &alice, &[("csrf", &mallory_token)]).await;
    assert_eq!(r.status(), 403);

    // The consent form: the pending request is alice's, the planted pair does not approve it.
    let p = pkce();
    let r = authorize(&s, Some(&alice), &code_request("printer", "read", &p)).await;
    assert_eq!(r.status(), 200);
    let id = hidden(&r.text().await.unwrap(), "id");
    let victim = format!("{session}; cl_csrf={planted}");
    let r = post_form(
        &s,
        "/authorize/consent",
        &victim,
        &[
            ("id", &id),
            ("csrf", &planted),
            ("action", "approve"),
            ("scope.read", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);

    // Her own token works, so the refusals above were the token's doing.
    let token = csrf_token(&s, &alice).await;
    let r = post_form(&s, "/logout", &alice, &[("csrf", &token)]).await;
    assert_eq!(r.status(), 303);
}

async fn cross_site_form_posts_are_refused(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let alice = login(&s, "alice", PASSWORD).await;
    let token = csrf_token(&s, &alice).await;
    let r = no_redirect_client()
        .post(format!("{}/logout", s.base))
        .header(header::COOKIE, &alice)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a browser says the form came from another site");
    let r = no_redirect_client()
        .post(format!("{}/logout", s.base))
        .header(header::COOKIE, &alice)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

/// Another node over the same database (no HTTP needed to render a token).
async fn node(db: &TestDb) -> consent_ledger::app::App {
    let config = consent_ledger::config::Config::parse("test.toml", CONFIG).unwrap();
    consent_ledger::app::App::new(db.open().await, config).unwrap()
}

async fn the_csrf_key_is_shared_by_every_node(db: TestDb) {
    let (a, b) = (node(&db).await, node(&db).await);
    let browser = headers_with(&format!("cl_csrf={}", "q".repeat(43)));
    // Both create the key at once: both keep the first one stored.
    let ((from_a, set_a), (from_b, set_b)) = tokio::join!(
        async { csrf::token(&a, &browser, a.now()).await.unwrap() },
        async { csrf::token(&b, &browser, b.now()).await.unwrap() },
    );
    assert!(set_a.is_none() && set_b.is_none());
    assert_eq!(
        from_a, from_b,
        "a form rendered by one node is accepted by the other"
    );
    assert!(csrf::check(&b, &browser, Some(&from_a), b.now()).await);
    // A restarted node reads the same key.
    let c = node(&db).await;
    assert!(csrf::check(&c, &browser, Some(&from_a), c.now()).await);
    // Another browser's pre-session id gets another token.
    let other = headers_with(&format!("cl_csrf={}", "r".repeat(43)));
    assert!(!csrf::check(&c, &other, Some(&from_a), c.now()).await);
}

on_both_stores!(
    a_flood_of_anonymous_authorize_requests_keeps_a_bounded_number_of_rows,
    one_address_cannot_take_every_pending_request_place,
    over_long_authorize_parameters_are_refused_and_not_stored,
    expired_off_ledger_rows_are_purged_on_insert,
    planted_csrf_cookie_and_field_are_refused,
    cross_site_form_posts_are_refused,
    the_csrf_key_is_shared_by_every_node,
);
