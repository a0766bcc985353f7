//! Issued JWTs, by `jti`.

use serde::{Deserialize, Serialize};

use crate::event::{Actor, Event, Party, RecordedEvent, TokenKind, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// An issued token as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub jti: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub subject: String,
    pub delegation_id: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub kid: String,
    pub grant_type: String,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// Position of the `TokenIssued` event, where its decision trail is.
    pub issued_position: u64,
    pub revoked_at: Option<UnixSeconds>,
    /// RFC 8693 `act`, as issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// RFC 8693 `may_act`, as issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<Party>,
    /// RFC 9449: the thumbprint of the DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

impl Projection for Token {
    const TABLE: &'static str = "tokens";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::TokenIssued(e) => vec![&e.jti],
            Event::TokenRevoked(e) => vec![&e.jti],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::TokenIssued(e), None) => Some(Token {
                jti: e.jti.clone(),
                kind: e.kind,
                client_id: e.client_id.clone(),
                subject: e.subject.clone(),
                delegation_id: e.delegation_id.clone(),
                scopes: e.scopes.clone(),
                audience: e.audience.clone(),
                kid: e.kid.clone(),
                grant_type: e.grant_type.clone(),
                issued_at: e.issued_at,
                expires_at: e.expires_at,
                issued_position: event.position,
                revoked_at: None,
                act: e.act.clone(),
                may_act: e.may_act.clone(),
                dpop_jkt: e.dpop_jkt.clone(),
            }),
            (Event::TokenRevoked(e), Some(t)) if t.revoked_at.is_none() => Some(Token {
                revoked_at: Some(e.at),
                ..t
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            subject: Some(self.subject.clone()),
            client_id: Some(self.client_id.clone()),
            delegation_id: self.delegation_id.clone(),
        }
    }
}
