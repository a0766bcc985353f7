//! Folds the log from the start into fresh state and compares it with the stored projection rows.

use futures_util::StreamExt;
use projections::LedgerState;

use crate::store::{EventStore, StoreError};

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The end of the log.
    End,
    /// The last event at or before this position.
    Position(u64),
    /// The last event recorded at or before this time (Unix microseconds).
    Time(i64),
}

impl Until {
    fn includes(&self, position: u64, recorded_at: i64) -> bool {
        match *self {
            Until::End => true,
            Until::Position(p) => position <= p,
            // Recorded times never decrease along the log, so this is a prefix.
            Until::Time(t) => recorded_at <= t,
        }
    }
}

/// Folds the log up to `until` into a fresh state; returns it and the last position folded.
pub async fn fold(store: &dyn EventStore, until: Until) -> Result<(LedgerState, u64), StoreError> {
    let mut state = LedgerState::default();
    let mut last = 0;
    let mut events = store.stream_from(1);
    while let Some(e) = events.next().await {
        let e = e?;
        if !until.includes(e.position, e.recorded_at) {
            break;
        }
        state.apply(&e.decode()?);
        last = e.position;
    }
    Ok((state, last))
}

/// One way the stored rows differ from the replayed fold.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The fold has the row; the database does not.
    Missing { table: String, id: String },
    /// The database has a row the fold does not produce.
    Unexpected { table: String, id: String },
    /// Both have the row with different state.
    Changed {
        table: String,
        id: String,
        stored: serde_json::Value,
        replayed: serde_json::Value,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { table, id } => write!(f, "{table} {id}: in the replay, not stored"),
            Difference::Unexpected { table, id } => write!(f, "{table} {id}: stored, not in the replay"),
            Difference::Changed {
                table,
                id,
                stored,
                replayed,
            } => {
                write!(f, "{table} {id}: stored {stored} but replay gives {replayed}")
            }
        }
    }
}

/// Replays the whole log and lists every difference from the stored projection rows.
pub async fn compare(store: &dyn EventStore) -> Result<Vec<Difference>, StoreError> {
    let (state, _) = fold(store, Until::End).await?;
    let replayed = state.all_rows().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut stored: std::collections::BTreeMap<(String, String), serde_json::Value> = store
        .all_rows()
        .await?
        .into_iter()
        .map(|r| ((r.table, r.id), r.state))
        .collect();
    let mut out = Vec::new();
    for row in replayed {
        let key = (row.table.to_owned(), row.id);
        match stored.remove(&key) {
            None => out.push(Difference::Missing {
                table: key.0,
                id: key.1,
            }),
            Some(s) if s != row.state => out.push(Difference::Changed {
                table: key.0,
                id: key.1,
                stored: s,
                replayed: row.state,
            }),
            Some(_) => {}
        }
    }
    out.extend(
        stored
            .into_keys()
            .map(|(table, id)| Difference::Unexpected { table, id }),
    );
    Ok(out)
}
