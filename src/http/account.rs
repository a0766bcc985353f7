//! The account page: what a signed-in user has allowed, and taking it back.
//!
//! `GET /account` lists one entry per application with access: everything its live delegations allow
//! now (the union of their scopes, each with its furthest expiry), how and when it was granted, and one
//! "Remove access" (`POST /account/applications/{client_id}/remove`), which ends every live delegation
//! of that application and its standing consents in one append, so it must ask again. Delegations that
//! ended are listed below as history, with why. Consent decisions have their own list and revoke button
//! (`POST /account/consents/{id}/revoke`, `ConsentRevoked`); `POST /account/delegations/{id}/revoke`
//! ends a single delegation. Only the owner may revoke: someone else's id answers 404 and appends
//! nothing. Every form carries the CSRF token.

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
        .route(
            "/account/applications/{client_id}/remove",
            post(remove_application),
        )
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

/// A delegation that ended, in the history.
struct DelegationRow {
    client_name: String,
    scopes: Vec<ScopeLine>,
    created: String,
    /// "Expired", or "Revoked 2025-… UTC (by you)".
    status: String,
}

/// One application with access: what its live delegations allow together.
struct ApplicationRow {
    client_name: String,
    /// The form action that removes its access (the client id, percent-encoded).
    remove: String,
    scopes: Vec<ScopeLine>,
    details: Vec<String>,
    /// How it was granted, in words ("signed in on this site, with your password").
    granted_via: String,
    first_granted: String,
    last_granted: String,
    last_used: String,
    /// Live delegations behind the entry.
    grants: usize,
}

struct ConsentRow {
    id: String,
    client_name: String,
    scopes: Vec<ScopeLine>,
    granted: bool,
    given: String,
    expires: String,
    standing: bool,
    /// "In force", "Expired 2025-… UTC", "Revoked 2025-… UTC", or "Not in force" for a refusal.
    status: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    csrf: &'a str,
    applications: Vec<ApplicationRow>,
    /// Delegations that ended (revoked or expired), newest first.
    history: Vec<DelegationRow>,
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
        created: utc(d.created_at),
        status,
    }
}

/// How a grant type reads to the person who granted it.
fn granted_via_text(grant_type: &str) -> &'static str {
    match grant_type {
        "authorization_code" | "implicit" => "signed in on this site",
        "password" => "with your password, in the application",
        "urn:ietf:params:oauth:grant-type:device_code" => "on another device, with a code",
        "urn:openid:params:grant-type:ciba" => "approved on your approvals page",
        crate::grants::ASSISTED_TOKEN => "signed in on this site, for a web application",
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => "vouched for by a trusted service",
        "urn:ietf:params:oauth:grant-type:token-exchange" => "passed on by another application",
        _ => "another way",
    }
}

/// One entry per application from the user's delegations (newest first): the live ones merged, in the
/// order of their newest grant; the ended ones returned apart as history. Pure.
fn applications(
    delegations: &[Delegation],
    name_of: &dyn Fn(&str) -> String,
    policy: &Policy,
    now: UnixSeconds,
) -> (Vec<ApplicationRow>, Vec<DelegationRow>) {
    let mut order: Vec<&str> = Vec::new();
    let mut live: BTreeMap<&str, Vec<&Delegation>> = BTreeMap::new();
    let mut history = Vec::new();
    for d in delegations {
        if d.is_active_at(now) {
            if !live.contains_key(d.client_id.as_str()) {
                order.push(&d.client_id);
            }
            live.entry(&d.client_id).or_default().push(d);
        } else {
            history.push(delegation_row(d, name_of(&d.client_id), policy, now));
        }
    }
    let rows = order
        .into_iter()
        .filter_map(|client_id| live.get(client_id).map(|ds| (client_id, ds)))
        .map(|(client_id, ds)| {
            // Each scope once, living as long as the longest-lived grant of it.
            let mut scopes: Vec<(&str, Option<UnixSeconds>)> = Vec::new();
            let mut details: Vec<String> = Vec::new();
            let mut via: Vec<&str> = Vec::new();
            for d in ds {
                for g in d.scopes_at(now) {
                    match scopes.iter_mut().find(|(name, _)| *name == g.scope) {
                        Some((_, until)) => {
                            *until = match (*until, g.expires_at) {
                                (Some(a), Some(b)) => Some(a.max(b)),
                                _ => None,
                            }
                        }
                        None => scopes.push((&g.scope, g.expires_at)),
                    }
                }
                for line in details::describe(&d.authorization_details) {
                    if !details.contains(&line) {
                        details.push(line);
                    }
                }
                let how = granted_via_text(&d.grant_type);
                if !via.contains(&how) {
                    via.push(how);
                }
            }
            let first = ds.iter().map(|d| d.created_at).min().unwrap_or_default();
            let last = ds.iter().map(|d| d.created_at).max().unwrap_or_default();
            let used = ds.iter().map(|d| d.last_used_at).max().unwrap_or_default();
            ApplicationRow {
                client_name: name_of(client_id),
                remove: format!(
                    "/account/applications/{}/remove",
                    form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>()
                ),
                scopes: scopes
                    .into_iter()
                    .map(|(name, until)| ScopeLine {
                        name: name.to_owned(),
                        description: scope_description(policy, name),
                        until: until_text(until, now),
                    })
                    .collect(),
                details,
                granted_via: via.join(", "),
                first_granted: utc(first),
                last_granted: utc(last),
                last_used: utc(used),
                grants: ds.len(),
            }
        })
        .collect();
    (rows, history)
}

fn consent_row(c: &Consent, client_name: String, policy: &Policy, now: UnixSeconds) -> ConsentRow {
    let granted = c.decision == Decision::Granted;
    let standing = c.is_standing_at(now);
    let status = match (c.revoked_at, c.expires_at) {
        (Some(at), _) => format!("Revoked {}", utc(at)),
        _ if !granted => "Not in force (a refusal)".into(),
        _ if standing => "In force".into(),
        (None, Some(at)) => format!("Expired {}", utc(at)),
        (None, None) => "Expired".into(),
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
    let (applications, history) = applications(&delegations, &name_of, &policy, now);
    let page = AccountPage {
        username: &session.username,
        csrf: &token,
        applications,
        history,
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

/// `POST /account/applications/{client_id}/remove`: ends every live delegation of the application and
/// its standing consents, in one append, so it has no access and must ask again.
async fn remove_application(
    State(app): State<AppRef>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RevokeForm>,
) -> Response {
    let now = app.now();
    let session = match signed_in_form(&app, &headers, &f, now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = RowFilter {
        subject: Some(&session.subject),
        client_id: Some(&client_id),
        ..RowFilter::default()
    };
    let delegations: Vec<Delegation> = match store::find(app.store.as_ref(), filter).await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    let consents: Vec<Consent> = match store::find(app.store.as_ref(), filter).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let mine = |subject: &str, client: &str| subject == session.subject && client == client_id;
    let delegations: Vec<&Delegation> = delegations
        .iter()
        .filter(|d| mine(&d.subject, &d.client_id))
        .collect();
    if delegations.is_empty() {
        return not_found();
    }
    let ended = delegations
        .iter()
        .filter(|d| d.revoked.is_none())
        .map(|d| crate::delegations::revoke(&d.delegation_id, REVOKED_BY_USER, ExpectedVersion::Any, now));
    let withdrawn = consents
        .iter()
        .filter(|c| mine(&c.subject, &c.client_id) && c.is_standing_at(now))
        .map(|c| consent_revoked(c, now));
    match ended.chain(withdrawn).reduce(AppendRequest::and) {
        Some(request) => append_as(&app, &session, request).await,
        // Everything had ended already (another tab): nothing more to record.
        None => see_other(ACCOUNT),
    }
}

/// The append that withdraws a consent.
fn consent_revoked(consent: &Consent, now: UnixSeconds) -> AppendRequest {
    AppendRequest::to_stream(
        projections::event::streams::consent(&consent.consent_id),
        ExpectedVersion::Any,
        vec![Event::ConsentRevoked(ConsentRevoked {
            v: V1,
            consent_id: consent.consent_id.clone(),
            at: now,
        })],
    )
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
    append_as(&app, &session, consent_revoked(&consent, now)).await
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

    fn delegation(id: &str, client: &str, created: i64, scopes: &[(&str, Option<i64>)]) -> Delegation {
        Delegation {
            delegation_id: id.into(),
            subject: "sub-ann".into(),
            client_id: client.into(),
            scopes: scopes
                .iter()
                .map(|(s, e)| projections::event::GrantedScope {
                    scope: (*s).into(),
                    expires_at: *e,
                })
                .collect(),
            authorization_details: serde_json::Value::Null,
            claims: serde_json::Value::Null,
            auth: Default::default(),
            grant_type: "authorization_code".into(),
            created_at: created,
            created_position: 1,
            last_used_at: created,
            revoked: None,
            audience: vec![],
        }
    }

    #[test]
    fn an_application_is_one_entry_with_everything_its_live_grants_allow() {
        let policy = crate::policy::authorizers::testing::policy(
            "[[scopes]]\nname = \"read\"\ndescription = \"Read\"\n[[scopes]]\nname = \"write\"\n",
        );
        let now = 1_000;
        let mut device = delegation("d2", "app", 900, &[("read", Some(5_000))]);
        device.grant_type = "urn:ietf:params:oauth:grant-type:device_code".into();
        let mut ended = delegation("d0", "app", 100, &[("write", None)]);
        ended.revoked = Some(projections::delegations::Revocation {
            at: 200,
            reason: REVOKED_BY_USER,
        });
        // Newest first, as the page reads them
        let given = vec![
            delegation("d3", "other", 950, &[("read", None)]),
            device,
            delegation(
                "d1",
                "app",
                500,
                &[("read", Some(2_000)), ("write", None), ("gone", Some(600))],
            ),
            ended,
        ];
        let name_of = |id: &str| id.to_uppercase();
        let (apps, history) = applications(&given, &name_of, &policy, now);
        assert_eq!(
            apps.iter().map(|a| a.client_name.as_str()).collect::<Vec<_>>(),
            ["OTHER", "APP"]
        );
        let app = &apps[1];
        // Each scope once, living as long as its longest grant; an expired one is not "now"
        let scopes: Vec<(&str, &str)> = app
            .scopes
            .iter()
            .map(|s| (s.name.as_str(), s.until.as_str()))
            .collect();
        assert_eq!(
            scopes,
            [("read", "Until 1970-01-01 01:23 UTC"), ("write", "Until revoked")]
        );
        assert_eq!(app.grants, 2);
        assert_eq!(app.first_granted, utc(500));
        assert_eq!(app.last_granted, utc(900));
        assert_eq!(
            app.granted_via,
            "on another device, with a code, signed in on this site"
        );
        assert_eq!(app.remove, "/account/applications/app/remove");
        assert_eq!(history.len(), 1);
        assert!(history[0].status.starts_with("Revoked") && history[0].status.contains("by you"));
    }

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(reason_text(REVOKED_BY_USER), "by you");
        assert_eq!(reason_text(RevocationReason::ClientRequest), "client request");
    }
}
