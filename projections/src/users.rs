//! Local user accounts, by username. Credentials (password hashes, TOTP secrets) never enter the ledger.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Event, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// A user as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// The stable `sub` tokens carry.
    pub subject: String,
    pub attributes: Value,
    pub has_password: bool,
    pub totp_enabled: bool,
    pub created_at: UnixSeconds,
    pub disabled: Option<String>,
}

impl User {
    /// Whether the user may sign in.
    pub fn is_enabled(&self) -> bool {
        self.disabled.is_none()
    }
}

impl Projection for User {
    const TABLE: &'static str = "users";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::UserRegistered(e) => vec![&e.username],
            Event::UserAttributesSet(e) => vec![&e.username],
            Event::UserPasswordSet(e) => vec![&e.username],
            Event::UserTotpEnrolled(e) => vec![&e.username],
            Event::UserTotpRemoved(e) => vec![&e.username],
            Event::UserDisabled(e) => vec![&e.username],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::UserRegistered(e), None) => Some(User {
                username: e.username.clone(),
                subject: e.subject.clone(),
                attributes: e.attributes.clone(),
                has_password: false,
                totp_enabled: false,
                created_at: e.at,
                disabled: None,
            }),
            (Event::UserAttributesSet(e), Some(u)) => Some(User {
                attributes: e.attributes.clone(),
                ..u
            }),
            (Event::UserPasswordSet(_), Some(u)) => Some(User {
                has_password: true,
                ..u
            }),
            (Event::UserTotpEnrolled(_), Some(u)) => Some(User {
                totp_enabled: true,
                ..u
            }),
            (Event::UserTotpRemoved(_), Some(u)) => Some(User {
                totp_enabled: false,
                ..u
            }),
            (Event::UserDisabled(e), Some(u)) if u.disabled.is_none() => Some(User {
                disabled: Some(e.reason.clone()),
                ..u
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            subject: Some(self.subject.clone()),
            client_id: None,
            delegation_id: None,
        }
    }
}
