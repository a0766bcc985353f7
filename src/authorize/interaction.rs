//! Authorization requests waiting for the user (sign-in, step-up, consent) and pushed requests (PAR),
//! kept off the ledger: neither is a fact anyone audits, and both expire within minutes.
//!
//! Anyone can make the server keep a request (no sign-in comes first), so what is kept is bounded: each
//! request by `limits.stored_request_bytes_max` as stored, and each kind by `limits.pending_requests_max`
//! unexpired entries across all nodes. Expired entries are deleted on every insert
//! ([`crate::store::EventStore::off_ledger_put`]), so a flood can hold at most the cap times the size.

use std::collections::BTreeMap;

use projections::event::UnixSeconds;
use serde::{Deserialize, Serialize};

use super::request::AuthorizationRequest;
use crate::app::App;
use crate::store::StoreError;

const PENDING: &str = "authorize";
const PUSHED: &str = "par";
/// How long a user has to finish signing in and consenting.
pub const PENDING_SECONDS: i64 = 600;
/// How long a pushed request's `request_uri` can be used (RFC 9126 §2.2 suggests 5 to 600 seconds).
pub const PUSHED_SECONDS: i64 = 90;
/// The `request_uri` prefix RFC 9126 §2.2 defines.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

fn random_id() -> Result<String, StoreError> {
    crate::sessions::random_token()
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("authorization request: {e}"))
}

/// Why a request is not kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("the request is larger than the {0} bytes this server keeps")]
    TooLarge(usize),
    #[error("too many requests are waiting; try again later")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores `json` under a new id in `namespace` until `expires_at`, within the size and count bounds.
async fn store_bounded(
    app: &App,
    namespace: &str,
    json: &str,
    expires_at: UnixSeconds,
    now: UnixSeconds,
) -> Result<String, KeepError> {
    let limits = &app.config.limits;
    if json.len() > limits.stored_request_bytes_max {
        return Err(KeepError::TooLarge(limits.stored_request_bytes_max));
    }
    // Counted then stored, not atomically: concurrent inserts can pass the cap by at most the number of
    // requests in flight, which is itself bounded.
    if app.store.off_ledger_count(namespace, now).await? >= limits.pending_requests_max {
        return Err(KeepError::Full);
    }
    let id = random_id()?;
    app.store
        .off_ledger_put(namespace, &id, json, Some(expires_at), now)
        .await?;
    Ok(id)
}

/// Keeps a validated request for the pages that follow; returns its id.
pub async fn keep(app: &App, request: &AuthorizationRequest, now: UnixSeconds) -> Result<String, KeepError> {
    let json = serde_json::to_string(request).map_err(corrupt)?;
    store_bounded(app, PENDING, &json, now + PENDING_SECONDS, now).await
}

/// The request kept under `id`, while it has not expired.
pub async fn load(app: &App, id: &str, now: UnixSeconds) -> Result<Option<AuthorizationRequest>, StoreError> {
    match app.store.off_ledger_get(PENDING, id, now).await? {
        Some(json) => Ok(Some(serde_json::from_str(&json).map_err(corrupt)?)),
        None => Ok(None),
    }
}

/// Ends a kept request once it has been answered, so a second answer cannot follow.
pub async fn finish(
    app: &App,
    id: &str,
    now: UnixSeconds,
) -> Result<Option<AuthorizationRequest>, StoreError> {
    match app.store.off_ledger_take(PENDING, id, now).await? {
        Some(json) => Ok(Some(serde_json::from_str(&json).map_err(corrupt)?)),
        None => Ok(None),
    }
}

/// A pushed request: the client that pushed it and its parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pushed {
    pub client_id: String,
    pub params: BTreeMap<String, String>,
}

/// Stores a pushed request; returns its `request_uri`.
pub async fn push(app: &App, pushed: &Pushed, now: UnixSeconds) -> Result<String, KeepError> {
    let json = serde_json::to_string(pushed).map_err(corrupt)?;
    let id = store_bounded(app, PUSHED, &json, now + PUSHED_SECONDS, now).await?;
    Ok(format!("{REQUEST_URI_PREFIX}{id}"))
}

/// Takes the pushed request a `request_uri` names for `client_id`: each can be used once, and only by
/// the client that pushed it. Another client's attempt leaves it in place (RFC 9126 §4).
pub async fn take_pushed(
    app: &App,
    request_uri: &str,
    client_id: &str,
    now: UnixSeconds,
) -> Result<Option<Pushed>, StoreError> {
    let Some(id) = request_uri.strip_prefix(REQUEST_URI_PREFIX) else {
        return Ok(None);
    };
    let Some(json) = app.store.off_ledger_get(PUSHED, id, now).await? else {
        return Ok(None);
    };
    let pushed: Pushed = serde_json::from_str(&json).map_err(corrupt)?;
    if pushed.client_id != client_id {
        return Ok(None);
    }
    match app.store.off_ledger_take(PUSHED, id, now).await? {
        Some(json) => Ok(Some(serde_json::from_str(&json).map_err(corrupt)?)),
        None => Ok(None),
    }
}
