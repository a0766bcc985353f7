//! Standing grants from a subject to a client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{AuthContext, Event, GrantedScope, RecordedEvent, RevocationReason, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Why and when a delegation ended early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: RevocationReason,
    pub at: UnixSeconds,
}

/// A delegation as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegation {
    pub delegation_id: String,
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<GrantedScope>,
    pub authorization_details: Value,
    pub claims: Value,
    pub auth: AuthContext,
    pub grant_type: String,
    pub created_at: UnixSeconds,
    /// Position of the `DelegationCreated` event.
    pub created_position: u64,
    pub last_used_at: UnixSeconds,
    pub revoked: Option<Revocation>,
    /// The audiences granted (empty for delegations recorded before audiences were).
    #[serde(default)]
    pub audience: Vec<String>,
}

impl Delegation {
    /// Scopes still held at `now`: not revoked, not past their own expiry.
    pub fn scopes_at(&self, now: UnixSeconds) -> impl Iterator<Item = &GrantedScope> {
        let live = self.revoked.is_none();
        self.scopes
            .iter()
            .filter(move |s| live && s.expires_at.is_none_or(|exp| now < exp))
    }

    /// Active at `now`: not revoked and holding at least one unexpired scope.
    pub fn is_active_at(&self, now: UnixSeconds) -> bool {
        self.scopes_at(now).next().is_some()
    }
}

impl Projection for Delegation {
    const TABLE: &'static str = "delegations";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::DelegationCreated(e) => vec![&e.delegation_id],
            Event::DelegationScopesChanged(e) => vec![&e.delegation_id],
            Event::DelegationRevoked(e) => vec![&e.delegation_id],
            Event::TokenIssued(e) => e.delegation_id.as_deref().into_iter().collect(),
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::DelegationCreated(e), None) => Some(Delegation {
                delegation_id: e.delegation_id.clone(),
                subject: e.subject.clone(),
                client_id: e.client_id.clone(),
                scopes: e.scopes.clone(),
                authorization_details: e.authorization_details.clone(),
                claims: e.claims.clone(),
                auth: e.auth.clone(),
                grant_type: e.grant_type.clone(),
                created_at: e.at,
                created_position: event.position,
                last_used_at: e.at,
                revoked: None,
                audience: e.audience.clone(),
            }),
            // A revoked delegation is final: nothing widens it again.
            (Event::DelegationScopesChanged(e), Some(d)) if d.revoked.is_none() => Some(Delegation {
                scopes: e.scopes.clone(),
                ..d
            }),
            (Event::DelegationRevoked(e), Some(d)) if d.revoked.is_none() => Some(Delegation {
                revoked: Some(Revocation {
                    reason: e.reason,
                    at: e.at,
                }),
                ..d
            }),
            (Event::TokenIssued(e), Some(d)) => Some(Delegation {
                last_used_at: d.last_used_at.max(e.issued_at),
                ..d
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            subject: Some(self.subject.clone()),
            client_id: Some(self.client_id.clone()),
            delegation_id: None,
        }
    }
}
