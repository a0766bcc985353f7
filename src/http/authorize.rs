//! `GET/POST /authorize`, the consent page, and `POST /par` (RFC 9126): carrying out what
//! `authorize::next_step` decides.

use askama::Template;
use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::clients::Client;
use projections::consents::Consent;
use projections::users::User;
use serde::Deserialize;
use serde_json::{Value, json};

use std::net::SocketAddr;

use super::client_auth::authenticate;
use super::login::{Peer, peer_of};
use crate::app::{App, AppRef};
use crate::authorize::interaction::{self, KeepError, Pushed};
use crate::authorize::next_step::{self, Step};
use crate::authorize::request::{self, AuthorizationRequest, Rejection, ResponseType, Settings};
use crate::authorize::{consent, details, issue, response};
use crate::grants::{self, GrantType};
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::pages;
use crate::policy::authorizer::Verdict;
use crate::policy::external::{self, External};
use crate::sessions::{self, Session};
use crate::store::{self, AppendRequest, RowFilter};

/// The authorization endpoint's routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/authorize/resume", get(resume))
        .route("/authorize/consent", post(consent))
        .route("/par", post(par))
}

fn settings(app: &App, pushed: bool) -> Settings {
    Settings {
        require_pkce: app.config.login.require_pkce,
        scopes_per_request_max: app.config.limits.scopes_per_request_max,
        scope_len_max: app.config.limits.scope_len_max,
        state_bytes_max: app.config.limits.state_bytes_max,
        nonce_bytes_max: app.config.limits.nonce_bytes_max,
        login_hint_bytes_max: app.config.limits.login_hint_bytes_max,
        authorization_details_bytes_max: app.config.limits.authorization_details_bytes_max,
        pushed,
    }
}

/// The error page for something that cannot be sent back to the client.
pub(super) fn error_page(e: &OAuthError) -> Response {
    let status = match e {
        OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = e
        .description()
        .unwrap_or("The server could not complete the request; try again later.");
    pages::error(status, &e.to_string(), message)
}

pub(super) fn redirect(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn authorize_get(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    match Form::parse(q.unwrap_or_default().as_bytes()) {
        Ok(params) => start(&app, peer_of(peer), &headers, params).await,
        Err(e) => error_page(&e),
    }
}

async fn authorize_post(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form, OAuthError>,
) -> Response {
    match form {
        Ok(params) => start(&app, peer_of(peer), &headers, params).await,
        Err(e) => error_page(&e),
    }
}

/// Validates a new request (from the query, the body, or a pushed `request_uri`), keeps it, and goes on.
async fn start(app: &App, peer: Option<SocketAddr>, headers: &HeaderMap, params: Form) -> Response {
    let now = app.now();
    let (params, pushed) = match params.get("request_uri") {
        Some(uri) => {
            let Some(client_id) = params.get("client_id") else {
                return error_page(&OAuthError::InvalidRequest("request_uri needs client_id".into()));
            };
            match interaction::take_pushed(app, uri, client_id, now).await {
                Ok(Some(p)) if p.client_id == client_id => (p.params, true),
                Ok(_) => {
                    return error_page(&OAuthError::InvalidRequestUri(
                        "the request_uri is unknown, expired, already used, or not this client's".into(),
                    ));
                }
                Err(e) => return error_page(&OAuthError::from(e)),
            }
        }
        None => (params.0, false),
    };
    let client: Option<Client> = match params.get("client_id") {
        Some(id) => match store::get(app.store.as_ref(), id).await {
            Ok(c) => c,
            Err(e) => return error_page(&OAuthError::from(e)),
        },
        None => None,
    };
    let request = match request::validate(&params, client.as_ref(), settings(app, pushed), now) {
        Ok(r) => r,
        Err(Rejection::Page(e)) => return error_page(&e),
        Err(Rejection::Redirect { error, target }) => {
            return response::send(
                &target,
                response::parameters(&target, &app.config.issuer, response::error_parameters(&error)),
            );
        }
    };
    let refuse = |error: OAuthError| {
        let target = &request.target;
        response::send(
            target,
            response::parameters(target, &app.config.issuer, response::error_parameters(&error)),
        )
    };
    // Each address may have only so many requests kept at once (per node), so one client cannot take
    // every place under `pending_requests_max`.
    // 0 turns it off (behind a proxy that hides client addresses, every client is one address).
    let per_address = app.config.limits.pending_requests_per_address_max;
    let address = super::rate_limit::address_key(&app.config.issuer, peer);
    if per_address > 0
        && !super::rate_limit::kept_requests().reserve(
            &[&address],
            per_address,
            interaction::PENDING_SECONDS,
            now,
        )
    {
        return refuse(OAuthError::TemporarilyUnavailable);
    }
    match interaction::keep(app, &request, now).await {
        Ok(id) => proceed(app, headers, &id, request, now).await,
        Err(KeepError::TooLarge(max)) => refuse(OAuthError::InvalidRequest(format!(
            "the request is larger than the {max} bytes this server keeps"
        ))),
        Err(KeepError::Full) => refuse(OAuthError::TemporarilyUnavailable),
        Err(KeepError::Store(e)) => error_page(&OAuthError::from(e)),
    }
}

#[derive(Deserialize)]
struct ResumeQuery {
    id: String,
}

/// `GET /authorize/resume?id=…`: where sign-in and step-up pages return to.
async fn resume(State(app): State<AppRef>, headers: HeaderMap, Query(q): Query<ResumeQuery>) -> Response {
    let now = app.now();
    match interaction::load(&app, &q.id, now).await {
        Ok(Some(request)) => proceed(&app, &headers, &q.id, request, now).await,
        Ok(None) => expired(),
        Err(e) => error_page(&OAuthError::from(e)),
    }
}

fn expired() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "This sign-in request has expired or was already answered. Return to the application and start again.",
    )
}

/// The facts a decision needs about the signed-in user, fetched once.
struct Signed {
    session: Session,
    user: User,
    client: Client,
}

/// Loads the session, the account and the client for a request; `Err` is the response to give instead.
async fn signed_in(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    request: &AuthorizationRequest,
    now: i64,
) -> Result<Signed, Response> {
    let session = sessions::current(app, headers, now)
        .await
        .map_err(|e| error_page(&OAuthError::from(e)))?;
    let user: Option<User> = match &session {
        Some(s) => store::get(app.store.as_ref(), &s.username)
            .await
            .map_err(|e| error_page(&OAuthError::from(e)))?,
        None => None,
    };
    if let Some(step) = next_step::authentication(&request.ask(), session.as_ref(), user.as_ref(), now) {
        return Err(carry_out(app, id, request, now, step).await);
    }
    let (Some(session), Some(user)) = (session, user) else {
        return Err(carry_out(app, id, request, now, Step::SignIn { again: false }).await);
    };
    let client: Option<Client> = store::get(app.store.as_ref(), &request.client_id)
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

/// What a decision for a present user needs beyond the session: standing consents and the external
/// decision points' verdicts, read once per request.
struct Fetched {
    consents: Vec<Consent>,
    external: External,
}

impl Fetched {
    fn facts<'a>(&'a self, signed: &'a Signed, request: &'a AuthorizationRequest) -> consent::Facts<'a> {
        consent::Facts {
            request: request.ask(),
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
    request: &AuthorizationRequest,
    now: i64,
) -> Result<Fetched, OAuthError> {
    // `prompt=consent` means the page is shown even when standing consents cover the request.
    let consents: Vec<Consent> = if request.prompt.consent {
        vec![]
    } else {
        store::find(
            app.store.as_ref(),
            RowFilter {
                subject: Some(&signed.user.subject),
                client_id: Some(&request.client_id),
                ..RowFilter::default()
            },
        )
        .await?
    };
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &signed.client.spec,
            subject: &signed.user.subject,
            grant_type: request.ask().grant_type.name(),
            user_present: true,
            requested: request.scope.as_deref(),
            now,
        },
    )
    .await;
    Ok(Fetched { consents, external })
}

/// Takes the request as far as it can go without the user: sign-in, step-up, consent page, or answer.
async fn proceed(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    request: AuthorizationRequest,
    now: i64,
) -> Response {
    let signed = match signed_in(app, headers, id, &request, now).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let policy = app.policy();
    let decision = match fetch(app, &policy, &signed, &request, now).await {
        Ok(fetched) => consent::decision(&policy, &fetched.facts(&signed, &request), &[], now),
        Err(e) => Err(e),
    };
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return carry_out(app, id, &request, now, Step::Fail(e)).await,
    };
    match next_step::after_decision(&request.ask(), &decision, &signed.session, &signed.user) {
        Step::Consent => consent_page(app, headers, id, &request, &signed, &policy, &decision, now).await,
        Step::Issue => {
            answer(
                app,
                id,
                &request,
                &signed,
                &policy,
                &decision,
                AppendRequest::default(),
                now,
            )
            .await
        }
        other => carry_out(app, id, &request, now, other).await,
    }
}

/// Sends the browser where `step` says (sign-in pages, or the client with an error).
async fn carry_out(app: &App, id: &str, request: &AuthorizationRequest, now: i64, step: Step) -> Response {
    let return_to = format!("/authorize/resume?id={id}");
    let encoded: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    match step {
        Step::SignIn { again: false } => redirect(&format!("/login?return_to={encoded}")),
        Step::SignIn { again: true } => redirect(&format!("/login?prompt=login&return_to={encoded}")),
        Step::SecondFactor => redirect(&format!("/login/totp?return_to={encoded}")),
        Step::Fail(error) => {
            // The request is answered: it cannot be resumed afterwards.
            if let Err(e) = interaction::finish(app, id, now).await {
                return error_page(&OAuthError::from(e));
            }
            let target = &request.target;
            response::send(
                target,
                response::parameters(target, &app.config.issuer, response::error_parameters(&error)),
            )
        }
        Step::Consent | Step::Issue => error_page(&OAuthError::ServerError),
    }
}

/// One scope on the consent page.
pub(super) struct ScopeLine {
    name: String,
    description: String,
    lifetime: String,
}

/// The consent page, for the authorization endpoint, the device verification page and the approvals
/// page alike.
#[derive(Template)]
#[template(path = "consent.html")]
pub(super) struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub client_kind: &'a str,
    pub username: &'a str,
    pub csrf: &'a str,
    /// Where the answer goes, and the hidden field naming the request it answers.
    pub action: &'a str,
    pub field: &'a str,
    pub id: &'a str,
    pub scopes: Vec<ScopeLine>,
    pub details: Vec<String>,
    pub already: Vec<String>,
    /// A CIBA request's binding message, which the user checks against what the client shows.
    pub binding_message: Option<&'a str>,
}

/// How the consent page introduces a client.
pub(super) fn client_kind(client: &Client) -> &'static str {
    match client.spec.kind {
        projections::event::ClientKind::FirstParty => "an application run by this service",
        projections::event::ClientKind::ThirdParty => "a third-party application",
    }
}

/// What the consent page showed for each scope it asked about, as `ConsentGranted` records it.
pub(super) fn shown(policy: &Policy, decision: &Decision) -> Value {
    json!(
        pending_lines(policy, decision)
            .into_iter()
            .map(|l| json!({"scope": l.name, "description": l.description, "lifetime": l.lifetime}))
            .collect::<Vec<Value>>()
    )
}

/// "for 1 hour", "for 30 days", or "until you revoke it".
fn lifetime_text(seconds: Option<i64>) -> String {
    let Some(s) = seconds else {
        return "Until you revoke it".into();
    };
    let (n, unit) = match s {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("For {n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// What the page shows for each pending scope: its description and how long it would last.
pub(super) fn pending_lines(policy: &Policy, decision: &Decision) -> Vec<ScopeLine> {
    decision
        .pending()
        .map(|t| {
            let def = policy.engine.find(&t.scope).map(|(d, _)| d);
            let ttl = match &t.combined {
                Some(Verdict::Conditional { conditions }) => conditions.ttl_seconds,
                _ => None,
            };
            let lifetime = match (ttl, def.and_then(|d| d.lifetime_seconds)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            ScopeLine {
                name: t.scope.clone(),
                description: def
                    .map(|d| d.description.clone())
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| t.scope.clone()),
                lifetime: lifetime_text(lifetime),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // the request's facts, each already fetched, and its instant
async fn consent_page(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    request: &AuthorizationRequest,
    signed: &Signed,
    policy: &Policy,
    decision: &Decision,
    now: i64,
) -> Response {
    let (csrf, set_cookie) = match super::csrf::token(app, headers, now).await {
        Ok(t) => t,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    let page = ConsentPage {
        client_name: &signed.client.spec.name,
        client_kind: client_kind(&signed.client),
        username: &signed.user.username,
        csrf: &csrf,
        action: "/authorize/consent",
        field: "id",
        id,
        scopes: pending_lines(policy, decision),
        details: details::describe(&request.authorization_details),
        already: decision.scope_names(),
        binding_message: None,
    };
    // Approving redirects to the client: its origin is the one place besides this server a form may lead.
    let csp = pages::csp_with_form_action(response::origin(&request.target.redirect_uri));
    let mut r = pages::render_with_csp(StatusCode::OK, &page, &csp);
    if let Some(c) = set_cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// `POST /authorize/consent`: the user's answer, scope by scope.
async fn consent(State(app): State<AppRef>, headers: HeaderMap, form: Result<Form, OAuthError>) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    if !super::csrf::check(&app, &headers, form.get(super::csrf::CSRF_FIELD), now).await {
        return pages::error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "This form has expired or did not come from this site. Go back, reload the page and try again.",
        );
    }
    let Some(id) = form.get("id") else {
        return expired();
    };
    let request = match interaction::load(&app, id, now).await {
        Ok(Some(r)) => r,
        Ok(None) => return expired(),
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    let signed = match signed_in(&app, &headers, id, &request, now).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let policy = app.policy();
    let fetched = match fetch(&app, &policy, &signed, &request, now).await {
        Ok(f) => f,
        Err(e) => return carry_out(&app, id, &request, now, Step::Fail(e)).await,
    };
    let facts = fetched.facts(&signed, &request);
    let given = consent::Answer {
        approving: form.get("action") == Some("approve"),
        ticked: form
            .0
            .iter()
            .filter(|(k, v)| k.starts_with("scope.") && v.as_str() == "on")
            .map(|(k, _)| k["scope.".len()..].to_owned())
            .collect(),
    };
    let outcome = match consent::decide(&policy, &facts, &given, now) {
        Ok(o) => o,
        Err(e) => return carry_out(&app, id, &request, now, Step::Fail(e)).await,
    };
    let (decision, answered) = match outcome {
        // Not waiting for consent: go on as a fresh visit would, settling nothing from the form.
        consent::Outcome::NotAsked(_) => return proceed(&app, &headers, id, request, now).await,
        consent::Outcome::Refused { answered } => (None, answered),
        consent::Outcome::Approved { decision, answered } => (Some(decision), answered),
    };
    let shown_json = shown(&policy, &answered.shown);
    let consents = issue::consent(issue::ConsentAnswer {
        subject: &signed.user.subject,
        client: &signed.client.spec,
        policy: &policy,
        approved: answered.approved,
        refused: answered.refused,
        authorization_details: &request.authorization_details,
        shown: shown_json,
        now,
    });
    match decision {
        Some(decision) => answer(&app, id, &request, &signed, &policy, &decision, consents, now).await,
        // RFC 6749 §4.1.2.1: the user refused; no code, not even for what needed no consent.
        None => {
            if let Err(e) = grants::record(&app, consents).await {
                return error_page(&e);
            }
            let denied = OAuthError::AccessDenied("the user did not allow the request".into());
            carry_out(&app, id, &request, now, Step::Fail(denied)).await
        }
    }
}

/// Issues what `decision` grants (a code, or for implicit a token), records it with `also`, and sends
/// it to the client.
#[allow(clippy::too_many_arguments)] // the request's facts, each already fetched, and its instant
async fn answer(
    app: &App,
    id: &str,
    request: &AuthorizationRequest,
    signed: &Signed,
    policy: &Policy,
    decision: &Decision,
    also: AppendRequest,
    now: i64,
) -> Response {
    // Taking the kept request makes the answer single: a second submission finds nothing.
    match interaction::finish(app, id, now).await {
        Ok(Some(_)) => {}
        Ok(None) => return expired(),
        Err(e) => return error_page(&OAuthError::from(e)),
    }
    let who = issue::Answer {
        request,
        subject: &signed.user.subject,
        auth: &signed.session.auth,
        policy_version: &policy.version,
        now,
    };
    let result = match request.response_type {
        ResponseType::Code => match issue::code(who, decision) {
            Ok((code, append)) => grants::record(app, also.and(append))
                .await
                .map(|_| vec![("code", code)]),
            Err(e) => Err(e),
        },
        ResponseType::Token => implicit(app, who, signed, policy, decision, also).await,
    };
    let target = &request.target;
    let params = match result {
        Ok(p) => p,
        Err(e) => response::error_parameters(&e),
    };
    response::send(target, response::parameters(target, &app.config.issuer, params))
}

/// RFC 6749 §4.2.2: a delegation and an access token at once; never a refresh token.
async fn implicit(
    app: &App,
    who: issue::Answer<'_>,
    signed: &Signed,
    policy: &Policy,
    decision: &Decision,
    also: AppendRequest,
) -> Result<Vec<(&'static str, String)>, OAuthError> {
    let (delegation_id, created) = crate::delegations::create(crate::delegations::Creation {
        subject: who.subject,
        client_id: &signed.client.spec.client_id,
        scopes: &issue::granted(decision),
        authorization_details: &who.request.authorization_details,
        auth: who.auth,
        grant_type: GrantType::Implicit.name(),
        audience: &decision.audience,
        now: who.now,
    });
    let (token, recorded) = grants::prepare_access_token(
        app,
        policy,
        &signed.client,
        who.subject,
        GrantType::Implicit,
        decision,
        Some(delegation_id),
    )
    .await?;
    grants::record(app, also.and(created).and(recorded)).await?;
    Ok(vec![
        ("access_token", token.access_token),
        ("token_type", token.token_type.to_owned()),
        ("expires_in", token.expires_in.to_string()),
        ("scope", token.scope.unwrap_or_default()),
    ])
}

/// `POST /par` (RFC 9126): an authenticated client pushes its request and gets a `request_uri`.
async fn par(State(app): State<AppRef>, headers: HeaderMap, form: Form) -> Result<Response, OAuthError> {
    let now = app.now();
    let endpoint = format!("{}/par", app.config.issuer);
    let client = authenticate(&app, &headers, &form, &endpoint, now).await?;
    if form.get("request_uri").is_some() {
        return Err(OAuthError::InvalidRequest("request_uri cannot be pushed".into()));
    }
    let mut params = form.0;
    // Client authentication is not part of the authorization request.
    for k in ["client_secret", "client_assertion", "client_assertion_type"] {
        params.remove(k);
    }
    params.insert("client_id".into(), client.spec.client_id.clone());
    // Checked now, as the authorization endpoint would, so the client hears of a bad request at once.
    if let Err(Rejection::Page(e) | Rejection::Redirect { error: e, .. }) =
        request::validate(&params, Some(&client), settings(&app, true), now)
    {
        return Err(match e {
            OAuthError::InvalidClient(d) => OAuthError::InvalidRequest(d),
            other => other,
        });
    }
    let pushed = Pushed {
        client_id: client.spec.client_id.clone(),
        params,
    };
    let request_uri = interaction::push(&app, &pushed, now).await.map_err(|e| match e {
        KeepError::TooLarge(max) => OAuthError::InvalidRequest(format!(
            "the request is larger than the {max} bytes this server keeps"
        )),
        KeepError::Full => OAuthError::TemporarilyUnavailable,
        KeepError::Store(e) => OAuthError::from(e),
    })?;
    let mut r = (
        StatusCode::CREATED,
        axum::Json(json!({ "request_uri": request_uri, "expires_in": interaction::PUSHED_SECONDS })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::lifetime_text;

    #[test]
    fn lifetimes_read_in_the_largest_whole_unit() {
        assert_eq!(lifetime_text(None), "Until you revoke it");
        assert_eq!(lifetime_text(Some(3_600)), "For 1 hour");
        assert_eq!(lifetime_text(Some(2 * 86_400)), "For 2 days");
        assert_eq!(lifetime_text(Some(90)), "For 90 seconds");
    }
}
