//! Authorization codes, by the SHA-256 of their value.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{AuthContext, Event, GrantedScope, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// An authorization code as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<GrantedScope>,
    pub audience: Vec<String>,
    pub authorization_details: Value,
    pub auth: AuthContext,
    /// Position of the `AuthorizationCodeIssued` event, whose decision trail the tokens cite.
    pub issued_position: u64,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// The delegation the code became, once redeemed; a second redemption is a replay.
    pub redeemed_into: Option<String>,
    /// When the authorization request arrived.
    #[serde(default)]
    pub requested_at: Option<UnixSeconds>,
    /// Whether the token request must repeat the `redirect_uri`.
    #[serde(default)]
    pub redirect_uri_in_request: bool,
}

impl Projection for AuthorizationCode {
    const TABLE: &'static str = "authorization_codes";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::AuthorizationCodeIssued(e) => vec![&e.code_hash],
            Event::AuthorizationCodeRedeemed(e) => vec![&e.code_hash],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::AuthorizationCodeIssued(e), None) => Some(AuthorizationCode {
                code_hash: e.code_hash.clone(),
                client_id: e.client_id.clone(),
                subject: e.subject.clone(),
                redirect_uri: e.redirect_uri.clone(),
                code_challenge: e.code_challenge.clone(),
                nonce: e.nonce.clone(),
                scopes: e.scopes.clone(),
                audience: e.audience.clone(),
                authorization_details: e.authorization_details.clone(),
                auth: e.auth.clone(),
                issued_position: event.position,
                issued_at: e.issued_at,
                expires_at: e.expires_at,
                redeemed_into: None,
                requested_at: e.requested_at,
                redirect_uri_in_request: e.redirect_uri_in_request,
            }),
            (Event::AuthorizationCodeRedeemed(e), Some(c)) if c.redeemed_into.is_none() => {
                Some(AuthorizationCode {
                    redeemed_into: Some(e.delegation_id.clone()),
                    ..c
                })
            }
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            subject: Some(self.subject.clone()),
            client_id: Some(self.client_id.clone()),
            delegation_id: self.redeemed_into.clone(),
        }
    }
}
