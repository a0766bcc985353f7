//! The events that begin and end a delegation, whichever grant or page causes them.

use projections::Event;
use projections::event::{
    AuthContext, DelegationCreated, DelegationRevoked, GrantedScope, RevocationReason, UnixSeconds, V1,
};
use serde_json::Value;

use crate::store::{AppendRequest, ExpectedVersion};

/// Why a delegation ended, as `DelegationRevoked.reason` records it.
pub mod reason {
    use projections::event::RevocationReason;

    /// A code was redeemed a second time.
    pub const CODE_REPLAY: RevocationReason = RevocationReason::CodeReplay;
    /// A rotated refresh token was presented again, past any grace window.
    pub const REFRESH_TOKEN_REUSE: RevocationReason = RevocationReason::RefreshTokenReuse;
    /// The client revoked its refresh token (RFC 7009).
    pub const REFRESH_TOKEN_REVOKED: RevocationReason = RevocationReason::RefreshTokenRevoked;
    /// The user revoked it on `/account`.
    pub const REVOKED_BY_USER: RevocationReason = RevocationReason::RevokedByUser;
}

/// The stream of a delegation's own events.
pub fn stream(delegation_id: &str) -> String {
    projections::event::streams::delegation(delegation_id)
}

/// What a new delegation holds and how it came to be.
#[derive(Debug, Clone, Copy)]
pub struct Creation<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [GrantedScope],
    pub authorization_details: &'a Value,
    pub auth: &'a AuthContext,
    pub grant_type: &'a str,
    /// The RFC 8707 audiences granted.
    pub audience: &'a [String],
    pub now: UnixSeconds,
}

/// A new delegation: its id and the append that creates it.
pub fn create(c: Creation<'_>) -> (String, AppendRequest) {
    let id = crate::ids::id();
    let event = Event::DelegationCreated(DelegationCreated {
        v: V1,
        delegation_id: id.clone(),
        subject: c.subject.to_owned(),
        client_id: c.client_id.to_owned(),
        scopes: c.scopes.to_vec(),
        authorization_details: c.authorization_details.clone(),
        claims: Value::Null,
        auth: c.auth.clone(),
        grant_type: c.grant_type.to_owned(),
        at: c.now,
        audience: c.audience.to_vec(),
    });
    let request = AppendRequest::to_stream(stream(&id), ExpectedVersion::NoStream, vec![event]);
    (id, request)
}

/// The append that ends `delegation_id` for `reason`; `expected` lets concurrent enders record it once.
pub fn revoke(
    delegation_id: &str,
    reason: RevocationReason,
    expected: ExpectedVersion,
    now: UnixSeconds,
) -> AppendRequest {
    AppendRequest::to_stream(
        stream(delegation_id),
        expected,
        vec![Event::DelegationRevoked(DelegationRevoked {
            v: V1,
            delegation_id: delegation_id.to_owned(),
            reason,
            at: now,
        })],
    )
}
