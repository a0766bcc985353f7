//! OpenID CIBA Core 1.0's HTTP side: `POST /bc-authorize` for clients (§7), the page `GET/POST
//! /approvals` (with `POST /approvals/consent`) where the signed-in user finds the requests addressed to
//! them and answers on the same consent page, with the same decision and step-ups, as at `/device`
//! (`http/approval.rs`), and the ping to a ping-mode client once the user answered (§10.2). Every
//! decision is in `ciba/`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::Event;
use projections::backchannel::BackchannelRequest;
use projections::clients::Client;
use projections::event::{
    BackchannelAuthenticationApproved, BackchannelAuthenticationDenied, BackchannelDeliveryMode, V1,
};
use projections::users::User;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::approval::{self, Approval, Denial, Pending, Texts, done, forbidden, signed_in, with_client};
use super::authorize::error_page;
use super::client_auth::authenticate;
use super::login::{Peer, peer_of};
use super::rate_limit;
use crate::app::{App, AppRef};
use crate::authorize::next_step::Ask;
use crate::ciba::{self, Hint};
use crate::grants;
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::pages;
use crate::store::{self, AppendRequest, ExpectedVersion, RowFilter};

/// Each request's off-ledger record, by the hash of its `auth_req_id`, expiring with it: for a ping
/// client, the raw `auth_req_id` and the client's notification token (a bearer secret of the client,
/// never in an event); for a poll client, nothing. What `ciba.pending_requests_max` counts.
const NOTIFY: &str = "ciba-notify";

/// Most requests the approvals page lists at once.
const LISTED_MAX: usize = 20;
/// Ping attempts, the first included.
const PING_ATTEMPTS_MAX: u32 = 3;

/// The backchannel authentication endpoint and the approvals page.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/bc-authorize", post(bc_authorize))
        .route("/approvals", get(page).post(chosen))
        .route("/approvals/consent", post(answer))
}

/// What the ping needs, kept off the ledger until the request is answered.
#[derive(Serialize, Deserialize, Default)]
struct Notify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_req_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_notification_token: Option<String>,
}

/// `POST /bc-authorize` (CIBA Core §7.1–7.3).
async fn bc_authorize(
    State(app): State<AppRef>,
    peer: Peer,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, OAuthError> {
    let now = app.now();
    let endpoint = format!("{}/bc-authorize", app.config.issuer);
    let client = authenticate(&app, &headers, &form, &endpoint, now).await?;
    let limits = &app.config.limits;
    let requested = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let request = ciba::Request {
        scope: requested.as_deref(),
        login_hint: form.get("login_hint"),
        id_token_hint: form.get("id_token_hint"),
        login_hint_token: form.get("login_hint_token"),
        binding_message: form.get("binding_message"),
        user_code: form.get("user_code"),
        requested_expiry: form.get("requested_expiry"),
        client_notification_token: form.get("client_notification_token"),
    };
    let facts = fetch(&app, &request, now).await?;
    let settings = ciba::Settings {
        expiry_seconds: app.config.ciba.expiry_seconds,
        interval_seconds: app.config.ciba.interval_seconds,
    };
    let auth_req_id = crate::ids::secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let hash = ciba::hash(&auth_req_id);
    let policy = app.policy();
    let event = ciba::decide(&policy, &client, &request, &facts, settings, &hash, now)?;
    // Each address may have only so many requests waiting (per node), so one cannot take every place.
    let per_address = limits.pending_requests_per_address_max;
    let address = format!(
        "{}\0ciba",
        rate_limit::address_key(&app.config.issuer, peer_of(peer))
    );
    if per_address > 0
        && !rate_limit::kept_requests().reserve(&[&address], per_address, settings.expiry_seconds, now)
    {
        return Err(OAuthError::TemporarilyUnavailable);
    }
    // Counted then stored, like the device requests: concurrent requests can pass the cap by at most
    // the number in flight.
    if app.store.off_ledger_count(NOTIFY, now).await? >= app.config.ciba.pending_requests_max {
        return Err(OAuthError::TemporarilyUnavailable);
    }
    let notify = match event.mode {
        BackchannelDeliveryMode::Ping => Notify {
            auth_req_id: Some(auth_req_id.clone()),
            client_notification_token: request.client_notification_token.map(str::to_owned),
        },
        BackchannelDeliveryMode::Poll => Notify::default(),
    };
    let json = serde_json::to_string(&notify).map_err(|e| OAuthError::internal("ciba record", e))?;
    app.store
        .off_ledger_put(NOTIFY, &hash, &json, Some(event.expires_at), now)
        .await?;
    let (expires_at, interval) = (event.expires_at, event.interval);
    let recorded = Event::BackchannelAuthenticationRequested(event);
    grants::record(
        &app,
        AppendRequest::to_stream(recorded.stream_id(), ExpectedVersion::NoStream, vec![recorded]),
    )
    .await?;
    let mut r = axum::Json(json!({
        "auth_req_id": auth_req_id,
        "expires_in": expires_at - now,
        "interval": interval,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Reads what the hint names: the user of a `login_hint` (a username), or the ID token of an
/// `id_token_hint` (verified against this server's keys and its record) and its user. A request with no
/// usable hint reads nothing; the decision says why.
async fn fetch(app: &App, request: &ciba::Request<'_>, now: i64) -> Result<ciba::Facts, OAuthError> {
    let store = app.store.as_ref();
    match ciba::hint(request) {
        Ok(Hint::Login(name)) if name.len() <= app.config.limits.login_hint_bytes_max => Ok(ciba::Facts {
            id_token_audience: None,
            user: store::get::<User>(store, name).await?,
        }),
        Ok(Hint::IdToken(jwt)) => {
            let found = crate::access_tokens::find_id_token(store, &app.config.issuer, jwt, now).await?;
            match found {
                // A hint, not a credential: an expired ID token still names its user (CIBA Core §7.1).
                Some(f) => Ok(ciba::Facts {
                    user: crate::users::by_subject(store, &f.token.subject).await?,
                    id_token_audience: Some(f.token.audience),
                }),
                None => Ok(ciba::Facts::default()),
            }
        }
        _ => Ok(ciba::Facts::default()),
    }
}

/// A backchannel request as the approvals page handles it.
struct Backchannel<'a> {
    request: &'a BackchannelRequest,
}

static TEXTS: Texts = Texts {
    approved_title: "Request approved",
    approved_after: " You can return to the application.",
    denied_title: "Request refused",
    denied_after: " You can close this page.",
    answered_title: "This request was already answered",
    answered_message: "The request has already been answered.",
};

impl Pending for Backchannel<'_> {
    fn ask(&self) -> Ask<'_> {
        ciba::ask(self.request)
    }

    fn form(&self) -> (&'static str, &'static str, &str) {
        ("/approvals/consent", "request", &self.request.auth_req_id_hash)
    }

    fn back(&self) -> String {
        "/approvals".to_owned()
    }

    fn approved(&self, a: Approval) -> Event {
        Event::BackchannelAuthenticationApproved(BackchannelAuthenticationApproved {
            v: V1,
            auth_req_id_hash: self.request.auth_req_id_hash.clone(),
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
        Event::BackchannelAuthenticationDenied(BackchannelAuthenticationDenied {
            v: V1,
            auth_req_id_hash: self.request.auth_req_id_hash.clone(),
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

    fn binding_message(&self) -> Option<&str> {
        self.request.binding_message.as_deref()
    }

    /// Takes the request's off-ledger record and, in ping mode, pings the client in the background.
    fn answered(&self, app: &App, client: &Client, now: i64) {
        let store = app.store.clone();
        let hash = self.request.auth_req_id_hash.clone();
        let endpoint = match self.request.mode {
            BackchannelDeliveryMode::Ping => client.spec.backchannel_client_notification_endpoint.clone(),
            BackchannelDeliveryMode::Poll => None,
        };
        let timeout = std::time::Duration::from_secs(app.config.ciba.ping_timeout_seconds);
        tokio::spawn(async move {
            let notify = match store.off_ledger_take(NOTIFY, &hash, now).await {
                Ok(Some(json)) => serde_json::from_str::<Notify>(&json).unwrap_or_default(),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a backchannel request's notification record");
                    return;
                }
            };
            if let (Some(endpoint), Some(id), Some(token)) =
                (endpoint, notify.auth_req_id, notify.client_notification_token)
            {
                ping(&endpoint, &id, &token, timeout).await;
            }
        });
    }
}

/// CIBA Core §10.2: tells a ping client that its request was answered, at its registered endpoint only,
/// with its notification token as the bearer token. Redirects are not followed; a network failure or a
/// 5xx is tried again, at most [`PING_ATTEMPTS_MAX`] times with a growing pause. The token is never
/// logged.
async fn ping(endpoint: &str, auth_req_id: &str, token: &str, timeout: std::time::Duration) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "building the ping client");
            return;
        }
    };
    for attempt in 1..=PING_ATTEMPTS_MAX {
        let sent = client
            .post(endpoint)
            .bearer_auth(token)
            .json(&json!({ "auth_req_id": auth_req_id }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_server_error() => {
                tracing::warn!(status = %r.status(), attempt, "a CIBA ping was refused by the client");
            }
            Ok(r) => {
                if !r.status().is_success() {
                    tracing::warn!(status = %r.status(), "a CIBA ping was not accepted");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "a CIBA ping failed"),
        }
        if attempt < PING_ATTEMPTS_MAX {
            tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
        }
    }
}

/// One line of the approvals page.
struct Line {
    id: String,
    client_name: String,
    binding_message: Option<String>,
    scopes: String,
    time_left: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage<'a> {
    username: &'a str,
    csrf: &'a str,
    requests: Vec<Line>,
}

fn time_left(seconds: i64) -> String {
    match seconds {
        s if s >= 120 => format!("{} minutes", s / 60),
        s if s >= 60 => "1 minute".to_owned(),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

/// `GET /approvals`: the signed-in user's requests that wait for an answer, newest first.
async fn page(State(app): State<AppRef>, headers: HeaderMap) -> Response {
    let now = app.now();
    let (_, user) = match signed_in(&app, &headers, "/approvals", now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let found: Vec<BackchannelRequest> = match store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(&user.subject),
            ..RowFilter::default()
        },
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    let mut waiting: Vec<BackchannelRequest> = found
        .into_iter()
        .filter(|r| ciba::answerable(r, &user.subject, now))
        .collect();
    waiting.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
    waiting.truncate(LISTED_MAX);
    let mut requests = Vec::with_capacity(waiting.len());
    for r in waiting {
        let client: Option<Client> = match store::get(app.store.as_ref(), &r.client_id).await {
            Ok(c) => c,
            Err(e) => return error_page(&OAuthError::from(e)),
        };
        let Some(client) = client.filter(|c| c.is_enabled()) else {
            continue;
        };
        requests.push(Line {
            id: r.auth_req_id_hash,
            client_name: client.spec.name,
            binding_message: r.binding_message,
            scopes: r.scopes.join(", "),
            time_left: time_left(r.expires_at - now),
        });
    }
    let csrf = match super::csrf::token(&app, &headers, now).await {
        Ok((t, _)) => t,
        Err(e) => return error_page(&OAuthError::from(e)),
    };
    pages::render(
        StatusCode::OK,
        &ApprovalsPage {
            username: &user.username,
            csrf: &csrf,
            requests,
        },
    )
}

/// The request a form names, if the signed-in user may answer it now; else the page saying it is gone.
/// Another user's request is answered exactly as an unknown one.
async fn look_up(app: &App, user: &User, id: &str, now: i64) -> Result<BackchannelRequest, Response> {
    let found: Option<BackchannelRequest> = store::get(app.store.as_ref(), id)
        .await
        .map_err(|e| error_page(&OAuthError::from(e)))?;
    match found.filter(|r| ciba::answerable(r, &user.subject, now)) {
        Some(r) => Ok(r),
        None => Err(done(
            StatusCode::NOT_FOUND,
            "This request is no longer waiting",
            "It was answered, it expired, or it is not yours. Go back to your requests.",
        )),
    }
}

/// The signed-in user, the request the form names, and its client; or the page to show instead.
async fn from_form(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
    now: i64,
) -> Result<(approval::Signed, BackchannelRequest), Response> {
    if !super::csrf::check(app, headers, form.get(super::csrf::CSRF_FIELD), now).await {
        return Err(forbidden());
    }
    let (session, user) = signed_in(app, headers, "/approvals", now).await?;
    let request = look_up(app, &user, form.get("request").unwrap_or_default(), now).await?;
    let signed = with_client(app, session, user, &request.client_id).await?;
    Ok((signed, request))
}

/// `POST /approvals`: the user approves a request (on to its consent page when something needs asking)
/// or refuses it outright.
async fn chosen(State(app): State<AppRef>, headers: HeaderMap, form: Result<Form, OAuthError>) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    let (signed, request) = match from_form(&app, &headers, &form, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pending = Backchannel { request: &request };
    if form.get("action") == Some("deny") {
        return approval::refuse(&app, &signed, &pending, now).await;
    }
    approval::proceed(&app, &headers, &signed, &pending, now).await
}

/// `POST /approvals/consent`: the user's answer, scope by scope.
async fn answer(State(app): State<AppRef>, headers: HeaderMap, form: Result<Form, OAuthError>) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    let (signed, request) = match from_form(&app, &headers, &form, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pending = Backchannel { request: &request };
    approval::answer(&app, &headers, &signed, &pending, &form, now).await
}
