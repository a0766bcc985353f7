//! `GET /assisted-token` and `POST /assisted-token/consent`: the assisted token flow
//! (draft-ideskog-assisted-token). A single-page application frames the page (or opens it in a popup);
//! the page posts an access token, or the reason there is none, to the application's registered origin.
//! `authorize::assisted` decides what the page answers; the sign-in and consent pages and the decision
//! are the authorization endpoint's.

use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use projections::clients::Client;
use projections::consents::Consent;
use projections::users::User;
use serde_json::{Value, json};

use super::authorize::{ConsentPage, client_kind, error_page, pending_lines, redirect, shown};
use crate::app::{App, AppRef};
use crate::authorize::assisted::{self, Answer, Mode};
use crate::authorize::next_step::{self, Ask, Step};
use crate::authorize::request::Prompt;
use crate::authorize::{consent, issue};
use crate::grants::{self, ASSISTED_TOKEN, GrantType, TokenResponse};
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::pages;
use crate::policy::external;
use crate::sessions::{self, Session};
use crate::store::{self, AppendRequest, RowFilter};

/// The assisted token flow's routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/assisted-token", get(page))
        .route("/assisted-token/consent", post(consent_answer))
}

/// The page's parameters: `client_id`, and optionally `scope`, `resource` and `mode=popup`. The first
/// of a repeated parameter counts.
struct Asked {
    client_id: String,
    scope: Option<Vec<String>>,
    resource: Option<String>,
    mode: Mode,
    /// The query as received, to come back to after signing in.
    query: String,
}

fn parse(query: &str) -> Asked {
    let first = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    Asked {
        client_id: first("client_id").unwrap_or_default(),
        scope: first("scope").map(|s| s.split_ascii_whitespace().map(str::to_owned).collect()),
        resource: first("resource"),
        mode: Mode::parse(first("mode").as_deref()),
        query: query.to_owned(),
    }
}

impl Asked {
    fn ask<'a>(&'a self, details: &'a Value, now: i64) -> Ask<'a> {
        Ask {
            client_id: &self.client_id,
            grant_type: GrantType::AssistedToken,
            scope: self.scope.as_deref(),
            resource: self.resource.as_deref(),
            authorization_details: details,
            // The frame never shows a page; the popup asks as the authorization endpoint would.
            prompt: Prompt {
                none: self.mode == Mode::Frame,
                ..Prompt::default()
            },
            max_age: None,
            acr_values: &[],
            created_at: now,
        }
    }

    fn return_to(&self) -> String {
        let here = format!("/assisted-token?{}", self.query);
        form_urlencoded::byte_serialize(here.as_bytes()).collect()
    }
}

/// The page that posts the answer. The message and the origins are read from an HTML-escaped attribute,
/// never written into the script.
#[derive(Template)]
#[template(path = "assisted_token.html")]
struct PostPage<'a> {
    nonce: &'a str,
    /// `{"message": …, "origins": […], "popup": bool}` as JSON.
    data: &'a str,
}

/// Posts `message` to the client's registered origins (the browser delivers it only to the one the
/// parent or opener is on), from a page only those origins may frame.
fn post_message(origins: &[String], mode: Mode, message: Value) -> Response {
    let nonce = crate::ids::id();
    let data = json!({ "message": message, "origins": origins, "popup": mode == Mode::Popup }).to_string();
    let page = PostPage {
        nonce: &nonce,
        data: &data,
    };
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors {}; base-uri 'none'; \
         form-action 'none'",
        origins.join(" ")
    );
    let mut r = pages::render_with_csp(StatusCode::OK, &page, &csp);
    // Framing is what this page is for: the CSP's frame-ancestors names who may.
    r.headers_mut().remove(header::X_FRAME_OPTIONS);
    r
}

fn answer_message(answer: &Answer, token: Option<TokenResponse>) -> Value {
    match (answer.error_code(), token) {
        (None, Some(t)) => json!({
            "access_token": t.access_token,
            "token_type": t.token_type,
            "expires_in": t.expires_in,
            "scope": t.scope.unwrap_or_default(),
        }),
        (Some(code), _) => json!({ "error": code }),
        (None, None) => json!({ "error": "server_error" }),
    }
}

fn post_error(origins: &[String], mode: Mode, e: OAuthError) -> Response {
    let answer = Answer::Error(e);
    post_message(origins, mode, answer_message(&answer, None))
}

/// The facts the decision needs, fetched once.
struct Signed {
    session: Session,
    user: User,
    client: Client,
    consents: Vec<Consent>,
    external: external::External,
}

impl Signed {
    fn facts<'a>(&'a self, ask: Ask<'a>) -> consent::Facts<'a> {
        consent::Facts {
            request: ask,
            session: &self.session,
            user: &self.user,
            client: &self.client,
            consents: &self.consents,
            external: &self.external,
        }
    }
}

/// The client and its origins; `Err` is the error page (nothing is posted without an origin to trust).
async fn client_of(app: &App, client_id: &str) -> Result<(Client, Vec<String>), Response> {
    let client: Option<Client> = store::get(app.store.as_ref(), client_id)
        .await
        .map_err(|e| error_page(&OAuthError::from(e)))?;
    let origins = assisted::origins(client.as_ref())
        .map_err(|e| error_page(&e))?
        .to_vec();
    match client {
        Some(c) => Ok((c, origins)),
        None => Err(error_page(&OAuthError::InvalidClient("unknown client".into()))),
    }
}

/// Loads the session and the account and decides; `Err` is the step that comes before a decision.
async fn signed(
    app: &App,
    headers: &HeaderMap,
    asked: &Asked,
    client: Client,
    policy: &Policy,
    now: i64,
) -> Result<Signed, Step> {
    let details = Value::Null;
    let session = sessions::current(app, headers, now)
        .await
        .map_err(|e| Step::Fail(OAuthError::from(e)))?;
    let user: Option<User> = match &session {
        Some(s) => store::get(app.store.as_ref(), &s.username)
            .await
            .map_err(|e| Step::Fail(OAuthError::from(e)))?,
        None => None,
    };
    if let Some(step) =
        next_step::authentication(&asked.ask(&details, now), session.as_ref(), user.as_ref(), now)
    {
        return Err(step);
    }
    let (Some(session), Some(user)) = (session, user) else {
        return Err(Step::SignIn { again: false });
    };
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(&user.subject),
            client_id: Some(&asked.client_id),
            ..RowFilter::default()
        },
    )
    .await
    .map_err(|e| Step::Fail(OAuthError::from(e)))?;
    let external = external::fetch(
        &app.http,
        policy,
        external::Asking {
            client: &client.spec,
            subject: &user.subject,
            grant_type: ASSISTED_TOKEN,
            user_present: true,
            requested: asked.scope.as_deref(),
            now,
        },
    )
    .await;
    Ok(Signed {
        session,
        user,
        client,
        consents,
        external,
    })
}

/// `GET /assisted-token`.
async fn page(State(app): State<AppRef>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let now = app.now();
    let asked = parse(query.as_deref().unwrap_or_default());
    let (client, origins) = match client_of(&app, &asked.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let policy = app.policy();
    let signed = match signed(&app, &headers, &asked, client, &policy, now).await {
        Ok(s) => s,
        Err(step) => return carry_out(&asked, &origins, step),
    };
    let details = Value::Null;
    let decision = match consent::decision(&policy, &signed.facts(asked.ask(&details, now)), &[], now) {
        Ok(d) => d,
        Err(e) => return post_error(&origins, asked.mode, e),
    };
    let step = next_step::after_decision(
        &asked.ask(&details, now),
        &decision,
        &signed.session,
        &signed.user,
    );
    match step {
        Step::Issue => {
            finish(
                &app,
                &origins,
                asked.mode,
                &signed,
                &policy,
                &decision,
                AppendRequest::default(),
                now,
            )
            .await
        }
        Step::Consent if asked.mode == Mode::Popup => {
            consent_page(&app, &headers, &asked, &signed, &policy, &decision, now).await
        }
        other => carry_out(&asked, &origins, other),
    }
}

/// Carries out a step that issues nothing: in the popup, the sign-in pages; else the answer is posted.
fn carry_out(asked: &Asked, origins: &[String], step: Step) -> Response {
    let return_to = asked.return_to();
    match (asked.mode, step) {
        (Mode::Popup, Step::SignIn { again: false }) => redirect(&format!("/login?return_to={return_to}")),
        (Mode::Popup, Step::SignIn { again: true }) => {
            redirect(&format!("/login?prompt=login&return_to={return_to}"))
        }
        (Mode::Popup, Step::SecondFactor) => redirect(&format!("/login/totp?return_to={return_to}")),
        (mode, step) => {
            let answer = assisted::frame_answer(step);
            post_message(origins, mode, answer_message(&answer, None))
        }
    }
}

/// Issues the access token through the one pipeline (a delegation recorded with the assisted token
/// identifier, the user present; never a refresh token) and posts it.
#[allow(clippy::too_many_arguments)] // the request's facts, each already fetched, and its instant
async fn finish(
    app: &App,
    origins: &[String],
    mode: Mode,
    signed: &Signed,
    policy: &Policy,
    decision: &Decision,
    also: AppendRequest,
    now: i64,
) -> Response {
    let (delegation_id, created) = crate::delegations::create(crate::delegations::Creation {
        subject: &signed.user.subject,
        client_id: &signed.client.spec.client_id,
        scopes: &issue::granted(decision),
        authorization_details: &Value::Null,
        auth: &signed.session.auth,
        grant_type: ASSISTED_TOKEN,
        audience: &decision.audience,
        now,
    });
    let issued = async {
        let (token, recorded) = grants::prepare_access_token(
            app,
            policy,
            &signed.client,
            &signed.user.subject,
            GrantType::AssistedToken,
            decision,
            Some(delegation_id),
        )
        .await?;
        grants::record(app, also.and(created).and(recorded)).await?;
        Ok::<_, OAuthError>(token)
    }
    .await;
    match issued {
        Ok(token) => post_message(origins, mode, answer_message(&Answer::Token, Some(token))),
        Err(e) => post_error(origins, mode, e),
    }
}

/// The consent page, in the popup; its answer comes back to `POST /assisted-token/consent` with the
/// query it answers.
async fn consent_page(
    app: &App,
    headers: &HeaderMap,
    asked: &Asked,
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
        action: "/assisted-token/consent",
        field: "request",
        id: &asked.query,
        scopes: pending_lines(policy, decision),
        details: vec![],
        already: decision.scope_names(),
        binding_message: None,
    };
    let mut r = pages::render_with_csp(StatusCode::OK, &page, &pages::csp_with_form_action("'self'"));
    if let Some(c) = set_cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// `POST /assisted-token/consent`: the user's answer in the popup, scope by scope.
async fn consent_answer(
    State(app): State<AppRef>,
    headers: HeaderMap,
    form: Result<Form, OAuthError>,
) -> Response {
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
    let mut asked = parse(form.get("request").unwrap_or_default());
    asked.mode = Mode::Popup;
    let (client, origins) = match client_of(&app, &asked.client_id).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let policy = app.policy();
    let signed = match signed(&app, &headers, &asked, client, &policy, now).await {
        Ok(s) => s,
        Err(step) => return carry_out(&asked, &origins, step),
    };
    let details = Value::Null;
    let given = consent::Answer {
        approving: form.get("action") == Some("approve"),
        ticked: form
            .0
            .iter()
            .filter(|(k, v)| k.starts_with("scope.") && v.as_str() == "on")
            .map(|(k, _)| k["scope.".len()..].to_owned())
            .collect(),
    };
    let outcome = match consent::decide(&policy, &signed.facts(asked.ask(&details, now)), &given, now) {
        Ok(o) => o,
        Err(e) => return post_error(&origins, asked.mode, e),
    };
    let (decision, answered) = match outcome {
        // Not waiting for consent: go on as a fresh visit would.
        consent::Outcome::NotAsked(step) => return carry_out(&asked, &origins, step),
        consent::Outcome::Refused { answered } => (None, answered),
        consent::Outcome::Approved { decision, answered } => (Some(decision), answered),
    };
    let consents = issue::consent(issue::ConsentAnswer {
        subject: &signed.user.subject,
        client: &signed.client.spec,
        policy: &policy,
        approved: answered.approved,
        refused: answered.refused,
        authorization_details: &Value::Null,
        shown: shown(&policy, &answered.shown),
        now,
    });
    match decision {
        Some(decision) => {
            finish(
                &app, &origins, asked.mode, &signed, &policy, &decision, consents, now,
            )
            .await
        }
        None => {
            if let Err(e) = grants::record(&app, consents).await {
                return post_error(&origins, asked.mode, e);
            }
            post_error(
                &origins,
                asked.mode,
                OAuthError::AccessDenied("the user did not allow the request".into()),
            )
        }
    }
}
