//! The issuers whose assertions the server trusts, by issuer identifier, as the ledger last recorded them.

use serde::{Deserialize, Serialize};

use crate::event::{Event, RecordedEvent, TrustedIssuerSettings, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// One issuer's recorded trust. A removed issuer keeps its row, with `removed_at` set, so its history
/// stays readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedIssuer {
    pub settings: TrustedIssuerSettings,
    pub configured_at: UnixSeconds,
    /// The ledger position of the event that recorded these settings.
    pub position: u64,
    pub removed_at: Option<UnixSeconds>,
}

impl TrustedIssuer {
    /// Whether the issuer is trusted now (configured and not removed since).
    pub fn is_trusted(&self) -> bool {
        self.removed_at.is_none()
    }
}

impl Projection for TrustedIssuer {
    const TABLE: &'static str = "trusted_issuers";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::TrustedIssuerConfigured(e) => vec![&e.trust.issuer],
            Event::TrustedIssuerRemoved(e) => vec![&e.issuer],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            (Event::TrustedIssuerConfigured(e), _) => Some(TrustedIssuer {
                settings: e.trust.clone(),
                configured_at: e.at,
                position: event.position,
                removed_at: None,
            }),
            (Event::TrustedIssuerRemoved(e), Some(t)) if t.removed_at.is_none() => Some(TrustedIssuer {
                removed_at: Some(e.at),
                ..t
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex::default()
    }
}
