//! The events an answered authorization request becomes: the user's consent decisions, and the code (or,
//! for implicit, the delegation) carrying what was decided while the user was present.

use projections::Event;
use projections::event::{
    AuthContext, AuthorizationCodeIssued, ConsentDenied, ConsentGranted, GrantedScope, UnixSeconds, V1,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::request::AuthorizationRequest;
use crate::issuance::Decision;
use crate::oauth::OAuthError;
use crate::store::{AppendRequest, ExpectedVersion};

/// How long an authorization code can be redeemed.
pub const CODE_SECONDS: i64 = 60;

/// The stream of a code's events; its version makes redemption single-use.
pub fn code_stream(code_hash: &str) -> String {
    projections::event::streams::code(code_hash)
}

/// SHA-256 (hex) of a code: all the ledger holds of it.
pub fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// The scopes a decision issues, as a delegation holds them.
pub fn granted(decision: &Decision) -> Vec<GrantedScope> {
    decision
        .scopes
        .iter()
        .map(|s| GrantedScope {
            scope: s.scope.clone(),
            expires_at: s.expires_at,
        })
        .collect()
}

/// Who is answering and how they signed in.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub request: &'a AuthorizationRequest,
    pub subject: &'a str,
    pub auth: &'a AuthContext,
    pub policy_version: &'a str,
    pub now: UnixSeconds,
}

/// A new code for `decision` and the append recording its hash.
pub fn code(answer: Answer<'_>, decision: &Decision) -> Result<(String, AppendRequest), OAuthError> {
    let code = crate::ids::secret().map_err(|e| OAuthError::internal("randomness", e))?;
    let hash = code_hash(&code);
    let r = answer.request;
    let event = Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
        v: V1,
        code_hash: hash.clone(),
        client_id: r.client_id.clone(),
        subject: answer.subject.to_owned(),
        redirect_uri: r.target.redirect_uri.clone(),
        code_challenge: r.code_challenge.clone(),
        nonce: r.nonce.clone(),
        scopes: granted(decision),
        audience: decision.audience.clone(),
        authorization_details: r.authorization_details.clone(),
        auth: answer.auth.clone(),
        decision_trail: json!({ "scopes": decision.trail }),
        policy_version: Some(answer.policy_version.to_owned()),
        issued_at: answer.now,
        expires_at: answer.now + CODE_SECONDS,
        requested_at: Some(r.created_at),
        redirect_uri_in_request: r.redirect_uri_given,
    });
    Ok((
        code,
        AppendRequest::to_stream(code_stream(&hash), ExpectedVersion::NoStream, vec![event]),
    ))
}

/// What the user decided on the consent page: approval of some scopes, refusal of the rest, and what the
/// page showed them. Empty lists record nothing.
#[derive(Debug, Clone)]
pub struct ConsentAnswer<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub approved: Vec<String>,
    pub refused: Vec<String>,
    pub authorization_details: &'a Value,
    pub shown: Value,
    pub now: UnixSeconds,
}

/// The `ConsentGranted` / `ConsentDenied` events for a consent page answer.
pub fn consent(answer: ConsentAnswer<'_>) -> AppendRequest {
    let mut out = AppendRequest::default();
    let mut add = |event: Event, id: &str| {
        out = std::mem::take(&mut out).and(AppendRequest::to_stream(
            projections::event::streams::consent(id),
            ExpectedVersion::NoStream,
            vec![event],
        ));
    };
    if !answer.approved.is_empty() {
        let id = crate::ids::id();
        add(
            Event::ConsentGranted(ConsentGranted {
                v: V1,
                consent_id: id.clone(),
                subject: answer.subject.to_owned(),
                client_id: answer.client_id.to_owned(),
                scopes: answer.approved,
                authorization_details: answer.authorization_details.clone(),
                expires_at: None,
                at: answer.now,
                shown: answer.shown,
            }),
            &id,
        );
    }
    if !answer.refused.is_empty() {
        let id = crate::ids::id();
        add(
            Event::ConsentDenied(ConsentDenied {
                v: V1,
                consent_id: id.clone(),
                subject: answer.subject.to_owned(),
                client_id: answer.client_id.to_owned(),
                scopes: answer.refused,
                at: answer.now,
            }),
            &id,
        );
    }
    out
}
