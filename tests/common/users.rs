//! Users and signing in over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use consent_ledger::users::{self, totp};
use projections::users::User;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

use super::{Node, TestServer};

/// A client that follows no redirects and keeps no cookies (tests look at both).
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The cookies a browser would hold, kept by hand from `Set-Cookie` headers.
#[derive(Debug, Clone, Default)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    /// Applies a response's `Set-Cookie` headers (an empty value or `Max-Age=0` deletes).
    pub fn update(&mut self, headers: &HeaderMap) {
        for (name, value, deleted) in set_cookies(headers) {
            if deleted {
                self.0.remove(&name);
            } else {
                self.0.insert(name, value);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The `Cookie` header carrying every cookie held.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The `Cookie` header carrying the named cookies, in that order.
    pub fn header_of(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| {
                format!(
                    "{n}={}",
                    self.get(n).unwrap_or_else(|| panic!("no cookie {n} in {self:?}"))
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Each `Set-Cookie` as (name, value, deletes-it).
pub fn set_cookies(headers: &HeaderMap) -> Vec<(String, String, bool)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.trim().split_once('=')?;
            let deleted = value.is_empty() || attrs.contains("Max-Age=0");
            Some((name.to_owned(), value.to_owned(), deleted))
        })
        .collect()
}

/// The full `Set-Cookie` header for `name`, if the response sets it.
pub fn set_cookie_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The `Location` header.
pub fn location(headers: &HeaderMap) -> String {
    headers.get(LOCATION).unwrap().to_str().unwrap().to_owned()
}

/// Registers `username` with `password` and `attributes` (a JSON object) through the users module.
pub async fn add_user(s: &TestServer, username: &str, password: &str, attributes: serde_json::Value) -> User {
    let store = s.app.store.as_ref();
    let now = s.app.now();
    users::add(store, username, attributes, now).await.unwrap();
    users::set_password(store, username, password, now).await.unwrap();
    users::get(store, username).await.unwrap().unwrap()
}

/// Enrolls TOTP for `username`; returns the secret's bytes (codes: `totp::code_at(&secret, now)`).
pub async fn enroll_totp(s: &TestServer, username: &str) -> Vec<u8> {
    users::enroll_totp(s.app.store.as_ref(), username, s.app.now())
        .await
        .unwrap()
}

/// GETs the sign-in form and POSTs the password; returns the jar and the POST's response.
pub async fn submit_password(s: &Node, username: &str, password: &str) -> (Jar, reqwest::Response) {
    let http = no_redirect_client();
    let mut jar = Jar::default();
    let r = http.get(format!("{}/login", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    jar.update(r.headers());
    let csrf = super::flows::hidden(&r.text().await.unwrap(), "csrf");
    let r = http
        .post(format!("{}/login", s.base))
        .header(COOKIE, jar.header())
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf", &csrf),
            ("return_to", "/account"),
        ])
        .send()
        .await
        .unwrap();
    jar.update(r.headers());
    (jar, r)
}

/// The CSRF token forms carry for the browser sending `cookie` (bound to its session, or else to its
/// pre-session id), as the sign-in form shows it.
pub async fn csrf_token(s: &Node, cookie: &str) -> String {
    let r = no_redirect_client()
        .get(format!("{}/login?prompt=login", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        set_cookie_header(r.headers(), "cl_csrf").is_none(),
        "the browser had no session or pre-session id"
    );
    super::flows::hidden(&r.text().await.unwrap(), "csrf")
}

/// Signs in with a password (the user has no TOTP); returns the `Cookie` header value to send:
/// `cl_session=…; cl_csrf=…` (the token forms carry: [`csrf_token`]).
pub async fn login(s: &Node, username: &str, password: &str) -> String {
    let (jar, r) = submit_password(s, username, password).await;
    let status = r.status();
    assert_eq!(status, 303, "sign-in of {username}: {}", r.text().await.unwrap());
    jar.header_of(&["cl_session", "cl_csrf"])
}

/// Signs in with a password and the current TOTP code; returns the `Cookie` header value to send:
/// `cl_session=…; cl_csrf=…`. When this step's code was used already (two sign-ins within 30 s), it
/// uses the next step's, which the server also accepts.
pub async fn login_with_totp(s: &TestServer, username: &str, password: &str, secret: &[u8]) -> String {
    let (mut jar, r) = submit_password(s, username, password).await;
    let status = r.status();
    let headers = r.headers().clone();
    assert_eq!(status, 303, "sign-in of {username}: {}", r.text().await.unwrap());
    assert!(location(&headers).starts_with("/login/totp?"), "{headers:?}");
    let http = no_redirect_client();
    let now = s.app.now();
    for at in [now, now + totp::STEP_SECONDS] {
        let csrf = csrf_token(s, &jar.header()).await;
        let code = totp::code_at(secret, at);
        let r = http
            .post(format!("{}/login/totp", s.base))
            .header(COOKIE, jar.header())
            .form(&[
                ("code", code.as_str()),
                ("csrf", &csrf),
                ("return_to", "/account"),
            ])
            .send()
            .await
            .unwrap();
        jar.update(r.headers());
        match r.status().as_u16() {
            303 => return jar.header_of(&["cl_session", "cl_csrf"]),
            401 => continue,
            other => panic!("TOTP step of {username}: {other} {}", r.text().await.unwrap()),
        }
    }
    panic!("TOTP step of {username}: neither this step's nor the next step's code was accepted")
}
