//! The body of one published message: a ledger event as JSON, enough to fold it and to recompute its hash.

use serde::{Deserialize, Serialize};

use crate::store::{StoreError, StoredEvent};

/// One ledger event as the relay publishes it.
///
/// `payload` and `metadata` are the stored canonical JSON parsed into values: written again with
/// `serde_json` (object keys sorted) they give back the stored text byte for byte, so a consumer can
/// recompute the hash chain from the messages alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerMessage {
    /// The event's position in the log (1, 2, 3, …): also the stream sequence it is published at.
    pub position: u64,
    /// The ledger stream (entity) the event belongs to.
    pub stream: String,
    /// The event's version within its ledger stream.
    pub version: u64,
    /// The event's type, e.g. `TokenIssued`; also the last token of the subject.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's payload.
    pub payload: serde_json::Value,
    /// Who appended it and why (request id and the like).
    pub metadata: serde_json::Value,
    /// When it was committed, in microseconds since the Unix epoch.
    pub recorded_at: i64,
    /// The event's hash in the chain, lowercase hex.
    pub hash: String,
}

impl LedgerMessage {
    /// The message for a stored event; an event whose JSON does not parse is corrupt data.
    pub fn from_stored(e: &StoredEvent) -> Result<LedgerMessage, StoreError> {
        let parse = |what: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|err| StoreError::Corrupt(format!("position {}: {what}: {err}", e.position)))
        };
        Ok(LedgerMessage {
            position: e.position,
            stream: e.stream_id.clone(),
            version: e.version,
            event_type: e.event_type.clone(),
            payload: parse("payload", &e.payload)?,
            metadata: parse("metadata", &e.metadata)?,
            recorded_at: e.recorded_at,
            hash: e.hash.clone(),
        })
    }

    /// The stored event this message carries: payload and metadata back as canonical text.
    pub fn to_stored(&self) -> StoredEvent {
        StoredEvent {
            position: self.position,
            stream_id: self.stream.clone(),
            version: self.version,
            event_type: self.event_type.clone(),
            payload: self.payload.to_string(),
            metadata: self.metadata.to_string(),
            recorded_at: self.recorded_at,
            hash: self.hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_gives_back_the_stored_event_byte_for_byte() {
        let stored = StoredEvent {
            position: 7,
            stream_id: "token-j1".into(),
            version: 1,
            event_type: "TokenIssued".into(),
            payload: r#"{"a":[1,2.5,"x"],"b":{"c":null},"type":"TokenIssued"}"#.into(),
            metadata: r#"{"request_id":"r1"}"#.into(),
            recorded_at: 1_700_000_000_123_456,
            hash: "ab".repeat(32),
        };
        let message = LedgerMessage::from_stored(&stored).unwrap();
        let wire = serde_json::to_string(&message).unwrap();
        let back: LedgerMessage = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.to_stored(), stored);
        assert!(wire.contains(r#""type":"TokenIssued""#), "{wire}");
    }

    #[test]
    fn a_payload_that_is_not_json_is_corrupt_data() {
        let stored = StoredEvent {
            position: 3,
            stream_id: "s".into(),
            version: 1,
            event_type: "TokenIssued".into(),
            payload: "{not json".into(),
            metadata: "{}".into(),
            recorded_at: 0,
            hash: String::new(),
        };
        assert!(matches!(
            LedgerMessage::from_stored(&stored),
            Err(StoreError::Corrupt(m)) if m.starts_with("position 3: payload")
        ));
    }
}
