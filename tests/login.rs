//! Signing in over HTTP, on SQLite and PostgreSQL: the password form, CSRF, the failure limit, TOTP as
//! a second step and as a step-up, safe return paths, re-authentication and logout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{HeaderMap, HeaderValue, header};
use common::users::{
    Jar, add_user, csrf_token, enroll_totp, location, login, login_with_totp, no_redirect_client,
    set_cookie_header, submit_password,
};
use common::{TOKEN_CONFIG, TestDb, TestServer};
use consent_ledger::sessions::{self, Session};
use consent_ledger::users::{self, totp};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// The session a `Cookie` header names, as the server holds it.
async fn session_of(s: &TestServer, cookie: &str) -> Option<Session> {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    sessions::current(&s.app, &h, s.app.now()).await.unwrap()
}

fn jar_from(cookie: &str) -> Jar {
    let mut jar = Jar::default();
    for pair in cookie.split("; ") {
        let (k, v) = pair.split_once('=').unwrap();
        jar.0.insert(k.into(), v.into());
    }
    jar
}

/// GETs `/login` (with `query`) and returns the jar, status and page.
async fn login_page(s: &TestServer, query: &str, jar: &mut Jar) -> (u16, HeaderMap, String) {
    let r = no_redirect_client()
        .get(format!("{}/login{query}", s.base))
        .header(header::COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    jar.update(r.headers());
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// POSTs a form to `path` with the jar's cookies.
async fn post(s: &TestServer, path: &str, jar: &mut Jar, form: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let r = no_redirect_client()
        .post(format!("{}{path}", s.base))
        .header(header::COOKIE, jar.header())
        .form(form)
        .send()
        .await
        .unwrap();
    jar.update(r.headers());
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The hidden field `name`'s value in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

async fn a_good_password_starts_a_session_and_returns(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let alice = add_user(&s, "alice", PASSWORD, json!({"dept": "eng"})).await;
    let mut jar = Jar::default();
    let (status, headers, page) = login_page(&s, "?return_to=%2Fauthorize%3Fclient_id%3Dweb", &mut jar).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>Sign in</h1>"));
    assert!(page.contains(r#"<label for="username">"#) && page.contains(r#"<label for="password">"#));
    assert!(page.contains(r#"autocomplete="username""#));
    assert!(page.contains(r#"autocomplete="current-password""#));
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let csrf = hidden(&page, "csrf");
    // The cookie holds a pre-session id; the token is bound to it with the server's key, not a copy.
    let presession = jar.get("cl_csrf").unwrap();
    assert!(presession.len() >= 43 && presession != csrf);
    assert_eq!(hidden(&page, "return_to"), "/authorize?client_id=web");

    let (status, headers, _) = post(
        &s,
        "/login",
        &mut jar,
        &[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf", &csrf),
            ("return_to", "/authorize?client_id=web"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/authorize?client_id=web");
    let set = set_cookie_header(&headers, "cl_session").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    let session = session_of(&s, &jar.header()).await.unwrap();
    assert_eq!(session.username, "alice");
    assert_eq!(session.subject, alice.subject);
    assert_eq!(session.auth.acr.as_deref(), Some("pwd"));
    assert_eq!(session.auth.amr, vec!["pwd"]);
    assert!(session.auth.auth_time.unwrap() >= s.app.now() - 60);

    // Signed in already: the form sends the browser on.
    let (status, headers, _) = login_page(&s, "?return_to=%2Fconsents", &mut jar).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/consents");

    // The helper other tests use gives a working cookie too.
    let cookie = login(&s, "alice", PASSWORD).await;
    assert!(cookie.starts_with("cl_session=") && cookie.contains("; cl_csrf="));
    assert_eq!(session_of(&s, &cookie).await.unwrap().username, "alice");
}

async fn a_wrong_password_an_unknown_or_disabled_user_get_the_same_401(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    add_user(&s, "carol", PASSWORD, json!({})).await;
    let existing = users::get(s.app.store.as_ref(), "carol").await.unwrap();
    let disable = users::disable(existing.as_ref(), "carol", "left", s.app.now()).unwrap();
    s.app.store.append(disable).await.unwrap();
    users::add(s.app.store.as_ref(), "nopass", json!({}), 0)
        .await
        .unwrap();

    for (user, password) in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("carol", PASSWORD),
        ("nopass", PASSWORD),
        ("bad name!", PASSWORD),
    ] {
        let (jar, r) = submit_password(&s, user, password).await;
        assert_eq!(r.status(), 401, "{user}");
        assert!(set_cookie_header(r.headers(), "cl_session").is_none());
        let page = r.text().await.unwrap();
        assert!(
            page.contains(
                r#"<p role="alert" class="error" id="login-error">Incorrect username or password.</p>"#
            ),
            "{page}"
        );
        assert!(jar.get("cl_session").is_none());
    }
}

async fn a_post_without_the_csrf_token_is_refused(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let mut jar = Jar::default();
    let (_, _, page) = login_page(&s, "", &mut jar).await;
    let csrf = hidden(&page, "csrf");
    let creds = [("username", "alice"), ("password", PASSWORD)];

    // No field; a wrong field; the right field but no cookie.
    let wrong = "x".repeat(43);
    for (form_token, cookies) in [
        (None, jar.clone()),
        (Some(wrong.as_str()), jar.clone()),
        (Some(csrf.as_str()), Jar::default()),
    ] {
        let mut jar = cookies;
        let mut form = creds.to_vec();
        if let Some(t) = form_token {
            form.push(("csrf", t));
        }
        let (status, headers, page) = post(&s, "/login", &mut jar, &form).await;
        assert_eq!(status, 403, "{page}");
        assert!(set_cookie_header(&headers, "cl_session").is_none());
        assert!(page.contains("role=\"alert\""));
    }
    // Logout needs it as well.
    let cookie = login(&s, "alice", PASSWORD).await;
    let mut jar = jar_from(&cookie);
    let (status, _, _) = post(&s, "/logout", &mut jar, &[]).await;
    assert_eq!(status, 403);
    assert!(session_of(&s, &cookie).await.is_some());
}

async fn five_failures_lock_out_even_the_right_password(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    add_user(&s, "bob", PASSWORD, json!({})).await;
    for _ in 0..5 {
        let (_, r) = submit_password(&s, "alice", "guess-guess").await;
        assert_eq!(r.status(), 401);
    }
    let (jar, r) = submit_password(&s, "alice", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()[header::RETRY_AFTER], "300");
    assert!(jar.get("cl_session").is_none());
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Too many failed sign-in attempts. Wait 5 minutes"),
        "{page}"
    );
    // The same client address is limited too, whichever name it tries next.
    let (_, r) = submit_password(&s, "bob", PASSWORD).await;
    assert_eq!(r.status(), 429);
}

async fn concurrent_wrong_passwords_for_one_user_get_only_the_limit_checked(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let checked_before = s.app.password_gate.started();
    let guesses: Vec<String> = (0..40).map(|i| format!("wrong-guess-{i}")).collect();
    let answers = futures_util::future::join_all(guesses.iter().map(|guess| {
        let s = &s;
        async move { submit_password(s, "alice", guess).await.1.status().as_u16() }
    }))
    .await;
    let count = |status: u16| answers.iter().filter(|&&a| a == status).count();
    assert_eq!((count(401), count(429)), (5, 35), "{answers:?}");
    assert_eq!(
        s.app.password_gate.started() - checked_before,
        5,
        "only the reserved attempts had their password checked"
    );
}

async fn concurrent_wrong_totp_codes_get_only_the_limit_checked(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let cookie = login(&s, "alice", PASSWORD).await;
    let secret = enroll_totp(&s, "alice").await;
    let mut jar = jar_from(&cookie);
    let r = no_redirect_client()
        .get(format!("{}/login/totp?return_to=%2Faccount", s.base))
        .header(header::COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    jar.update(r.headers());
    let csrf = hidden(&r.text().await.unwrap(), "csrf");
    let bad = wrong_code(&secret, s.app.now());
    let answers = futures_util::future::join_all((0..40).map(|_| {
        let (s, jar, csrf, bad) = (&s, &jar, &csrf, &bad);
        async move {
            no_redirect_client()
                .post(format!("{}/login/totp", s.base))
                .header(header::COOKIE, jar.header())
                .form(&[("code", bad.as_str()), ("csrf", csrf), ("return_to", "/account")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;
    let count = |status: u16| answers.iter().filter(|&&a| a == status).count();
    assert_eq!((count(401), count(429)), (5, 35), "{answers:?}");
}

async fn concurrent_password_checks_never_exceed_the_gate(db: TestDb) {
    let config = format!(
        "{TOKEN_CONFIG}\n[login]\npassword_verifications_concurrent_max = 2\nfailed_attempts_max = 1000\n"
    );
    let s = TestServer::start(&db, &config).await;
    let names: Vec<String> = (0..16).map(|i| format!("nobody{i}")).collect();
    let answers = futures_util::future::join_all(names.iter().map(|name| {
        let s = &s;
        async move {
            submit_password(s, name, "some-password")
                .await
                .1
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(answers.iter().all(|a| [401, 503].contains(a)), "{answers:?}");
    let checked = answers.iter().filter(|&&a| a == 401).count() as u64;
    assert_eq!(s.app.password_gate.started(), checked);
    let peak = s.app.password_gate.peak();
    assert!((1..=2).contains(&peak), "peak {peak}");
}

/// A 6-digit code none of the steps around `now` accepts.
fn wrong_code(secret: &[u8], now: i64) -> String {
    let valid: Vec<String> = (-1..=1).map(|d| totp::code_at(secret, now + d * 30)).collect();
    (0..10u32)
        .map(|i| format!("{:06}", i * 111_111))
        .find(|c| !valid.contains(c))
        .unwrap()
}

async fn by_default_totp_is_for_step_up_and_sign_in_takes_a_password(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    enroll_totp(&s, "alice").await;
    let cookie = login(&s, "alice", PASSWORD).await;
    assert_eq!(
        session_of(&s, &cookie).await.unwrap().auth.acr.as_deref(),
        Some("pwd")
    );
}

async fn totp_users_need_a_fresh_code(db: TestDb) {
    let config = format!("{TOKEN_CONFIG}\n[login]\nsecond_factor_at_sign_in = true\n");
    let s = TestServer::start(&db, &config).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let secret = enroll_totp(&s, "alice").await;

    let (mut jar, r) = submit_password(&s, "alice", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(r.headers()), "/login/totp?return_to=%2Faccount");
    assert!(jar.get("cl_session").is_none(), "no session before the code");
    let pending = set_cookie_header(r.headers(), "cl_login").unwrap();
    assert!(
        pending.contains("HttpOnly") && pending.contains("Max-Age=300"),
        "{pending}"
    );

    let r = no_redirect_client()
        .get(format!("{}/login/totp?return_to=%2Faccount", s.base))
        .header(header::COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Enter your authentication code</h1>"));
    assert!(page.contains(r#"autocomplete="one-time-code""#) && page.contains(r#"<label for="code">"#));
    let csrf = hidden(&page, "csrf");

    let now = s.app.now();
    let bad = wrong_code(&secret, now);
    let (status, _, page) = post(
        &s,
        "/login/totp",
        &mut jar,
        &[("code", &bad), ("csrf", &csrf), ("return_to", "/account")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(page.contains("role=\"alert\""));
    assert!(jar.get("cl_session").is_none());

    // No CSRF token, no session even with the right code.
    let code = totp::code_at(&secret, now);
    let (status, _, _) = post(
        &s,
        "/login/totp",
        &mut jar,
        &[("code", &code), ("return_to", "/account")],
    )
    .await;
    assert_eq!(status, 403);

    let (status, headers, _) = post(
        &s,
        "/login/totp",
        &mut jar,
        &[("code", &code), ("csrf", &csrf), ("return_to", "/account")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/account");
    assert!(
        jar.get("cl_login").is_none(),
        "the pending login cookie is cleared"
    );
    let session = session_of(&s, &jar.header()).await.unwrap();
    assert_eq!(session.auth.acr.as_deref(), Some("mfa"));
    assert_eq!(session.auth.amr, vec!["pwd", "otp", "mfa"]);

    // The same code a second time is refused, even for a new sign-in.
    let (mut jar2, r) = submit_password(&s, "alice", PASSWORD).await;
    assert_eq!(r.status(), 303);
    let csrf2 = csrf_token(&s, &jar2.header()).await;
    let (status, _, _) = post(
        &s,
        "/login/totp",
        &mut jar2,
        &[("code", &code), ("csrf", &csrf2), ("return_to", "/account")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(jar2.get("cl_session").is_none());

    // Without a pending login or a session, the code form sends the browser to the password form.
    let (status, _, _) = post(
        &s,
        "/login/totp",
        &mut Jar::default(),
        &[("code", "123456"), ("return_to", "/x")],
    )
    .await;
    assert_eq!(status, 403, "no CSRF cookie: refused first");
    let mut only_csrf = Jar::default();
    only_csrf
        .0
        .insert("cl_csrf".into(), jar2.get("cl_csrf").unwrap().to_owned());
    let (status, headers2, _) = post(
        &s,
        "/login/totp",
        &mut only_csrf,
        &[("code", "123456"), ("csrf", &csrf2), ("return_to", "/x")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers2), "/login?return_to=%2Fx");

    // The helper signs in with the next step's code when this step's was used.
    let cookie = login_with_totp(&s, "alice", PASSWORD, &secret).await;
    assert_eq!(
        session_of(&s, &cookie).await.unwrap().auth.acr.as_deref(),
        Some("mfa")
    );
}

async fn a_step_up_raises_the_existing_session(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    add_user(&s, "bob", PASSWORD, json!({})).await;
    let cookie = login(&s, "alice", PASSWORD).await;
    let before = session_of(&s, &cookie).await.unwrap();
    assert_eq!(before.auth.acr.as_deref(), Some("pwd"));
    // TOTP enrolled after the password-only sign-in.
    let secret = enroll_totp(&s, "alice").await;

    let mut jar = jar_from(&cookie);
    let r = no_redirect_client()
        .get(format!("{}/login/totp?return_to=%2Fauthorize%3Fx%3D1", s.base))
        .header(header::COOKIE, jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("This request needs a second factor"));
    assert_eq!(hidden(&page, "return_to"), "/authorize?x=1");
    let csrf = csrf_token(&s, &jar.header()).await;
    let code = totp::code_at(&secret, s.app.now());
    let (status, headers, _) = post(
        &s,
        "/login/totp",
        &mut jar,
        &[("code", &code), ("csrf", &csrf), ("return_to", "/authorize?x=1")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/authorize?x=1");
    assert!(
        set_cookie_header(&headers, "cl_session").is_none(),
        "the same session, raised"
    );
    let after = session_of(&s, &cookie).await.unwrap();
    assert_eq!(after.key, before.key);
    assert_eq!(after.auth.acr.as_deref(), Some("mfa"));
    assert_eq!(after.auth.amr, vec!["pwd", "otp", "mfa"]);

    // A user with no second factor cannot step up.
    let bob = login(&s, "bob", PASSWORD).await;
    let r = no_redirect_client()
        .get(format!("{}/login/totp?return_to=%2Fx", s.base))
        .header(header::COOKIE, &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("none enrolled") && page.contains("role=\"alert\""),
        "{page}"
    );
}

async fn return_to_never_leaves_the_site(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let mut jar = Jar::default();
    for query in [
        "?return_to=%2F%2Fevil.example%2Fx",
        "?return_to=https%3A%2F%2Fevil.example%2F",
        "?return_to=%2F%5Cevil.example",
    ] {
        let (status, _, page) = login_page(&s, query, &mut jar).await;
        assert_eq!(status, 200);
        assert_eq!(hidden(&page, "return_to"), "/account", "{query}");
    }
    let csrf = csrf_token(&s, &jar.header()).await;
    let (status, headers, _) = post(
        &s,
        "/login",
        &mut jar,
        &[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf", &csrf),
            ("return_to", "//evil.example/x"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/account");
}

async fn prompt_login_asks_again_and_replaces_the_session(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let old = login(&s, "alice", PASSWORD).await;
    let mut jar = jar_from(&old);
    let (status, _, page) = login_page(&s, "?prompt=login&return_to=%2Fx", &mut jar).await;
    assert_eq!(status, 200, "the form, although signed in");
    assert!(page.contains("Sign in again to continue."));
    let csrf = hidden(&page, "csrf");
    let (status, _, _) = post(
        &s,
        "/login",
        &mut jar,
        &[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf", &csrf),
            ("return_to", "/x"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let new = jar.header();
    assert_ne!(jar_from(&old).get("cl_session"), jar.get("cl_session"));
    assert!(session_of(&s, &old).await.is_none(), "the old session is gone");
    assert!(session_of(&s, &new).await.is_some());
}

async fn logout_ends_the_session(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    add_user(&s, "alice", PASSWORD, json!({})).await;
    let cookie = login(&s, "alice", PASSWORD).await;
    let mut jar = jar_from(&cookie);
    let csrf = csrf_token(&s, &jar.header()).await;
    let (status, headers, _) = post(&s, "/logout", &mut jar, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(location(&headers), "/login");
    assert!(
        set_cookie_header(&headers, "cl_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(jar.get("cl_session").is_none());
    assert!(session_of(&s, &cookie).await.is_none());
    // The old cookie no longer counts as signed in.
    let mut old = jar_from(&cookie);
    let (status, _, _) = login_page(&s, "", &mut old).await;
    assert_eq!(status, 200);
}

on_both_stores!(
    by_default_totp_is_for_step_up_and_sign_in_takes_a_password,
    a_good_password_starts_a_session_and_returns,
    a_wrong_password_an_unknown_or_disabled_user_get_the_same_401,
    a_post_without_the_csrf_token_is_refused,
    five_failures_lock_out_even_the_right_password,
    concurrent_wrong_passwords_for_one_user_get_only_the_limit_checked,
    concurrent_wrong_totp_codes_get_only_the_limit_checked,
    concurrent_password_checks_never_exceed_the_gate,
    totp_users_need_a_fresh_code,
    a_step_up_raises_the_existing_session,
    return_to_never_leaves_the_site,
    prompt_login_asks_again_and_replaces_the_session,
    logout_ends_the_session,
);
