//! Refresh tokens, by the SHA-256 of their value.

use serde::{Deserialize, Serialize};

use crate::event::{Event, RecordedEvent, RevocationReason, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// Where a refresh token is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RefreshStatus {
    Active,
    /// Used once and replaced; presenting it again is reuse.
    Rotated {
        successor_hash: String,
        at: UnixSeconds,
    },
    Revoked {
        reason: RevocationReason,
        at: UnixSeconds,
    },
}

/// A refresh token as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub token_hash: String,
    pub delegation_id: String,
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub issued_at: UnixSeconds,
    pub expires_at: Option<UnixSeconds>,
    pub parent_hash: Option<String>,
    pub status: RefreshStatus,
    /// RFC 9449 §5: the thumbprint of the DPoP key this token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

impl Projection for RefreshToken {
    const TABLE: &'static str = "refresh_tokens";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::RefreshTokenIssued(e) => vec![&e.token_hash],
            Event::RefreshTokenRotated(e) => vec![&e.token_hash],
            Event::RefreshTokenRevoked(e) => vec![&e.token_hash],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::RefreshTokenIssued(e), None) => Some(RefreshToken {
                token_hash: e.token_hash.clone(),
                delegation_id: e.delegation_id.clone(),
                client_id: e.client_id.clone(),
                subject: e.subject.clone(),
                scopes: e.scopes.clone(),
                issued_at: e.issued_at,
                expires_at: e.expires_at,
                parent_hash: e.parent_hash.clone(),
                status: RefreshStatus::Active,
                dpop_jkt: e.dpop_jkt.clone(),
            }),
            (Event::RefreshTokenRotated(e), Some(t)) if t.status == RefreshStatus::Active => {
                Some(RefreshToken {
                    status: RefreshStatus::Rotated {
                        successor_hash: e.successor_hash.clone(),
                        at: e.at,
                    },
                    ..t
                })
            }
            (Event::RefreshTokenRevoked(e), Some(t))
                if !matches!(t.status, RefreshStatus::Revoked { .. }) =>
            {
                Some(RefreshToken {
                    status: RefreshStatus::Revoked {
                        reason: e.reason,
                        at: e.at,
                    },
                    ..t
                })
            }
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            subject: Some(self.subject.clone()),
            client_id: Some(self.client_id.clone()),
            delegation_id: Some(self.delegation_id.clone()),
        }
    }
}
