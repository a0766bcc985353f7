//! RFC 6749 §6: the refresh token grant, rotated on every use with reuse detection (RFC 9700 §4.14).

use projections::Event;
use projections::clients::Client;
use projections::event::{RefreshTokenIssued, UnixSeconds, V1};
use sha2::{Digest, Sha256};

use super::TokenResponse;
use crate::app::App;
use crate::oauth::OAuthError;
use crate::oauth::form::Form;
use crate::store::{AppendRequest, ExpectedVersion};

/// The stream a refresh token's events go to; its version is the rotation check.
pub fn stream(token_hash: &str) -> String {
    format!("refresh-{token_hash}")
}

/// SHA-256 (hex) of a refresh token's value: all the ledger ever holds of it.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// What a new refresh token belongs to.
#[derive(Debug, Clone)]
pub struct Minting<'a> {
    pub delegation_id: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: Vec<String>,
    pub now: UnixSeconds,
    pub lifetime_seconds: i64,
    /// The token this one replaces by rotation.
    pub parent_hash: Option<String>,
}

/// A fresh refresh token: its value (for the client, once) and the append that records its hash.
pub fn mint(m: Minting<'_>) -> Result<(String, AppendRequest), OAuthError> {
    let value = crate::clients::generate_secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let token_hash = hash(&value);
    let event = Event::RefreshTokenIssued(RefreshTokenIssued {
        v: V1,
        token_hash: token_hash.clone(),
        delegation_id: m.delegation_id.to_owned(),
        client_id: m.client_id.to_owned(),
        subject: m.subject.to_owned(),
        scopes: m.scopes,
        issued_at: m.now,
        expires_at: Some(m.now + m.lifetime_seconds),
        parent_hash: m.parent_hash,
    });
    Ok((
        value,
        AppendRequest::to_stream(stream(&token_hash), ExpectedVersion::NoStream, vec![event]),
    ))
}

/// Rotates a refresh token and issues a new access token from its delegation.
pub async fn grant(_app: &App, _client: &Client, _form: &Form) -> Result<TokenResponse, OAuthError> {
    Err(OAuthError::UnsupportedGrantType("refresh_token is not available yet".into()))
}
