//! The device authorization grant's HTTP side (RFC 8628): `POST /device_authorization` for devices, and
//! the verification page `GET/POST /device` (with `POST /device/consent`) where a signed-in user types
//! the code and answers on the same consent page, with the same decision and step-ups, as at
//! `/authorize`. Every decision is in `device/`, `authorize/consent.rs` and `authorize/next_step.rs`.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::Event;
use projections::clients::Client;
use projections::consents::Consent;
use projections::devices::DeviceAuthorization;
use projections::event::{DeviceAuthorizationApproved, DeviceAuthorizationDenied, V1};
use projections::users::User;
use serde::Deserialize;
use serde_json::{Value, json};

use super::authorize::{ConsentPage, client_kind, error_page, pending_lines, redirect, shown};
use super::client_auth::authenticate;
use super::login::{Peer, peer_of};
use super::rate_limit;
use crate::app::{App, AppRef};
use crate::authorize::next_step::{self, Step};
use crate::authorize::{consent, issue};
use crate::device::{self, Typed};
use crate::grants::{self, GrantType};
use crate::issuance::{Decision, Policy};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::pages;
use crate::policy::external::{self, External};
use crate::sessions::{self, Session};
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion, RowFilter};

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

#[derive(Template)]
#[template(path = "device_done.html")]
struct DonePage<'a> {
    title: &'a str,
    message: &'a str,
}

fn done(status: StatusCode, title: &str, message: &str) -> Response {
    pages::render(status, &DonePage { title, message })
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

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The signed-in user and their account, or the redirect to sign in first.
async fn signed_in(
    app: &App,
    headers: &HeaderMap,
    code: &str,
    now: i64,
) -> Result<(Session, User), Response> {
    let session = sessions::current(app, headers, now)
        .await
        .map_err(|e| error_page(&OAuthError::from(e)))?;
    let user: Option<User> = match &session {
        Some(s) => store::get(app.store.as_ref(), &s.username)
            .await
            .map_err(|e| error_page(&OAuthError::from(e)))?,
        None => None,
    };
    match (session, user.filter(|u| u.is_enabled())) {
        (Some(s), Some(u)) => Ok((s, u)),
        _ => Err(redirect(&format!(
            "/login?return_to={}",
            encode(&return_to(code))
        ))),
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
    let (_, user) = match signed_in(&app, &headers, &code, now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    code_page(&app, &headers, StatusCode::OK, &user, &code, None, now).await
}

fn forbidden() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "invalid_request",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
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
    let (session, user) = match signed_in(&app, &headers, &shown_code(typed), now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let device = match look_up(&app, &headers, peer_of(peer), &session, &user, typed, now).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let signed = match with_client(&app, session, user, &device).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    proceed(&app, &headers, &signed, &device, &shown_code(typed), now).await
}

/// The facts a decision on the page needs about the user and the client, fetched once.
struct Signed {
    session: Session,
    user: User,
    client: Client,
}

async fn with_client(
    app: &App,
    session: Session,
    user: User,
    device: &DeviceAuthorization,
) -> Result<Signed, Response> {
    let client: Option<Client> = store::get(app.store.as_ref(), &device.client_id)
        .await
        .map_err(|e| error_page(&OAuthError::from(e)))?;
    match client.filter(|c| c.is_enabled()) {
        Some(client) => Ok(Signed {
            session,
            user,
            client,
        }),
        None => Err(error_page(&OAuthError::InvalidClient(
            "unknown or disabled client".into(),
        ))),
    }
}

/// Standing consents and external verdicts, read once per request.
struct Fetched {
    consents: Vec<Consent>,
    external: External,
}

impl Fetched {
    fn facts<'a>(&'a self, signed: &'a Signed, device: &'a DeviceAuthorization) -> consent::Facts<'a> {
        consent::Facts {
            request: device::ask(device),
            session: &signed.session,
            user: &signed.user,
            client: &signed.client,
            consents: &self.consents,
            external: &self.external,
        }
    }
}

async fn fetch(
    app: &App,
    policy: &Policy,
    signed: &Signed,
    device: &DeviceAuthorization,
    now: i64,
) -> Result<Fetched, OAuthError> {
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(&signed.user.subject),
            client_id: Some(&device.client_id),
            ..RowFilter::default()
        },
    )
    .await?;
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &signed.client.spec,
            subject: &signed.user.subject,
            grant_type: GrantType::DeviceCode.name(),
            user_present: true,
            requested: device.scopes.as_deref(),
            now,
        },
    )
    .await;
    Ok(Fetched { consents, external })
}

/// Takes a pending request as far as it goes: a step-up, the consent page, or the answer. `code` is the
/// user code as typed (normalised), which the consent form and the way back from a step-up carry: the
/// ledger holds only its hash.
async fn proceed(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    device: &DeviceAuthorization,
    code: &str,
    now: i64,
) -> Response {
    let ask = device::ask(device);
    let back = return_to(code);
    if let Some(step) = next_step::authentication(&ask, Some(&signed.session), Some(&signed.user), now) {
        return carry_out(app, signed, device, &back, step, now).await;
    }
    let policy = app.policy();
    // A failure to read the facts is the server's, not an answer: the request stays pending.
    let fetched = match fetch(app, &policy, signed, device, now).await {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let decision = consent::decision(&policy, &fetched.facts(signed, device), &[], now);
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return carry_out(app, signed, device, &back, Step::Fail(e), now).await,
    };
    match next_step::after_decision(&ask, &decision, &signed.session, &signed.user) {
        Step::Consent => consent_page(app, headers, signed, &policy, &decision, code, now).await,
        Step::Issue => {
            let answered = Answered {
                shown: Value::Null,
                approved: vec![],
                refused: vec![],
            };
            approve(app, signed, device, &policy, &decision, answered, now).await
        }
        other => carry_out(app, signed, device, &back, other, now).await,
    }
}

/// Carries out a step: to the sign-in or second-factor page and back, or a refusal recorded for the
/// device to hear at its next poll.
async fn carry_out(
    app: &App,
    signed: &Signed,
    device: &DeviceAuthorization,
    back: &str,
    step: Step,
    now: i64,
) -> Response {
    let encoded = encode(back);
    match step {
        Step::SignIn { again: false } => redirect(&format!("/login?return_to={encoded}")),
        Step::SignIn { again: true } => redirect(&format!("/login?prompt=login&return_to={encoded}")),
        Step::SecondFactor => redirect(&format!("/login/totp?return_to={encoded}")),
        // The server failed: nothing was decided, and the request stays pending.
        Step::Fail(error @ (OAuthError::ServerError | OAuthError::TemporarilyUnavailable)) => {
            error_page(&error)
        }
        Step::Fail(error) => {
            let reason = error.description().unwrap_or("refused").to_owned();
            deny(
                app,
                signed,
                device,
                Value::Null,
                vec![],
                &reason,
                AppendRequest::default(),
                now,
            )
            .await
        }
        Step::Consent | Step::Issue => error_page(&OAuthError::ServerError),
    }
}

async fn consent_page(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    policy: &Policy,
    decision: &Decision,
    code: &str,
    now: i64,
) -> Response {
    let csrf = match super::csrf::token(app, headers, now).await {
        Ok((t, _)) => t,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    let page = ConsentPage {
        client_name: &signed.client.spec.name,
        client_kind: client_kind(&signed.client),
        username: &signed.user.username,
        csrf: &csrf,
        action: "/device/consent",
        field: "user_code",
        id: code,
        scopes: pending_lines(policy, decision),
        details: vec![],
        already: decision.scope_names(),
    };
    pages::render(StatusCode::OK, &page)
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
    let (session, user) = match signed_in(&app, &headers, &shown_code(typed), now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let device = match look_up(&app, &headers, peer_of(peer), &session, &user, typed, now).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let signed = match with_client(&app, session, user, &device).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let policy = app.policy();
    let fetched = match fetch(&app, &policy, &signed, &device, now).await {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let given = consent::Answer {
        approving: form.get("action") == Some("approve"),
        ticked: form
            .0
            .iter()
            .filter(|(k, v)| k.starts_with("scope.") && v.as_str() == "on")
            .map(|(k, _)| k["scope.".len()..].to_owned())
            .collect(),
    };
    let outcome = match consent::decide(&policy, &fetched.facts(&signed, &device), &given, now) {
        Ok(o) => o,
        Err(e) => {
            let back = return_to(&shown_code(typed));
            return carry_out(&app, &signed, &device, &back, Step::Fail(e), now).await;
        }
    };
    match outcome {
        // Not waiting for consent: go on as a fresh visit would, settling nothing from the form.
        consent::Outcome::NotAsked(_) => {
            proceed(&app, &headers, &signed, &device, &shown_code(typed), now).await
        }
        consent::Outcome::Refused { answered } => {
            let shown_json = shown(&policy, &answered.shown);
            let consents = issue::consent(issue::ConsentAnswer {
                subject: &signed.user.subject,
                client_id: &device.client_id,
                approved: vec![],
                refused: answered.refused.clone(),
                authorization_details: &Value::Null,
                shown: shown_json.clone(),
                now,
            });
            deny(
                &app,
                &signed,
                &device,
                shown_json,
                answered.refused,
                "the user refused",
                consents,
                now,
            )
            .await
        }
        consent::Outcome::Approved { decision, answered } => {
            let answered = Answered {
                shown: shown(&policy, &answered.shown),
                approved: answered.approved,
                refused: answered.refused,
            };
            approve(&app, &signed, &device, &policy, &decision, answered, now).await
        }
    }
}

/// What the page asked and how the user answered, as the events record it.
struct Answered {
    shown: Value,
    approved: Vec<String>,
    refused: Vec<String>,
}

/// Appends the answer to the device request's stream, expecting only its request before it: a request
/// is answered once.
async fn answer_once(app: &App, event: Event, also: AppendRequest) -> Result<(), Response> {
    let append = also.and(AppendRequest::to_stream(
        event.stream_id(),
        ExpectedVersion::Exact(1),
        vec![event],
    ));
    match app.store.append(append).await {
        Ok(_) => Ok(()),
        Err(AppendError::Conflict { .. }) => Err(done(
            StatusCode::BAD_REQUEST,
            "This code was already used",
            "The request from your device has already been answered.",
        )),
        Err(AppendError::Store(e)) => Err(error_page(&OAuthError::from(e))),
        Err(other) => Err(error_page(&OAuthError::internal("recording the answer", other))),
    }
}

async fn approve(
    app: &App,
    signed: &Signed,
    device: &DeviceAuthorization,
    policy: &Policy,
    decision: &Decision,
    answered: Answered,
    now: i64,
) -> Response {
    let consents = issue::consent(issue::ConsentAnswer {
        subject: &signed.user.subject,
        client_id: &device.client_id,
        approved: answered.approved.clone(),
        refused: answered.refused.clone(),
        authorization_details: &Value::Null,
        shown: answered.shown.clone(),
        now,
    });
    let event = Event::DeviceAuthorizationApproved(DeviceAuthorizationApproved {
        v: V1,
        device_code_hash: device.device_code_hash.clone(),
        subject: signed.user.subject.clone(),
        auth: signed.session.auth.clone(),
        scopes: issue::granted(decision),
        audience: decision.audience.clone(),
        shown: answered.shown,
        approved: answered.approved,
        refused: answered.refused,
        decision_trail: json!({ "scopes": decision.trail }),
        policy_version: Some(policy.version.clone()),
        at: now,
    });
    match answer_once(app, event, consents).await {
        Ok(()) => done(
            StatusCode::OK,
            "Your device is connected",
            &format!(
                "{} may now use: {}. Return to your device.",
                signed.client.spec.name,
                decision.scope_names().join(", ")
            ),
        ),
        Err(r) => r,
    }
}

#[allow(clippy::too_many_arguments)] // the request's facts, what was shown and refused, and its instant
async fn deny(
    app: &App,
    signed: &Signed,
    device: &DeviceAuthorization,
    shown: Value,
    refused: Vec<String>,
    reason: &str,
    also: AppendRequest,
    now: i64,
) -> Response {
    let event = Event::DeviceAuthorizationDenied(DeviceAuthorizationDenied {
        v: V1,
        device_code_hash: device.device_code_hash.clone(),
        subject: signed.user.subject.clone(),
        shown,
        refused,
        reason: reason.to_owned(),
        at: now,
    });
    match answer_once(app, event, also).await {
        Ok(()) => done(
            StatusCode::OK,
            "The device was not connected",
            &format!(
                "{} was refused access ({reason}). You can close this page.",
                signed.client.spec.name
            ),
        ),
        Err(r) => r,
    }
}
