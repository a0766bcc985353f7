//! Signing in and out: the password form, the TOTP form (second step of a sign-in, or a step-up of an
//! existing session), and logout.
//!
//! Every form carries the CSRF token. Attempts count per username and per client address
//! ([`super::rate_limit`], per node), reserved before the password or code is checked and given back when
//! it was right; past the limit the answer is 429 without looking at the password. At most
//! `login.password_verifications_concurrent_max` passwords are checked at once ([`App::password_gate`]).
//! A user with TOTP who gives the right password gets no session yet, only a five-minute pending login
//! off the ledger behind the `cl_login` cookie, which the right code turns into a session.

use std::fmt::Display;
use std::net::SocketAddr;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Extension, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::event::{AuthContext, UnixSeconds};
use projections::users::User;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::csrf;
use super::sign_in::{Attempt, Checked, check_password};
use crate::app::{App, AppRef};
use crate::pages;
use crate::sessions::{self, ACR_PASSWORD, ACR_TOTP};
use crate::store::StoreError;
use crate::users;

/// The cookie naming a pending (password given, code still due) login.
pub const PENDING_COOKIE: &str = "cl_login";
/// The off-ledger namespace of pending logins, keyed by the SHA-256 of the cookie value.
const PENDING_NAMESPACE: &str = "login-pending";
/// How long a pending login waits for its code.
const PENDING_SECONDS: i64 = 300;
/// Where a sign-in lands when it was given no (acceptable) place to return to.
pub const DEFAULT_RETURN_TO: &str = "/account";
/// Longest `return_to` kept.
const RETURN_TO_BYTES_MAX: usize = 2048;

const INCORRECT: &str = "Incorrect username or password.";
const WRONG_CODE: &str = "That code is not right. Enter the code your app shows now.";

/// This module's routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/login", get(login_form).post(login_submit))
        .route("/login/totp", get(totp_form).post(totp_submit))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    return_to: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    reauthenticate: bool,
}

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage<'a> {
    csrf: &'a str,
    return_to: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    step_up: bool,
}

/// `return_to` when it is a path on this server (`/…`, not `//…` or `/\…`, printable ASCII); else
/// [`DEFAULT_RETURN_TO`]. So a sign-in never redirects to another site.
pub fn sanitize_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= RETURN_TO_BYTES_MAX
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.to_owned()
        }
        _ => DEFAULT_RETURN_TO.to_owned(),
    }
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A 303 to `location` (always a local path here).
fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let headers = r.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    } else if let Ok(v) = HeaderValue::from_str(DEFAULT_RETURN_TO) {
        headers.insert(header::LOCATION, v);
    }
    r
}

fn with_cookies(mut r: Response, cookies: impl IntoIterator<Item = Option<HeaderValue>>) -> Response {
    for c in cookies.into_iter().flatten() {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn internal(e: impl Display) -> Response {
    tracing::error!(error = %e, "sign-in failed");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "Something went wrong on our side. Try again in a moment.",
    )
}

fn csrf_refused() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "invalid_request",
        "This form has expired or was not sent from this site. Go back, reload the page and try again.",
    )
}

fn too_many(app: &App) -> Response {
    let minutes = (app.config.login.lockout_window_seconds + 59) / 60;
    let mut r = pages::error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        &format!("Too many failed sign-in attempts. Wait {minutes} minutes, then try again."),
    );
    if let Ok(v) = HeaderValue::from_str(&app.config.login.lockout_window_seconds.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Every password verification slot stayed busy for [`PASSWORD_VERIFICATION_WAIT`]: the server is
/// overloaded, not the user wrong, so the attempt is not counted.
fn busy() -> Response {
    let mut r = pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The server is busy signing other people in. Try again in a moment.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn no_second_factor() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "second_factor_unavailable",
        "This request needs a second factor (a code from an authenticator app), and your account has none \
         enrolled. Ask an administrator to enroll one.",
    )
}

fn to_login(return_to: &str) -> Response {
    see_other(&format!("/login?return_to={}", encode(return_to)))
}

// ---- rate limiting keys ----

/// The TCP peer, when the server is served with connect info.
pub(super) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

pub(super) fn peer_of(peer: Peer) -> Option<SocketAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr)
}

// ---- pending logins ----

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    username: String,
}

fn pending_key(cookie_value: &str) -> String {
    hex::encode(Sha256::digest(cookie_value.as_bytes()))
}

async fn pending(
    app: &App,
    headers: &HeaderMap,
    now: UnixSeconds,
) -> Result<Option<(String, Pending)>, StoreError> {
    let Some(value) = sessions::cookie(app, headers, PENDING_COOKIE) else {
        return Ok(None);
    };
    let key = pending_key(value);
    let Some(json) = app.store.off_ledger_get(PENDING_NAMESPACE, &key, now).await? else {
        return Ok(None);
    };
    let p: Pending =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("pending login: {e}")))?;
    Ok(Some((key, p)))
}

fn password_auth(now: UnixSeconds) -> AuthContext {
    AuthContext {
        acr: Some(ACR_PASSWORD.to_owned()),
        amr: vec!["pwd".to_owned()],
        auth_time: Some(now),
    }
}

fn totp_auth(now: UnixSeconds) -> AuthContext {
    AuthContext {
        acr: Some(ACR_TOTP.to_owned()),
        amr: vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()],
        auth_time: Some(now),
    }
}

/// Ends the browser's old session (if any) and starts a new one: a new cookie every sign-in.
async fn start_session(
    app: &App,
    headers: &HeaderMap,
    user: &User,
    auth: AuthContext,
    return_to: &str,
    now: UnixSeconds,
) -> Result<Response, StoreError> {
    sessions::end(app, headers).await?;
    let (_, cookie) = sessions::start(app, user, auth, now).await?;
    Ok(with_cookies(see_other(return_to), [cookie]))
}

// ---- the password form ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginQuery {
    return_to: Option<String>,
    prompt: Option<String>,
}

/// The fields of the sign-in form. No `Debug`: it holds a password.
#[derive(Default, Deserialize)]
#[serde(default)]
struct LoginFormData {
    username: String,
    password: String,
    csrf: Option<String>,
    return_to: Option<String>,
}

#[allow(clippy::too_many_arguments)] // what the form shows, and the request's instant
async fn login_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
    reauthenticate: bool,
    now: UnixSeconds,
) -> Response {
    let (token, set) = match csrf::token(app, headers, now).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let page = LoginPage {
        csrf: &token,
        return_to,
        username,
        error,
        reauthenticate,
    };
    with_cookies(pages::render(status, &page), [set])
}

/// `GET /login`: the form; a browser already signed in goes straight on, unless `prompt=login` asks
/// for the password again.
async fn login_form(State(app): State<AppRef>, Query(q): Query<LoginQuery>, headers: HeaderMap) -> Response {
    let return_to = sanitize_return_to(q.return_to.as_deref());
    let reauthenticate = q.prompt.as_deref() == Some("login");
    let now = app.now();
    if !reauthenticate {
        match sessions::current(&app, &headers, now).await {
            Ok(Some(_)) => return see_other(&return_to),
            Ok(None) => {}
            Err(e) => return internal(e),
        }
    }
    login_page(
        &app,
        &headers,
        StatusCode::OK,
        &return_to,
        "",
        None,
        reauthenticate,
        now,
    )
    .await
}

/// `POST /login`.
async fn login_submit(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    Form(f): Form<LoginFormData>,
) -> Response {
    let now = app.now();
    if !csrf::check(&app, &headers, f.csrf.as_deref(), now).await {
        return csrf_refused();
    }
    let return_to = sanitize_return_to(f.return_to.as_deref());
    let (user, attempt) = match check_password(&app, &f.username, &f.password, peer_of(peer), now).await {
        Checked::Right(user, attempt) => (user, attempt),
        Checked::Wrong => {
            let shown: String = f.username.chars().take(users::USERNAME_CHARS_MAX).collect();
            return login_page(
                &app,
                &headers,
                StatusCode::UNAUTHORIZED,
                &return_to,
                &shown,
                Some(INCORRECT),
                false,
                now,
            )
            .await;
        }
        Checked::TooMany => return too_many(&app),
        Checked::Busy => return busy(),
        Checked::Store(e) => return internal(e),
        Checked::Crashed(e) => return internal(e),
    };
    // TOTP is a step-up factor: asked at sign-in only where the operator says so, otherwise when a policy
    // or the client (`acr_values=mfa`) demands it.
    let result = if user.totp_enabled && app.config.login.second_factor_at_sign_in {
        attempt.passed();
        begin_pending(&app, &user, &return_to, now).await
    } else {
        attempt.succeeded();
        start_session(&app, &headers, &user, password_auth(now), &return_to, now).await
    };
    result.unwrap_or_else(internal)
}

/// The password was right and a code is due: remember that for five minutes behind `cl_login`.
async fn begin_pending(
    app: &App,
    user: &User,
    return_to: &str,
    now: UnixSeconds,
) -> Result<Response, StoreError> {
    let value = sessions::random_token()?;
    let json = serde_json::to_string(&Pending {
        username: user.username.clone(),
    })
    .map_err(|e| StoreError::Corrupt(format!("pending login: {e}")))?;
    app.store
        .off_ledger_put(
            PENDING_NAMESPACE,
            &pending_key(&value),
            &json,
            Some(now + PENDING_SECONDS),
            now,
        )
        .await?;
    let cookie = sessions::set_cookie(app, PENDING_COOKIE, &value, PENDING_SECONDS);
    Ok(with_cookies(
        see_other(&format!("/login/totp?return_to={}", encode(return_to))),
        [cookie],
    ))
}

// ---- the TOTP form ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TotpQuery {
    return_to: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TotpFormData {
    code: String,
    csrf: Option<String>,
    return_to: Option<String>,
}

/// Whose code the TOTP form asks for.
enum Step {
    /// The second step of a sign-in.
    Pending { key: String, username: String },
    /// A signed-in user proving a second factor for this request.
    StepUp(sessions::Session),
}

impl Step {
    fn username(&self) -> &str {
        match self {
            Step::Pending { username, .. } => username,
            Step::StepUp(s) => &s.username,
        }
    }
}

async fn step_of(app: &App, headers: &HeaderMap, now: UnixSeconds) -> Result<Option<Step>, StoreError> {
    if let Some((key, p)) = pending(app, headers, now).await? {
        return Ok(Some(Step::Pending {
            key,
            username: p.username,
        }));
    }
    Ok(sessions::current(app, headers, now).await?.map(Step::StepUp))
}

async fn totp_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    step: &Step,
    return_to: &str,
    error: Option<&str>,
    now: UnixSeconds,
) -> Response {
    let (token, set) = match csrf::token(app, headers, now).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let page = TotpPage {
        csrf: &token,
        return_to,
        username: step.username(),
        error,
        step_up: matches!(step, Step::StepUp(_)),
    };
    with_cookies(pages::render(status, &page), [set])
}

/// `GET /login/totp`.
async fn totp_form(State(app): State<AppRef>, Query(q): Query<TotpQuery>, headers: HeaderMap) -> Response {
    let return_to = sanitize_return_to(q.return_to.as_deref());
    let now = app.now();
    let step = match step_of(&app, &headers, now).await {
        Ok(Some(step)) => step,
        Ok(None) => return to_login(&return_to),
        Err(e) => return internal(e),
    };
    if let Step::StepUp(session) = &step {
        match users::get(app.store.as_ref(), &session.username).await {
            Ok(Some(u)) if u.totp_enabled && u.is_enabled() => {}
            Ok(Some(u)) if u.is_enabled() => return no_second_factor(),
            Ok(_) => return to_login(&return_to),
            Err(e) => return internal(e),
        }
    }
    totp_page(&app, &headers, StatusCode::OK, &step, &return_to, None, now).await
}

/// `POST /login/totp`.
async fn totp_submit(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    Form(f): Form<TotpFormData>,
) -> Response {
    let now = app.now();
    if !csrf::check(&app, &headers, f.csrf.as_deref(), now).await {
        return csrf_refused();
    }
    let return_to = sanitize_return_to(f.return_to.as_deref());
    match totp_step(&app, &headers, peer_of(peer), &f.code, &return_to, now).await {
        Ok(r) => r,
        Err(e) => internal(e),
    }
}

async fn totp_step(
    app: &App,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    code: &str,
    return_to: &str,
    now: UnixSeconds,
) -> Result<Response, StoreError> {
    let Some(step) = step_of(app, headers, now).await? else {
        return Ok(to_login(return_to));
    };
    let Some(attempt) = Attempt::reserve(app, step.username(), peer, now) else {
        return Ok(too_many(app));
    };
    let user = match users::get(app.store.as_ref(), step.username()).await {
        Ok(u) => u,
        Err(e) => {
            attempt.release();
            return Err(e);
        }
    };
    let user = match user {
        Some(u) if u.is_enabled() && u.totp_enabled => u,
        Some(u) if u.is_enabled() && matches!(step, Step::StepUp(_)) => {
            attempt.release();
            return Ok(no_second_factor());
        }
        _ => {
            attempt.release();
            // Disabled (or gone) since the password step: nothing to finish.
            if let Step::Pending { key, .. } = &step {
                app.store.off_ledger_delete(PENDING_NAMESPACE, key).await?;
            }
            return Ok(to_login(return_to));
        }
    };
    match users::verify_totp(app.store.as_ref(), &user.username, code, now).await {
        Ok(true) => attempt.succeeded(),
        Ok(false) => {
            attempt.failed();
            return Ok(totp_page(
                app,
                headers,
                StatusCode::UNAUTHORIZED,
                &step,
                return_to,
                Some(WRONG_CODE),
                now,
            )
            .await);
        }
        Err(e) => {
            attempt.release();
            return Err(e);
        }
    }
    match step {
        Step::Pending { key, .. } => {
            // Of two submissions racing with one pending login, one takes it.
            if app
                .store
                .off_ledger_take(PENDING_NAMESPACE, &key, now)
                .await?
                .is_none()
            {
                return Ok(to_login(return_to));
            }
            let r = start_session(app, headers, &user, totp_auth(now), return_to, now).await?;
            Ok(with_cookies(
                r,
                [sessions::set_cookie(app, PENDING_COOKIE, "", 0)],
            ))
        }
        Step::StepUp(mut session) => {
            session.auth = totp_auth(now);
            sessions::save(app, &session, now).await?;
            Ok(see_other(return_to))
        }
    }
}

// ---- logout ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session, back to the sign-in form.
async fn logout(State(app): State<AppRef>, headers: HeaderMap, Form(f): Form<LogoutForm>) -> Response {
    if !csrf::check(&app, &headers, f.csrf.as_deref(), app.now()).await {
        return csrf_refused();
    }
    match sessions::end(&app, &headers).await {
        Ok(cookie) => with_cookies(see_other("/login"), [cookie]),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_a_local_path_or_the_account_page() {
        for ok in [
            "/",
            "/account",
            "/authorize?client_id=a&scope=read%20write",
            "/a/b#frag",
        ] {
            assert_eq!(sanitize_return_to(Some(ok)), ok);
        }
        for bad in [
            None,
            Some(""),
            Some("account"),
            Some("//evil.example/x"),
            Some("/\\evil.example"),
            Some("/a\\b"),
            Some("https://evil.example/"),
            Some("javascript:alert(1)"),
            Some("/a b"),
            Some("/a\r\nSet-Cookie: x=1"),
            Some("/é"),
        ] {
            assert_eq!(sanitize_return_to(bad), DEFAULT_RETURN_TO, "{bad:?}");
        }
        assert_eq!(
            sanitize_return_to(Some(&format!("/{}", "a".repeat(3000)))),
            DEFAULT_RETURN_TO
        );
    }
}
