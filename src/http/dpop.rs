//! DPoP (RFC 9449) at the HTTP edge: reads a request's proof, checks it by the pure rules
//! (`oauth::dpop`) with the nonces accepted now, and claims its `jti` once in the shared store, so a
//! proof is good for one request across every node. Also hands out the server's nonces.
//!
//! Checking and claiming are two steps: an endpoint checks first (a proof refused for want of a nonce
//! must not use up anything the client will present again) and claims once the caller is known (a
//! client, or the holder of an active token), so strangers cannot make the server store proof ids.
//!
//! Nonces are stateless: HMAC-SHA256 of the current time slot under a key kept off the ledger and
//! shared by every node (as the CSRF key is), so a nonce one node gave out is accepted by another.

use axum::http::{HeaderMap, HeaderValue};
use projections::event::UnixSeconds;

use crate::app::App;
use crate::oauth::OAuthError;
use crate::oauth::dpop::{self, Expected, ProofError};

/// Where the nonce key lives off the ledger.
const NONCE_KEY_NAME: &str = "dpop-nonce-hmac-sha256";

/// The nonce to give out now and the ones accepted now.
async fn nonces(app: &App, now: UnixSeconds) -> Result<(String, [String; 2]), OAuthError> {
    let key = super::csrf::shared_key(app, &app.dpop_nonce_key, NONCE_KEY_NAME, now).await?;
    Ok(dpop::nonces(key, now, app.config.dpop.nonce_lifetime_seconds))
}

/// The `DPoP-Nonce` value every answer of a DPoP endpoint carries when the server requires nonces.
pub async fn nonce_header(app: &App, now: UnixSeconds) -> Result<Option<HeaderValue>, OAuthError> {
    if !app.config.dpop.require_nonce {
        return Ok(None);
    }
    let (current, _) = nonces(app, now).await?;
    HeaderValue::from_str(&current)
        .map(Some)
        .map_err(|e| OAuthError::internal("DPoP nonce", e))
}

/// The request's DPoP proof, checked against `method` and `url` (and, at a resource, the
/// `access_token` it comes with); `None` when the request carries none. Not yet [`claim`]ed.
pub async fn check(
    app: &App,
    headers: &HeaderMap,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    now: UnixSeconds,
) -> Result<Option<dpop::Proof>, OAuthError> {
    let Some(proof) = dpop::header(headers)? else {
        return Ok(None);
    };
    let settings = &app.config.dpop;
    let accepted = match settings.require_nonce {
        true => Some(nonces(app, now).await?.1),
        false => None,
    };
    let proof = dpop::validate(
        proof,
        &Expected {
            method,
            url,
            access_token,
            nonces: accepted.as_ref().map(|a| a.as_slice()),
            lifetime_seconds: settings.proof_lifetime_seconds,
        },
        now,
    )?;
    Ok(Some(proof))
}

/// Uses `proof` up: refused when it (its `jti`, for its key) was presented before, on any node.
pub async fn claim(app: &App, proof: &dpop::Proof, now: UnixSeconds) -> Result<(), OAuthError> {
    let lifetime = app.config.dpop.proof_lifetime_seconds;
    let first_use = app
        .store
        .claim_once(&proof.replay_key(), proof.remember_until(lifetime), now)
        .await?;
    if !first_use {
        return Err(ProofError::Replayed.into());
    }
    Ok(())
}
