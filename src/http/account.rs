//! The account page: what a signed-in user has allowed, and revoking it.
//!
//! `GET /account` lists the user's delegations (what each application holds now, scope by scope) and
//! consent decisions, newest first. Each live one has a revoke button: `POST
//! /account/delegations/{id}/revoke` appends `DelegationRevoked` (which ends its access and refresh tokens
//! at once), `POST /account/consents/{id}/revoke` appends `ConsentRevoked` (so the user is asked again).
//! Only the owner may revoke: someone else's id answers 404 and appends nothing. Every form carries the
//! CSRF token.

use std::collections::BTreeMap;
use std::fmt::Display;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::Event;
use projections::clients::Client;
use projections::consents::{Consent, Decision};
use projections::delegations::Delegation;
use projections::event::{ConsentRevoked, RevocationReason, UnixSeconds, V1};
use serde::Deserialize;

use super::csrf;
use crate::app::{App, AppRef};
use crate::authorize::details;
use crate::issuance::Policy;
use crate::pages;
use crate::sessions::{self, Session};
use crate::store::{self, AppendRequest, ExpectedVersion, RowFilter, StoreError};

/// Where the page lives.
const ACCOUNT: &str = "/account";
use crate::delegations::reason::REVOKED_BY_USER;

/// This module's routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route(ACCOUNT, get(account_page))
        .route("/account/delegations/{id}/revoke", post(revoke_delegation))
        .route("/account/consents/{id}/revoke", post(revoke_consent))
}

// ---- the page ----

/// One scope a delegation holds, as shown.
struct ScopeLine {
    name: String,
    description: String,
    /// "Until 2025-01-02 03:04 UTC", "Until revoked", or "Expired 2025-… UTC".
    until: String,
}

struct DelegationRow {
    id: String,
    client_name: String,
    scopes: Vec<ScopeLine>,
    details: Vec<String>,
    created: String,
    last_used: String,
    active: bool,
    /// "Active", "Expired", or "Revoked 2025-… UTC (by you)".
    status: String,
}

struct ConsentRow {
    id: String,
    client_name: String,
    scopes: Vec<ScopeLine>,
    granted: bool,
    given: String,
    expires: String,
    standing: bool,
    /// "Standing", "Expired", "Revoked 2025-… UTC", or "Not applicable" for a refusal.
    status: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    csrf: &'a str,
    delegations: Vec<DelegationRow>,
    consents: Vec<ConsentRow>,
}

/// A Unix time as UTC `YYYY-MM-DD HH:MM`.
pub fn format_time(t: UnixSeconds) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => t.to_string(),
    }
}

/// A time as the page shows it, zone included.
fn utc(t: UnixSeconds) -> String {
    format!("{} UTC", format_time(t))
}

/// Why a delegation ended, in words.
fn reason_text(reason: RevocationReason) -> String {
    match reason {
        RevocationReason::RevokedByUser => "by you".into(),
        RevocationReason::CodeReplay => "an authorization code was used twice".into(),
        RevocationReason::RefreshTokenRevoked => "the application gave up its access".into(),
        RevocationReason::RefreshTokenReuse => "a refresh token was used twice".into(),
        other => other.as_str().replace('_', " "),
    }
}

fn scope_description(policy: &Policy, scope: &str) -> String {
    policy
        .engine
        .find(scope)
        .map(|(d, _)| d.description.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| scope.to_owned())
}

fn until_text(expires_at: Option<UnixSeconds>, now: UnixSeconds) -> String {
    match expires_at {
        None => "Until revoked".into(),
        Some(t) if t <= now => format!("Expired {}", utc(t)),
        Some(t) => format!("Until {}", utc(t)),
    }
}

fn delegation_row(d: &Delegation, client_name: String, policy: &Policy, now: UnixSeconds) -> DelegationRow {
    let active = d.is_active_at(now);
    let status = match &d.revoked {
        Some(r) => format!("Revoked {} ({})", utc(r.at), reason_text(r.reason)),
        None if active => "Active".into(),
        None => "Expired".into(),
    };
    DelegationRow {
        id: d.delegation_id.clone(),
        client_name,
        scopes: d
            .scopes
            .iter()
            .map(|g| ScopeLine {
                name: g.scope.clone(),
                description: scope_description(policy, &g.scope),
                until: until_text(g.expires_at, now),
            })
            .collect(),
        details: details::describe(&d.authorization_details),
        created: utc(d.created_at),
        last_used: utc(d.last_used_at),
        active,
        status,
    }
}

fn consent_row(c: &Consent, client_name: String, policy: &Policy, now: UnixSeconds) -> ConsentRow {
    let granted = c.decision == Decision::Granted;
    let standing = c.is_standing_at(now);
    let status = match c.revoked_at {
        Some(at) => format!("Revoked {}", utc(at)),
        None if !granted => "Not in force (a refusal)".into(),
        None if standing => "In force".into(),
        None => "Expired".into(),
    };
    ConsentRow {
        id: c.consent_id.clone(),
        client_name,
        scopes: c
            .scopes
            .iter()
            .map(|s| ScopeLine {
                name: s.clone(),
                description: scope_description(policy, s),
                until: String::new(),
            })
            .collect(),
        granted,
        given: utc(c.given_at),
        expires: match (granted, c.expires_at) {
            (false, _) => "—".into(),
            (true, None) => "Until revoked".into(),
            (true, Some(t)) => utc(t),
        },
        standing,
        status,
    }
}

/// Client names by id, each read once.
async fn client_names<'a>(
    app: &App,
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut names = BTreeMap::new();
    for id in ids {
        if names.contains_key(id) {
            continue;
        }
        let name = store::get::<Client>(app.store.as_ref(), id)
            .await?
            .map(|c| c.spec.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| id.to_owned());
        names.insert(id.to_owned(), name);
    }
    Ok(names)
}

/// `GET /account`.
async fn account_page(State(app): State<AppRef>, headers: HeaderMap) -> Response {
    let now = app.now();
    let session = match sessions::current(&app, &headers, now).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_login(),
        Err(e) => return internal(e),
    };
    match render_account(&app, &headers, &session, now).await {
        Ok(r) => r,
        Err(e) => internal(e),
    }
}

async fn render_account(
    app: &App,
    headers: &HeaderMap,
    session: &Session,
    now: UnixSeconds,
) -> Result<Response, StoreError> {
    let mine = || RowFilter {
        subject: Some(&session.subject),
        ..RowFilter::default()
    };
    let mut delegations: Vec<Delegation> = store::find(app.store.as_ref(), mine()).await?;
    let mut consents: Vec<Consent> = store::find(app.store.as_ref(), mine()).await?;
    // The filter is an index lookup; keep only what is really this subject's.
    delegations.retain(|d| d.subject == session.subject);
    consents.retain(|c| c.subject == session.subject);
    // Newest first.
    delegations.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.created_position)));
    consents.sort_by_key(|c| std::cmp::Reverse((c.given_at, c.position)));
    let names = client_names(
        app,
        delegations
            .iter()
            .map(|d| d.client_id.as_str())
            .chain(consents.iter().map(|c| c.client_id.as_str())),
    )
    .await?;
    let name_of = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let policy = app.policy();
    let (token, set) = csrf::token(app, headers, now).await?;
    let page = AccountPage {
        username: &session.username,
        csrf: &token,
        delegations: delegations
            .iter()
            .map(|d| delegation_row(d, name_of(&d.client_id), &policy, now))
            .collect(),
        consents: consents
            .iter()
            .map(|c| consent_row(c, name_of(&c.client_id), &policy, now))
            .collect(),
    };
    let mut r = pages::render(StatusCode::OK, &page);
    if let Some(c) = set {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

// ---- revoking ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RevokeForm {
    csrf: Option<String>,
}

/// What the revoke handlers share: the CSRF check, then the session. `Err` is the response to give.
async fn signed_in_form(
    app: &App,
    headers: &HeaderMap,
    f: &RevokeForm,
    now: UnixSeconds,
) -> Result<Session, Response> {
    if !csrf::check(app, headers, f.csrf.as_deref(), now).await {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "This form has expired or was not sent from this site. Go back, reload the page and try again.",
        ));
    }
    match sessions::current(app, headers, now).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(to_login()),
        Err(e) => Err(internal(e)),
    }
}

fn not_found() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such grant on your account. It may belong to someone else, or the link is wrong.",
    )
}

async fn append_as(app: &App, session: &Session, request: AppendRequest) -> Response {
    let request = request.with_metadata(projections::Metadata {
        actor: Some(format!("user:{}", session.subject)),
        ..Default::default()
    });
    match app.store.append(request).await {
        Ok(_) => see_other(ACCOUNT),
        Err(e) => internal(e),
    }
}

/// `POST /account/delegations/{id}/revoke`.
async fn revoke_delegation(
    State(app): State<AppRef>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RevokeForm>,
) -> Response {
    let now = app.now();
    let session = match signed_in_form(&app, &headers, &f, now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let delegation = match store::get::<Delegation>(app.store.as_ref(), &id).await {
        Ok(Some(d)) if d.subject == session.subject => d,
        Ok(_) => return not_found(),
        Err(e) => return internal(e),
    };
    if delegation.revoked.is_some() {
        // Already ended (another tab, a replayed code): nothing more to record.
        return see_other(ACCOUNT);
    }
    let request = crate::delegations::revoke(
        &delegation.delegation_id,
        REVOKED_BY_USER,
        ExpectedVersion::Any,
        now,
    );
    append_as(&app, &session, request).await
}

/// `POST /account/consents/{id}/revoke`.
async fn revoke_consent(
    State(app): State<AppRef>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RevokeForm>,
) -> Response {
    let now = app.now();
    let session = match signed_in_form(&app, &headers, &f, now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let consent = match store::get::<Consent>(app.store.as_ref(), &id).await {
        Ok(Some(c)) if c.subject == session.subject => c,
        Ok(_) => return not_found(),
        Err(e) => return internal(e),
    };
    if consent.revoked_at.is_some() {
        return see_other(ACCOUNT);
    }
    let event = Event::ConsentRevoked(ConsentRevoked {
        v: V1,
        consent_id: consent.consent_id.clone(),
        at: now,
    });
    let request = AppendRequest::to_stream(
        projections::event::streams::consent(&consent.consent_id),
        ExpectedVersion::Any,
        vec![event],
    );
    append_as(&app, &session, request).await
}

// ---- responses ----

/// A 303 to a local path.
fn see_other(location: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let headers = r.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::LOCATION, HeaderValue::from_static(location));
    r
}

/// Signing in first, then back here.
fn to_login() -> Response {
    see_other("/login?return_to=%2Faccount")
}

fn internal(e: impl Display) -> Response {
    tracing::error!(error = %e, "account page failed");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "Something went wrong on our side. Try again in a moment.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(until_text(None, 0), "Until revoked");
        assert_eq!(until_text(Some(60), 0), "Until 1970-01-01 00:01 UTC");
        assert_eq!(until_text(Some(60), 60), "Expired 1970-01-01 00:01 UTC");
    }

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(reason_text(REVOKED_BY_USER), "by you");
        assert_eq!(reason_text(RevocationReason::ClientRequest), "client request");
    }
}
