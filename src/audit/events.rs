//! The log as auditors read it: filtered, bounded pages of events, each event one JSON line, shared by
//! the audit API (`GET /audit/events`) and `consent-ledger audit export`.
//!
//! A page walks at most [`WALK_MAX`] positions, whatever the filters: the stream and type filters are
//! index lookups within that key range, the subject and client filters are checked on the rows it
//! reads, and the time filters become positions by one index seek each. So a filter that matches
//! rarely answers a short (even empty) page with a cursor further on, and no page costs more than its
//! walk, however long the ledger.

use serde_json::{Value, json};

use crate::store::{EventRange, EventStore, StoreError, StoredEvent};

/// Events on a page when the request names no `limit`.
pub const PAGE_LIMIT_DEFAULT: u32 = 100;
/// The most events one page holds.
pub const PAGE_LIMIT_MAX: u32 = 1_000;
/// The most positions one page walks.
pub const WALK_MAX: u64 = 10_000;

/// Which events an auditor asks for; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The stream id (`delegation-…`, `token-…`).
    pub stream: Option<String>,
    /// The event type (`TokenIssued`).
    pub event_type: Option<String>,
    /// The payload's `subject`.
    pub subject: Option<String>,
    /// The payload's `client_id` (a client's own events: its registration's).
    pub client_id: Option<String>,
    /// Recorded at or after (Unix microseconds).
    pub from: Option<i64>,
    /// Recorded at or before (Unix microseconds).
    pub to: Option<i64>,
    /// At or before this position (an export stops at the head it started from).
    pub through: Option<u64>,
}

impl Filter {
    /// Whether `payload` (an event's, as stored) passes the filters the store cannot look up by index.
    pub fn admits(&self, payload: &Value) -> bool {
        let named = |field: &Value, want: &str| field.as_str() == Some(want);
        let subject_ok = self
            .subject
            .as_deref()
            .is_none_or(|s| named(&payload["subject"], s));
        let client_ok = self
            .client_id
            .as_deref()
            .is_none_or(|c| named(&payload["client_id"], c) || named(&payload["client"]["client_id"], c));
        subject_ok && client_ok
    }
}

/// One page: its events as lines, and where the next page starts when the walk stopped short of the
/// end (the head, or the position `to` names).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub lines: Vec<Value>,
    /// The `after` of the next page; `None` when this page reached the end.
    pub next: Option<u64>,
    /// The last position this page walked: a follower continues after it even when it reached the end.
    pub walked: u64,
}

/// An RFC 3339 time as Unix microseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

/// Unix microseconds in RFC 3339 (UTC), exact to the microsecond so the chain can be recomputed.
pub fn format_time(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| micros.to_string())
}

/// An event as one line: the stored payload and metadata as they were hashed (not brought to today's
/// shape), so an auditor can recompute the chain from the lines alone.
pub fn line(e: &StoredEvent, payload: Value) -> Result<Value, StoreError> {
    let metadata: Value = serde_json::from_str(&e.metadata)
        .map_err(|err| StoreError::Corrupt(format!("position {}: metadata: {err}", e.position)))?;
    Ok(json!({
        "position": e.position,
        "stream": e.stream_id,
        "version": e.version,
        "type": e.event_type,
        "payload": payload,
        "metadata": metadata,
        "time": format_time(e.recorded_at),
        "hash": e.hash,
    }))
}

/// The page of events after position `after` that `filter` admits, at most `limit` of them.
pub async fn page(
    store: &dyn EventStore,
    filter: &Filter,
    after: u64,
    limit: u32,
) -> Result<Page, StoreError> {
    let limit = limit.clamp(1, PAGE_LIMIT_MAX);
    let head = store.head().await?.position;
    let start = match filter.from {
        Some(t) => after.max(
            store
                .first_position_at(t)
                .await?
                .map_or(head, |p| p.saturating_sub(1)),
        ),
        None => after,
    };
    let end = match filter.to {
        Some(t) => store
            .first_position_at(t.saturating_add(1))
            .await?
            .map_or(head, |p| p.saturating_sub(1))
            .min(head),
        None => head,
    }
    .min(filter.through.unwrap_or(u64::MAX));
    let through = end.min(start.saturating_add(WALK_MAX));
    let mut lines = Vec::new();
    let mut cursor = start;
    while cursor < through && lines.len() < limit as usize {
        let rows = store
            .read_range(EventRange {
                after: cursor,
                through,
                stream_id: filter.stream.as_deref(),
                event_type: filter.event_type.as_deref(),
                limit,
            })
            .await?;
        let exhausted = rows.len() < limit as usize;
        for e in rows {
            cursor = e.position;
            let payload: Value = serde_json::from_str(&e.payload)
                .map_err(|err| StoreError::Corrupt(format!("position {}: payload: {err}", e.position)))?;
            if filter.admits(&payload) {
                lines.push(line(&e, payload)?);
                if lines.len() == limit as usize {
                    break;
                }
            }
        }
        if exhausted && lines.len() < limit as usize {
            cursor = through;
        }
    }
    let cursor = cursor.max(start);
    Ok(Page {
        lines,
        next: (cursor < end).then_some(cursor),
        walked: cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_client_filters_read_the_payload() {
        let issued = json!({"type": "TokenIssued", "subject": "alice", "client_id": "app"});
        let registered = json!({"type": "ClientRegistered", "client": {"client_id": "app"}});
        let all = Filter::default();
        assert!(all.admits(&issued) && all.admits(&registered));
        let alice = Filter {
            subject: Some("alice".into()),
            ..Filter::default()
        };
        assert!(alice.admits(&issued));
        assert!(!alice.admits(&registered));
        let app = Filter {
            client_id: Some("app".into()),
            ..Filter::default()
        };
        assert!(app.admits(&issued) && app.admits(&registered));
        let other = Filter {
            client_id: Some("other".into()),
            subject: Some("alice".into()),
            ..Filter::default()
        };
        assert!(!other.admits(&issued));
    }

    #[test]
    fn times_round_trip_to_the_microsecond() {
        let micros = 1_700_000_000_123_456;
        let text = format_time(micros);
        assert_eq!(text, "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_time(&text), Some(micros));
        assert_eq!(parse_time("yesterday"), None);
    }
}
