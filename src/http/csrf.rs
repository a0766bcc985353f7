//! CSRF protection for every form: a token bound to the browser's session with a server-side key.
//!
//! The token is HMAC-SHA256(key, binding), base64url, repeated in a hidden field and compared in constant
//! time. The binding is the session (the SHA-256 of its cookie, which is its key) when the browser has
//! one; otherwise a random pre-session id in its own cookie, for the sign-in form (OWASP CSRF Prevention
//! Cheat Sheet, "Synchronizer token pattern" and "Login CSRF"). Another site can make a browser send its
//! cookies but cannot read the page, and without the key it cannot compute a token for the victim's
//! session: a planted cookie plus a matching field (the double-submit weakness) is refused. A request a
//! browser marks `Sec-Fetch-Site: cross-site` is refused whatever it carries.
//!
//! The key is 256 random bits kept off the ledger, created by the first node that needs it and read by
//! every other (`off_ledger_insert`: of two nodes creating it at once, both keep the first), so a form
//! rendered by one node is accepted by another and survives restarts. A key random per process would
//! break both.

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use projections::event::UnixSeconds;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::oauth::client_auth::constant_time_eq;
use crate::sessions::{SESSION_COOKIE, cookie, random_token, set_cookie};
use crate::store::StoreError;

/// The pre-session cookie's name (`__Host-` prefixed when the issuer is https).
pub const CSRF_COOKIE: &str = "cl_csrf";
/// The hidden form field's name.
pub const CSRF_FIELD: &str = "csrf";
/// Where the key lives off the ledger.
const KEY_NAMESPACE: &str = "secret";
const KEY_NAME: &str = "csrf-hmac-sha256";
/// Shortest pre-session id accepted (a random token is 43 characters).
const PRESESSION_CHARS_MIN: usize = 43;

/// The server's CSRF key, loaded (or created) once per process.
async fn key(app: &App, now: UnixSeconds) -> Result<&hmac::Key, StoreError> {
    shared_key(app, &app.csrf_key, KEY_NAME, now).await
}

/// An HMAC-SHA256 key every node shares: 256 random bits kept off the ledger under `name`, created by
/// the first node that needs it (of two creating it at once, both keep the first) and cached in `cell`
/// for the life of the process.
pub(crate) async fn shared_key<'a>(
    app: &App,
    cell: &'a tokio::sync::OnceCell<hmac::Key>,
    name: &str,
    now: UnixSeconds,
) -> Result<&'a hmac::Key, StoreError> {
    cell.get_or_try_init(|| async {
        let fresh = random_token()?;
        let stored = app
            .store
            .off_ledger_insert(KEY_NAMESPACE, name, &fresh, None, now)
            .await?;
        let bytes = URL_SAFE_NO_PAD
            .decode(stored.as_bytes())
            .ok()
            .filter(|b| b.len() >= 32)
            .ok_or_else(|| StoreError::Corrupt(format!("the {name} key is not 32 base64url bytes")))?;
        Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    })
    .await
}

/// What the request's token must be bound to: its session cookie, else its pre-session cookie.
fn binding(headers: &HeaderMap, app: &App) -> Option<String> {
    if let Some(session) = cookie(app, headers, SESSION_COOKIE) {
        return Some(format!(
            "session\0{}",
            hex::encode(Sha256::digest(session.as_bytes()))
        ));
    }
    cookie(app, headers, CSRF_COOKIE)
        .filter(|id| id.len() >= PRESESSION_CHARS_MIN)
        .map(|id| format!("presession\0{id}"))
}

fn sign(key: &hmac::Key, binding: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(key, binding.as_bytes()).as_ref())
}

/// The token to put in a form, and the pre-session cookie to set when the browser has neither a session
/// nor a pre-session id yet.
pub async fn token(
    app: &App,
    headers: &HeaderMap,
    now: UnixSeconds,
) -> Result<(String, Option<HeaderValue>), StoreError> {
    let key = key(app, now).await?;
    if let Some(b) = binding(headers, app) {
        return Ok((sign(key, &b), None));
    }
    let id = random_token()?;
    let set = set_cookie(app, CSRF_COOKIE, &id, 24 * 3600);
    Ok((sign(key, &format!("presession\0{id}")), set))
}

/// Whether a submitted form's token is the one bound to this browser's session (or pre-session id).
pub async fn check(app: &App, headers: &HeaderMap, submitted: Option<&str>, now: UnixSeconds) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return false;
    }
    let (Some(b), Some(submitted)) = (binding(headers, app), submitted) else {
        return false;
    };
    match key(app, now).await {
        Ok(key) => constant_time_eq(sign(key, &b).as_bytes(), submitted.as_bytes()),
        Err(e) => {
            tracing::error!(error = %e, "the CSRF key cannot be loaded");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_per_binding_and_per_key() {
        let k1 = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
        let k2 = hmac::Key::new(hmac::HMAC_SHA256, &[2u8; 32]);
        let a = sign(&k1, "session\0aa");
        assert_eq!(a, sign(&k1, "session\0aa"));
        assert_eq!(a.len(), 43);
        assert_ne!(a, sign(&k1, "session\0ab"));
        assert_ne!(a, sign(&k1, "presession\0aa"));
        assert_ne!(a, sign(&k2, "session\0aa"));
    }
}
