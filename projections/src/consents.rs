//! A subject's recorded decisions about scopes for a client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Event, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Approval or refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Granted,
    Denied,
}

/// One consent decision as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub consent_id: String,
    pub subject: String,
    pub client_id: String,
    pub decision: Decision,
    pub scopes: Vec<String>,
    pub authorization_details: Value,
    pub given_at: UnixSeconds,
    /// Position of the event that recorded the decision; the decision trail cites it.
    pub position: u64,
    /// When a grant stops counting; `None` stands until revoked. Compared with the `now` of each
    /// question ([`Consent::is_standing_at`]): nothing is recorded when it passes.
    pub expires_at: Option<UnixSeconds>,
    pub revoked_at: Option<UnixSeconds>,
}

impl Consent {
    /// A grant that is neither revoked nor expired at `now`.
    pub fn is_standing_at(&self, now: UnixSeconds) -> bool {
        self.decision == Decision::Granted
            && self.revoked_at.is_none()
            && self.expires_at.is_none_or(|exp| now < exp)
    }
}

impl Projection for Consent {
    const TABLE: &'static str = "consents";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::ConsentGranted(e) => vec![&e.consent_id],
            Event::ConsentDenied(e) => vec![&e.consent_id],
            Event::ConsentRevoked(e) => vec![&e.consent_id],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::ConsentGranted(e), None) => Some(Consent {
                consent_id: e.consent_id.clone(),
                subject: e.subject.clone(),
                client_id: e.client_id.clone(),
                decision: Decision::Granted,
                scopes: e.scopes.clone(),
                authorization_details: e.authorization_details.clone(),
                given_at: e.at,
                position: event.position,
                expires_at: e.expires_at,
                revoked_at: None,
            }),
            (Event::ConsentDenied(e), None) => Some(Consent {
                consent_id: e.consent_id.clone(),
                subject: e.subject.clone(),
                client_id: e.client_id.clone(),
                decision: Decision::Denied,
                scopes: e.scopes.clone(),
                authorization_details: Value::Null,
                given_at: e.at,
                position: event.position,
                expires_at: None,
                revoked_at: None,
            }),
            (Event::ConsentRevoked(e), Some(c)) if c.revoked_at.is_none() => Some(Consent {
                revoked_at: Some(e.at),
                ..c
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
