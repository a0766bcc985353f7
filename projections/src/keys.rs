//! Public parts of the signing keys, and which one signs now.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Event, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Published, not yet signing.
    Added,
    /// Signing new tokens.
    Current,
    /// No longer signing; published until `publish_until`.
    Retired,
}

/// A signing key's public half.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub alg: String,
    pub public_jwk: Value,
    pub status: KeyStatus,
    pub added_at: UnixSeconds,
    pub activated_at: Option<UnixSeconds>,
    pub retired_at: Option<UnixSeconds>,
    pub publish_until: Option<UnixSeconds>,
}

impl Projection for SigningKey {
    const TABLE: &'static str = "signing_keys";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::SigningKeyAdded(e) => vec![&e.kid],
            Event::SigningKeyActivated(e) => vec![&e.kid],
            Event::SigningKeyRetired(e) => vec![&e.kid],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::SigningKeyAdded(e), None) => Some(SigningKey {
                kid: e.kid.clone(),
                alg: e.alg.clone(),
                public_jwk: e.public_jwk.clone(),
                status: KeyStatus::Added,
                added_at: e.at,
                activated_at: None,
                retired_at: None,
                publish_until: None,
            }),
            // A retired key never signs again.
            (Event::SigningKeyActivated(e), Some(k)) if k.status == KeyStatus::Added => Some(SigningKey {
                status: KeyStatus::Current,
                activated_at: Some(e.at),
                ..k
            }),
            (Event::SigningKeyRetired(e), Some(k)) if k.status != KeyStatus::Retired => Some(SigningKey {
                status: KeyStatus::Retired,
                retired_at: Some(e.at),
                publish_until: Some(e.publish_until),
                ..k
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex::default()
    }
}
