//! Registered clients.

use serde::{Deserialize, Serialize};

use crate::event::{ClientSpec, Event, RecordedEvent, UnixSeconds};
use crate::projection::{Projection, RowIndex};

/// A client as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    #[serde(flatten)]
    pub spec: ClientSpec,
    pub disabled: Option<Disabled>,
    pub registered_at: UnixSeconds,
    pub updated_at: UnixSeconds,
}

/// Why and when a client was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at: UnixSeconds,
}

impl Client {
    /// Whether the client may authenticate and its tokens count.
    pub fn is_enabled(&self) -> bool {
        self.disabled.is_none()
    }
}

impl Projection for Client {
    const TABLE: &'static str = "clients";

    fn touched(event: &Event) -> Vec<&str> {
        match event {
            Event::ClientRegistered(e) => vec![&e.client.client_id],
            Event::ClientUpdated(e) => vec![&e.client.client_id],
            Event::ClientDisabled(e) => vec![&e.client_id],
            _ => vec![],
        }
    }

    fn apply(row: Option<Self>, _id: &str, event: &RecordedEvent) -> Option<Self> {
        match (&event.event, row) {
            // A second registration of the same id is refused before it is appended; if one is in the
            // log anyway, the first registration stands.
            (Event::ClientRegistered(e), None) => Some(Client {
                spec: e.client.clone(),
                disabled: None,
                registered_at: e.at,
                updated_at: e.at,
            }),
            (Event::ClientUpdated(e), Some(c)) => Some(Client {
                spec: e.client.clone(),
                updated_at: e.at,
                ..c
            }),
            (Event::ClientDisabled(e), Some(c)) => Some(Client {
                disabled: c.disabled.clone().or(Some(Disabled {
                    reason: e.reason.clone(),
                    at: e.at,
                })),
                updated_at: e.at,
                ..c
            }),
            (_, row) => row,
        }
    }

    fn index(&self) -> RowIndex {
        RowIndex {
            client_id: Some(self.spec.client_id.clone()),
            ..RowIndex::default()
        }
    }
}
