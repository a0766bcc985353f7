//! Login sessions: server-side records behind an opaque cookie.
//!
//! The cookie holds 256 random bits; the database holds only their SHA-256, so a copy of the database
//! cannot be replayed as cookies. A session carries how the user authenticated (acr, amr, auth_time),
//! which is what `/authorize` hands to the issuance decision. Sessions are interaction state, kept off the
//! ledger; the acts they enable (consents, delegations, tokens) are events.

use axum::http::{HeaderMap, HeaderValue, header};
use projections::event::{AuthContext, UnixSeconds};
use projections::users::User;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::store::StoreError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cl_session";
/// The off-ledger namespace sessions live in.
const NAMESPACE: &str = "session";

/// `acr` of a password sign-in.
pub const ACR_PASSWORD: &str = "pwd";
/// `acr` of a password plus TOTP sign-in.
pub const ACR_TOTP: &str = "mfa";

/// A signed-in user's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 (hex) of the cookie value: the session's key, never the cookie itself.
    #[serde(skip)]
    pub key: String,
    pub username: String,
    pub subject: String,
    pub auth: AuthContext,
    pub expires_at: UnixSeconds,
}

/// A cookie's name on the wire: `__Host-` prefixed when the issuer is https, so a browser accepts it
/// only with `Secure`, `Path=/` and no `Domain` and no sibling subdomain can plant or overwrite it (RFC
/// 6265bis §4.1.3.2). On http the prefix would make browsers drop the cookie (it requires `Secure`), so
/// the plain name is used there (development and tests on loopback).
pub fn cookie_name(issuer: &str, name: &str) -> String {
    if issuer.starts_with("https://") {
        format!("__Host-{name}")
    } else {
        name.to_owned()
    }
}

/// The value of one of this server's cookies in a request (by its unprefixed name).
pub fn cookie<'a>(app: &App, headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_named(headers, &cookie_name(&app.config.issuer, name))
}

/// The value of the cookie called exactly `name`.
fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` and the `__Host-` name when
/// the issuer is https.
pub fn set_cookie(app: &App, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let name = cookie_name(&app.config.issuer, name);
    let secure = if app.config.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.max(0)
    ))
    .ok()
}

fn key_of(cookie_value: &str) -> String {
    hex::encode(Sha256::digest(cookie_value.as_bytes()))
}

/// 256 random bits, base64url ([`crate::ids::secret`]), failing as the store does.
pub fn random_token() -> Result<String, StoreError> {
    crate::ids::secret().map_err(|_| StoreError::Unavailable("the system has no randomness".into()))
}

/// The session the request's cookie names, if it exists and has not expired.
pub async fn current(
    app: &App,
    headers: &HeaderMap,
    now: UnixSeconds,
) -> Result<Option<Session>, StoreError> {
    let Some(value) = cookie(app, headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = key_of(value);
    let Some(json) = app.store.off_ledger_get(NAMESPACE, &key, now).await? else {
        return Ok(None);
    };
    let mut session: Session =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
    if session.expires_at <= now {
        return Ok(None);
    }
    session.key = key;
    Ok(Some(session))
}

/// Starts a new session for `user` (a new cookie value every sign-in, so a planted cookie never becomes
/// a signed-in one) and returns it with the `Set-Cookie` header to send.
pub async fn start(
    app: &App,
    user: &User,
    auth: AuthContext,
    now: UnixSeconds,
) -> Result<(Session, Option<HeaderValue>), StoreError> {
    let value = random_token()?;
    let lifetime = app.config.login.session_seconds;
    let session = Session {
        key: key_of(&value),
        username: user.username.clone(),
        subject: user.subject.clone(),
        auth,
        expires_at: now + lifetime,
    };
    save(app, &session, now).await?;
    Ok((session, set_cookie(app, SESSION_COOKIE, &value, lifetime)))
}

/// Stores `session` as it now is (after a step-up, say).
pub async fn save(app: &App, session: &Session, now: UnixSeconds) -> Result<(), StoreError> {
    let json = serde_json::to_string(session).map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
    app.store
        .off_ledger_put(NAMESPACE, &session.key, &json, Some(session.expires_at), now)
        .await
}

/// Ends the request's session and returns the `Set-Cookie` header that clears the cookie.
pub async fn end(app: &App, headers: &HeaderMap) -> Result<Option<HeaderValue>, StoreError> {
    if let Some(value) = cookie(app, headers, SESSION_COOKIE) {
        app.store.off_ledger_delete(NAMESPACE, &key_of(value)).await?;
    }
    Ok(set_cookie(app, SESSION_COOKIE, "", 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; cl_session=xyz; b=2"),
        );
        assert_eq!(cookie_named(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie_named(&h, "missing"), None);
    }

    #[test]
    fn cookies_are_host_prefixed_on_https_only() {
        assert_eq!(
            cookie_name("https://login.example", SESSION_COOKIE),
            "__Host-cl_session"
        );
        assert_eq!(cookie_name("http://127.0.0.1:8080", SESSION_COOKIE), "cl_session");
    }
}
