//! The pages where a signed-in user answers a request that waits for them away from the client: a
//! device's request (`/device`, RFC 8628) and a backchannel authentication request (`/approvals`, OpenID
//! CIBA). Both take the request through the same steps as `/authorize` (`authorize/next_step.rs`), the
//! same consent decision and page (`authorize/consent.rs`), and record the answer once on the request's
//! stream. What differs between the kinds of request is [`Pending`].

use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use projections::Event;
use projections::clients::Client;
use projections::consents::Consent;
use projections::event::{AuthContext, GrantedScope};
use projections::users::User;
use serde_json::{Value, json};

use super::authorize::{ConsentPage, client_kind, error_page, pending_lines, redirect, shown};
use crate::app::App;
use crate::authorize::next_step::{self, Ask, Step};
use crate::authorize::{consent, issue};
use crate::issuance::{Decision, Policy};
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::pages;
use crate::policy::external::{self, External};
use crate::sessions::{self, Session};
use crate::store::{self, AppendError, AppendRequest, ExpectedVersion, RowFilter};

/// What the pages say once a request is answered, per kind of request.
pub struct Texts {
    pub approved_title: &'static str,
    /// Follows "<client> may now use: <scopes>."
    pub approved_after: &'static str,
    pub denied_title: &'static str,
    /// Follows "<client> was refused access (<reason>)."
    pub denied_after: &'static str,
    /// When the request was answered already (by another tab, or another node).
    pub answered_title: &'static str,
    pub answered_message: &'static str,
}

/// The user's approval, as the request's `…Approved` event records it.
pub struct Approval {
    pub subject: String,
    pub auth: AuthContext,
    pub scopes: Vec<GrantedScope>,
    pub audience: Vec<String>,
    pub shown: Value,
    pub approved: Vec<String>,
    pub refused: Vec<String>,
    pub decision_trail: Value,
    pub policy_version: Option<String>,
    pub at: i64,
}

/// A refusal, as the request's `…Denied` event records it.
pub struct Denial {
    pub subject: String,
    pub shown: Value,
    pub refused: Vec<String>,
    pub reason: String,
    pub at: i64,
}

/// A kind of request waiting for its user's answer.
pub trait Pending: Sync {
    /// What the request asks the user, as an authorization request would.
    fn ask(&self) -> Ask<'_>;
    /// Where the consent form posts, the hidden field naming the request, and its value.
    fn form(&self) -> (&'static str, &'static str, &str);
    /// Where the sign-in and step-up pages send the user back to.
    fn back(&self) -> String;
    /// The event recording an approval, on the request's stream.
    fn approved(&self, approval: Approval) -> Event;
    /// The event recording a refusal, on the request's stream.
    fn denied(&self, denial: Denial) -> Event;
    fn texts(&self) -> &'static Texts;
    /// A message the client shows too, for the user to check before answering.
    fn binding_message(&self) -> Option<&str> {
        None
    }
    /// Called once the answer is durable (a ping to the client, say). Must not block.
    fn answered(&self, _app: &App, _client: &Client, _now: i64) {}
}

#[derive(Template)]
#[template(path = "device_done.html")]
struct DonePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page saying how a request ended.
pub fn done(status: StatusCode, title: &str, message: &str) -> Response {
    pages::render(status, &DonePage { title, message })
}

/// The answer to a form whose CSRF token did not check.
pub fn forbidden() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "invalid_request",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

/// A value in a query string.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The signed-in user and their account, or the redirect to sign in first and come back to `back`.
pub async fn signed_in(
    app: &App,
    headers: &HeaderMap,
    back: &str,
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
        _ => Err(redirect(&format!("/login?return_to={}", encode(back)))),
    }
}

/// The facts a decision on the page needs about the user and the client, fetched once.
pub struct Signed {
    pub session: Session,
    pub user: User,
    pub client: Client,
}

/// The signed-in user with the client that asks (`client_id`), which must be enabled.
pub async fn with_client(
    app: &App,
    session: Session,
    user: User,
    client_id: &str,
) -> Result<Signed, Response> {
    let client: Option<Client> = store::get(app.store.as_ref(), client_id)
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
    fn facts<'a>(&'a self, signed: &'a Signed, ask: Ask<'a>) -> consent::Facts<'a> {
        consent::Facts {
            request: ask,
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
    ask: &Ask<'_>,
    now: i64,
) -> Result<Fetched, OAuthError> {
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(&signed.user.subject),
            client_id: Some(ask.client_id),
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
            grant_type: ask.grant_type.name(),
            user_present: true,
            requested: ask.scope,
            now,
        },
    )
    .await;
    Ok(Fetched { consents, external })
}

/// Takes a pending request as far as it goes: a step-up, the consent page, or the answer.
pub async fn proceed<P: Pending>(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    pending: &P,
    now: i64,
) -> Response {
    let ask = pending.ask();
    if let Some(step) = next_step::authentication(&ask, Some(&signed.session), Some(&signed.user), now) {
        return carry_out(app, signed, pending, step, now).await;
    }
    let policy = app.policy();
    // A failure to read the facts is the server's, not an answer: the request stays pending.
    let fetched = match fetch(app, &policy, signed, &ask, now).await {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let decision = consent::decision(&policy, &fetched.facts(signed, pending.ask()), &[], now);
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return carry_out(app, signed, pending, Step::Fail(e), now).await,
    };
    match next_step::after_decision(&ask, &decision, &signed.session, &signed.user) {
        Step::Consent => consent_page(app, headers, signed, pending, &policy, &decision, now).await,
        Step::Issue => {
            let answered = Answered {
                shown: Value::Null,
                approved: vec![],
                refused: vec![],
            };
            approve(app, signed, pending, &policy, &decision, answered, now).await
        }
        other => carry_out(app, signed, pending, other, now).await,
    }
}

/// Records the user's refusal of a request they did not open: nothing was shown, no consent is recorded.
pub async fn refuse<P: Pending>(app: &App, signed: &Signed, pending: &P, now: i64) -> Response {
    deny(
        app,
        signed,
        pending,
        Value::Null,
        vec![],
        "the user refused",
        AppendRequest::default(),
        now,
    )
    .await
}

/// Carries out a step: to the sign-in or second-factor page and back, or a refusal recorded for the
/// client to hear.
async fn carry_out<P: Pending>(app: &App, signed: &Signed, pending: &P, step: Step, now: i64) -> Response {
    let encoded = encode(&pending.back());
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
                pending,
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

async fn consent_page<P: Pending>(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    pending: &P,
    policy: &Policy,
    decision: &Decision,
    now: i64,
) -> Response {
    let csrf = match super::csrf::token(app, headers, now).await {
        Ok((t, _)) => t,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    let (action, field, id) = pending.form();
    let page = ConsentPage {
        client_name: &signed.client.spec.name,
        client_kind: client_kind(&signed.client),
        username: &signed.user.username,
        csrf: &csrf,
        action,
        field,
        id,
        scopes: pending_lines(policy, decision),
        details: vec![],
        already: decision.scope_names(),
        binding_message: pending.binding_message(),
    };
    pages::render(StatusCode::OK, &page)
}

/// The user's answer on the consent page, scope by scope: settled and recorded, or, when the request
/// was not waiting for consent, taken on as a fresh visit would.
pub async fn answer<P: Pending>(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    pending: &P,
    form: &Form,
    now: i64,
) -> Response {
    let policy = app.policy();
    let ask = pending.ask();
    let fetched = match fetch(app, &policy, signed, &ask, now).await {
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
    let outcome = match consent::decide(&policy, &fetched.facts(signed, ask), &given, now) {
        Ok(o) => o,
        Err(e) => return carry_out(app, signed, pending, Step::Fail(e), now).await,
    };
    match outcome {
        // Not waiting for consent: go on as a fresh visit would, settling nothing from the form.
        consent::Outcome::NotAsked(_) => proceed(app, headers, signed, pending, now).await,
        consent::Outcome::Refused { answered } => {
            let shown_json = shown(&policy, &answered.shown);
            let consents = issue::consent(issue::ConsentAnswer {
                subject: &signed.user.subject,
                client: &signed.client.spec,
                policy: &policy,
                approved: vec![],
                refused: answered.refused.clone(),
                authorization_details: &Value::Null,
                shown: shown_json.clone(),
                now,
            });
            deny(
                app,
                signed,
                pending,
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
            approve(app, signed, pending, &policy, &decision, answered, now).await
        }
    }
}

/// What the page asked and how the user answered, as the events record it.
struct Answered {
    shown: Value,
    approved: Vec<String>,
    refused: Vec<String>,
}

/// Appends the answer to the request's stream, expecting only its request before it: a request is
/// answered once.
async fn answer_once<P: Pending>(
    app: &App,
    pending: &P,
    event: Event,
    also: AppendRequest,
) -> Result<(), Response> {
    let append = also.and(AppendRequest::to_stream(
        event.stream_id(),
        ExpectedVersion::Exact(1),
        vec![event],
    ));
    match app.store.append(append).await {
        Ok(_) => Ok(()),
        Err(AppendError::Conflict { .. }) => {
            let texts = pending.texts();
            Err(done(
                StatusCode::BAD_REQUEST,
                texts.answered_title,
                texts.answered_message,
            ))
        }
        Err(AppendError::Store(e)) => Err(error_page(&OAuthError::from(e))),
        Err(other) => Err(error_page(&OAuthError::internal("recording the answer", other))),
    }
}

async fn approve<P: Pending>(
    app: &App,
    signed: &Signed,
    pending: &P,
    policy: &Policy,
    decision: &Decision,
    answered: Answered,
    now: i64,
) -> Response {
    let consents = issue::consent(issue::ConsentAnswer {
        subject: &signed.user.subject,
        client: &signed.client.spec,
        policy,
        approved: answered.approved.clone(),
        refused: answered.refused.clone(),
        authorization_details: &Value::Null,
        shown: answered.shown.clone(),
        now,
    });
    let event = pending.approved(Approval {
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
    match answer_once(app, pending, event, consents).await {
        Ok(()) => {
            pending.answered(app, &signed.client, now);
            let texts = pending.texts();
            done(
                StatusCode::OK,
                texts.approved_title,
                &format!(
                    "{} may now use: {}.{}",
                    signed.client.spec.name,
                    decision.scope_names().join(", "),
                    texts.approved_after
                ),
            )
        }
        Err(r) => r,
    }
}

#[allow(clippy::too_many_arguments)] // the request's facts, what was shown and refused, and its instant
async fn deny<P: Pending>(
    app: &App,
    signed: &Signed,
    pending: &P,
    shown: Value,
    refused: Vec<String>,
    reason: &str,
    also: AppendRequest,
    now: i64,
) -> Response {
    let event = pending.denied(Denial {
        subject: signed.user.subject.clone(),
        shown,
        refused,
        reason: reason.to_owned(),
        at: now,
    });
    match answer_once(app, pending, event, also).await {
        Ok(()) => {
            pending.answered(app, &signed.client, now);
            let texts = pending.texts();
            done(
                StatusCode::OK,
                texts.denied_title,
                &format!(
                    "{} was refused access ({reason}).{}",
                    signed.client.spec.name, texts.denied_after
                ),
            )
        }
        Err(r) => r,
    }
}
