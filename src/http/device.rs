//! The device authorization grant's HTTP side (RFC 8628): `POST /device_authorization` for devices, and
//! the verification page `GET/POST /device` (with `POST /device/consent`) where a signed-in user types
//! the code and answers on the same consent page, with the same decision and step-ups, as at
//! `/authorize`. Every decision is in `device/`, `authorize/consent.rs` and `authorize/next_step.rs`; the
//! page's steps, shared with the CIBA approvals page, are in `http/approval.rs`.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::Event;
use projections::devices::DeviceAuthorization;
use projections::event::{DeviceAuthorizationApproved, DeviceAuthorizationDenied, V1};
use projections::users::User;
use serde::Deserialize;
use serde_json::json;

use super::approval::{self, Approval, Denial, Pending, Texts, done, forbidden, signed_in, with_client};
use super::authorize::error_page;
use super::client_auth::authenticate;
use super::login::{Peer, peer_of};
use super::rate_limit;
use crate::app::{App, AppRef};
use crate::authorize::next_step::Ask;
use crate::device::{self, Typed};
use crate::grants;
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::pages;
use crate::sessions::Session;
use crate::store::{self, AppendRequest, ExpectedVersion};

/// Where each pending request's user code points to its device code's hash, off the ledger: the lookup
/// the verification page needs, and what `limits.pending_device_requests_max` counts.
const USER_CODES: &str = "device-user-code";

/// The device authorization endpoint and the verification pages.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/device_authorization", post(device_authorization))
        .route("/device", get(page).post(typed))
        .route("/device/consent", post(answer))
}

/// `POST /device_authorization` (RFC 8628 §3.1–3.2).
async fn device_authorization(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, OAuthError> {
    let now = app.now();
    let endpoint = format!("{}/device_authorization", app.config.issuer);
    let client = authenticate(&app, &headers, &form, &endpoint, now).await?;
    let limits = &app.config.limits;
    let requested = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let request = device::Request {
        scope: requested.as_deref(),
        resource: form.get("resource"),
    };
    let settings = device::Settings {
        code_seconds: app.config.device.code_seconds,
        interval_seconds: app.config.device.interval_seconds,
    };
    let device_code = crate::ids::secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let device_hash = device::hash(&device_code);
    let policy = app.policy();
    let mut user_code = device::new_user_code()?;
    let mut event = device::decide(
        &policy,
        &client,
        request,
        settings,
        &device_hash,
        &device::hash(&user_code),
        now,
    )?;
    // Each address may have only so many requests waiting (per node), so one cannot take every place.
    let per_address = limits.pending_requests_per_address_max;
    let address = format!(
        "{}\0device",
        rate_limit::address_key(&app.config.issuer, peer_of(peer))
    );
    if per_address > 0
        && !rate_limit::kept_requests().reserve(&[&address], per_address, settings.code_seconds, now)
    {
        return Err(OAuthError::TemporarilyUnavailable);
    }
    // Counted then stored, like the kept authorization requests: concurrent requests can pass the cap
    // by at most the number in flight.
    if app.store.off_ledger_count(USER_CODES, now).await? >= limits.pending_device_requests_max {
        return Err(OAuthError::TemporarilyUnavailable);
    }
    // Two requests never share a user code: the first to claim one keeps it. The code keeps pointing at
    // its request for one more lifetime after it expires, so the page can say it expired rather than
    // that it is wrong.
    let mut claimed = false;
    for _ in 0..3 {
        let stored = app
            .store
            .off_ledger_insert(
                USER_CODES,
                &event.user_code_hash,
                &device_hash,
                Some(event.expires_at + settings.code_seconds),
                now,
            )
            .await?;
        if stored == device_hash {
            claimed = true;
            break;
        }
        user_code = device::new_user_code()?;
        event.user_code_hash = device::hash(&user_code);
    }
    if !claimed {
        return Err(OAuthError::TemporarilyUnavailable);
    }
    let (expires_at, interval) = (event.expires_at, event.interval);
    let recorded = Event::DeviceAuthorizationRequested(event);
    grants::record(
        &app,
        AppendRequest::to_stream(recorded.stream_id(), ExpectedVersion::NoStream, vec![recorded]),
    )
    .await?;
    let shown = device::display(&user_code);
    let verification_uri = format!("{}/device", app.config.issuer);
    let mut r = axum::Json(json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={shown}"),
        "expires_in": expires_at - now,
        "interval": interval,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Template)]
#[template(path = "device.html")]
struct CodePage<'a> {
    username: &'a str,
    csrf: &'a str,
    user_code: &'a str,
    error: Option<&'a str>,
}

/// The code as the form shows it again: normalised when it can be, else nothing of what was typed.
fn shown_code(typed: &str) -> String {
    device::normalize(typed)
        .map(|c| device::display(&c))
        .unwrap_or_default()
}

/// Where the sign-in and step-up pages send the user back to.
fn return_to(code: &str) -> String {
    if code.is_empty() {
        "/device".to_owned()
    } else {
        format!("/device?user_code={code}")
    }
}

#[derive(Deserialize)]
struct PageQuery {
    user_code: Option<String>,
}

async fn code_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    user: &User,
    code: &str,
    error: Option<&str>,
    now: i64,
) -> Response {
    let csrf = match super::csrf::token(app, headers, now).await {
        Ok((t, _)) => t,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    pages::render(
        status,
        &CodePage {
            username: &user.username,
            csrf: &csrf,
            user_code: code,
            error,
        },
    )
}

/// `GET /device[?user_code=…]`: the form to type (or confirm) the code, for a signed-in user.
async fn page(State(app): State<AppRef>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let now = app.now();
    let code = shown_code(q.user_code.as_deref().unwrap_or_default());
    let (_, user) = match signed_in(&app, &headers, &return_to(&code), now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    code_page(&app, &headers, StatusCode::OK, &user, &code, None, now).await
}

/// Finds the pending request a typed code names. Every look-up is counted, before it is made, under the
/// client address and the session, and given back when the code was right: a code cannot be tied to the
/// request it was meant for, so guessing is bounded per guesser (`device.user_code_attempts_max`).
async fn look_up(
    app: &App,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    session: &Session,
    user: &User,
    typed: &str,
    now: i64,
) -> Result<DeviceAuthorization, Response> {
    let settings = &app.config.device;
    let address = format!(
        "{}\0device-code",
        rate_limit::address_key(&app.config.issuer, peer)
    );
    let per_session = format!("{}\0device-session\0{}", app.config.issuer, session.key);
    if !rate_limit::user_codes().reserve(
        &[&address, &per_session],
        settings.user_code_attempts_max,
        settings.lockout_window_seconds,
        now,
    ) {
        return Err(pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "Too many wrong codes were typed from here. Wait a few minutes, then try again.",
        ));
    }
    let found: Option<DeviceAuthorization> = match device::normalize(typed) {
        Some(code) => {
            let pointer = app
                .store
                .off_ledger_get(USER_CODES, &device::hash(&code), now)
                .await
                .map_err(|e| error_page(&OAuthError::from(e)))?;
            match pointer {
                Some(hash) => store::get(app.store.as_ref(), &hash)
                    .await
                    .map_err(|e| error_page(&OAuthError::from(e)))?,
                None => None,
            }
        }
        None => None,
    };
    let outcome = device::typed(found.as_ref(), now);
    if outcome != Typed::Wrong {
        rate_limit::user_codes().release(&address, now);
        rate_limit::user_codes().release(&per_session, now);
    }
    match outcome {
        Typed::Wrong => Err(code_page(
            app,
            headers,
            StatusCode::BAD_REQUEST,
            user,
            &shown_code(typed),
            Some("That code is not right. Check the code on your device and type it again."),
            now,
        )
        .await),
        Typed::Expired => Err(done(
            StatusCode::BAD_REQUEST,
            "This code has expired",
            "Start again on your device to get a new code.",
        )),
        Typed::Answered => Err(done(
            StatusCode::BAD_REQUEST,
            "This code was already used",
            "The request from your device has already been answered. Start again on your device if you need a new one.",
        )),
        Typed::Pending(_) => found.ok_or_else(|| error_page(&OAuthError::ServerError)),
    }
}

/// `POST /device`: the typed code.
async fn typed(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form, OAuthError>,
) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    if !super::csrf::check(&app, &headers, form.get(super::csrf::CSRF_FIELD), now).await {
        return forbidden();
    }
    let typed = form.get("user_code").unwrap_or_default();
    let code = shown_code(typed);
    let (session, user) = match signed_in(&app, &headers, &return_to(&code), now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let device = match look_up(&app, &headers, peer_of(peer), &session, &user, typed, now).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let signed = match with_client(&app, session, user, &device.client_id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pending = Device {
        device: &device,
        code: &code,
    };
    approval::proceed(&app, &headers, &signed, &pending, now).await
}

/// A device request as the verification page handles it, with the user code as typed (normalised),
/// which the consent form and the way back from a step-up carry: the ledger holds only its hash.
struct Device<'a> {
    device: &'a DeviceAuthorization,
    code: &'a str,
}

static TEXTS: Texts = Texts {
    approved_title: "Your device is connected",
    approved_after: " Return to your device.",
    denied_title: "The device was not connected",
    denied_after: " You can close this page.",
    answered_title: "This code was already used",
    answered_message: "The request from your device has already been answered.",
};

impl Pending for Device<'_> {
    fn ask(&self) -> Ask<'_> {
        device::ask(self.device)
    }

    fn form(&self) -> (&'static str, &'static str, &str) {
        ("/device/consent", "user_code", self.code)
    }

    fn back(&self) -> String {
        return_to(self.code)
    }

    fn approved(&self, a: Approval) -> Event {
        Event::DeviceAuthorizationApproved(DeviceAuthorizationApproved {
            v: V1,
            device_code_hash: self.device.device_code_hash.clone(),
            subject: a.subject,
            auth: a.auth,
            scopes: a.scopes,
            audience: a.audience,
            shown: a.shown,
            approved: a.approved,
            refused: a.refused,
            decision_trail: a.decision_trail,
            policy_version: a.policy_version,
            at: a.at,
        })
    }

    fn denied(&self, d: Denial) -> Event {
        Event::DeviceAuthorizationDenied(DeviceAuthorizationDenied {
            v: V1,
            device_code_hash: self.device.device_code_hash.clone(),
            subject: d.subject,
            shown: d.shown,
            refused: d.refused,
            reason: d.reason,
            at: d.at,
        })
    }

    fn texts(&self) -> &'static Texts {
        &TEXTS
    }
}

/// `POST /device/consent`: the user's answer, scope by scope.
async fn answer(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form, OAuthError>,
) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    if !super::csrf::check(&app, &headers, form.get(super::csrf::CSRF_FIELD), now).await {
        return forbidden();
    }
    let typed = form.get("user_code").unwrap_or_default();
    let code = shown_code(typed);
    let (session, user) = match signed_in(&app, &headers, &return_to(&code), now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let device = match look_up(&app, &headers, peer_of(peer), &session, &user, typed, now).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let signed = match with_client(&app, session, user, &device.client_id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pending = Device {
        device: &device,
        code: &code,
    };
    approval::answer(&app, &headers, &signed, &pending, &form, now).await
}
