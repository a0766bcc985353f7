//! The event store: one contract, a SQLite and a PostgreSQL implementation.
//!
//! Appends go through one writer task per process ([`writer`]) that commits concurrent appends together;
//! what a batch writes is planned by the pure [`batch::plan`], so both databases accept and refuse exactly
//! the same appends. Projection rows are folded by the `projections` crate inside the same transaction.

pub mod batch;
mod checkpoints;
mod migrations;
mod postgres;
mod row_reader;
mod sql;
mod sqlite;
mod writer;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;
use projections::{Event, Metadata, Projection, RecordedEvent};

use crate::clock::ClockRef;
use serde::{Deserialize, Serialize};

pub use checkpoints::CheckpointStore;
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// Most events one append may carry.
pub const APPEND_EVENTS_MAX: usize = 1_000;
/// Most events one group commit writes.
pub const BATCH_EVENTS_MAX: usize = 2_000;
/// Most rows one `read_from` returns.
pub const READ_LIMIT_MAX: u32 = 10_000;

/// What the appender believes the stream's version is: the optimistic concurrency check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this.
    Exact(u64),
}

/// One event to append to one stream.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream_id: String,
    pub event: Event,
}

/// The expectation about one stream within an append.
#[derive(Debug, Clone)]
pub struct StreamExpectation {
    pub stream_id: String,
    pub expected: ExpectedVersion,
}

/// An all-or-nothing append of events to one or more streams.
#[derive(Debug, Clone, Default)]
pub struct AppendRequest {
    pub events: Vec<NewEvent>,
    /// One expectation per stream; a stream with none is appended to with [`ExpectedVersion::Any`].
    pub expectations: Vec<StreamExpectation>,
    pub metadata: Metadata,
    /// A retry with the same key returns the first attempt's result and writes nothing.
    pub idempotency_key: Option<String>,
    /// Keys used once, taken in the same transaction: the append is refused when one is taken.
    pub claims: Vec<Claim>,
}

/// A key an append uses once (an assertion's or a proof's `jti`): refused to every later append until
/// it expires. Kept off the ledger and deleted after expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    /// Unix seconds after which the key may be used again (nothing bearing it is valid by then).
    pub expires_at: i64,
    /// The instant the claim is judged at: a key whose earlier claim expired before it is free.
    pub now: i64,
}

impl AppendRequest {
    /// An append of `events` to a single stream, checked against `expected`.
    pub fn to_stream(stream_id: impl Into<String>, expected: ExpectedVersion, events: Vec<Event>) -> Self {
        let stream_id = stream_id.into();
        AppendRequest {
            events: events
                .into_iter()
                .map(|event| NewEvent {
                    stream_id: stream_id.clone(),
                    event,
                })
                .collect(),
            expectations: vec![StreamExpectation { stream_id, expected }],
            ..Self::default()
        }
    }

    /// Adds the stream expectations and claims of `other` and its events after these.
    pub fn and(mut self, other: AppendRequest) -> Self {
        self.events.extend(other.events);
        self.expectations.extend(other.expectations);
        self.claims.extend(other.claims);
        self
    }

    /// Sets the metadata recorded with every event.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// An append that writes no event and only takes `key` until `expires_at`: group-committed with
    /// the batch it joins, so a claim costs no transaction of its own.
    pub fn claiming(key: &str, expires_at: i64, now: i64) -> Self {
        AppendRequest {
            claims: vec![Claim {
                key: key.to_owned(),
                expires_at,
                now,
            }],
            ..Self::default()
        }
    }
}

/// What an accepted append wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    pub first_position: u64,
    pub last_position: u64,
    /// Each stream's version after the append.
    pub stream_versions: BTreeMap<String, u64>,
    /// True when this is the stored result of an earlier append with the same idempotency key.
    pub replayed: bool,
}

/// Why an append was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another append changed the stream first; reload and decide again.
    #[error("stream {stream_id} is at version {actual:?}, expected {expected:?}")]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// The request itself is malformed; retrying it cannot succeed.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// A key the append claims was taken before and has not expired.
    #[error("{key} was already used")]
    Claimed { key: String },
    /// An event was sent to a stream other than its own ([`projections::Event::stream_id`]).
    #[error("a {event_type} belongs to stream {belongs_to}, not {stream_id}")]
    WrongStream {
        stream_id: String,
        belongs_to: String,
        event_type: &'static str,
    },
    /// The database failed; the append may be retried (with an idempotency key to be safe).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the store could not answer. The HTTP edge maps each kind once: the transient ones
/// ([`StoreError::is_transient`]) become 503 with `Retry-After`, whatever the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or cannot serve now (connection refused or lost, pool exhausted,
    /// file locked or unreadable, disk full); a retry may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database lacks the schema this binary expects (not migrated, or tables dropped).
    #[error("the database schema is not migrated: {0}")]
    NotMigrated(String),
    /// A concurrent writer got there first (unique violation, serialisation failure, deadlock).
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),
    /// The group commit that carried this append failed: nothing of it was written, unless the commit
    /// itself was lost on the way, so retry with an idempotency key.
    #[error("group commit failed (retry with an idempotency key): {0}")]
    CommitFailed(String),
    /// Stored data does not decode, or breaks an invariant of the schema (a negative position).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The URL or file does not name a consent-ledger database; nothing was touched.
    #[error("{0}")]
    NotALedger(String),
    /// Any other database failure: a statement the database refused for a reason a retry will not cure.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the event store is shut down")]
    Closed,
}

impl StoreError {
    /// True when the same request may succeed later unchanged: the edge answers 503 with `Retry-After`.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::NotMigrated(_)
                | StoreError::Conflict(_)
                | StoreError::CommitFailed(_)
                | StoreError::Closed
        )
    }

    /// The same kind of error with the same message, for answering several waiters from one failure.
    pub(crate) fn duplicate(&self) -> StoreError {
        let m = self.to_string();
        match self {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::NotMigrated(m) => StoreError::NotMigrated(m.clone()),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::CommitFailed(m) => StoreError::CommitFailed(m.clone()),
            StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
            StoreError::NotALedger(m) => StoreError::NotALedger(m.clone()),
            StoreError::Closed => StoreError::Closed,
            StoreError::Database(_) | StoreError::Migrate(_) => {
                StoreError::Database(sqlx::Error::Protocol(m))
            }
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::BeginFailed => {
                return StoreError::Unavailable(e.to_string());
            }
            E::RowNotFound
            | E::TypeNotFound { .. }
            | E::ColumnIndexOutOfBounds { .. }
            | E::ColumnNotFound(_)
            | E::ColumnDecode { .. }
            | E::Decode(_) => return StoreError::Corrupt(e.to_string()),
            E::Database(db) => {
                if let Some(kind) = classify(db.as_ref()) {
                    return kind;
                }
            }
            _ => {}
        }
        StoreError::Database(e)
    }
}

/// The kind of a database's own error, from its code: PostgreSQL's SQLSTATE or SQLite's result code.
fn classify(db: &dyn sqlx::error::DatabaseError) -> Option<StoreError> {
    let message = db.to_string();
    if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
        return Some(StoreError::Conflict(message));
    }
    let code = db.code()?;
    if let Ok(sqlite) = code.parse::<i32>() {
        // The primary result code is the low byte of SQLite's extended code.
        return match sqlite & 0xff {
            // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
            5 | 6 | 7 | 8 | 10 | 13 | 14 | 15 => Some(StoreError::Unavailable(message)),
            // CORRUPT, NOTADB
            11 | 26 => Some(StoreError::Corrupt(message)),
            1 if message.contains("no such table") || message.contains("no such column") => {
                Some(StoreError::NotMigrated(message))
            }
            _ => None,
        };
    }
    match code.as_ref() {
        // undefined table, undefined column, unknown schema
        "42P01" | "42703" | "3F000" => Some(StoreError::NotMigrated(message)),
        // serialisation failure, deadlock
        "40001" | "40P01" => Some(StoreError::Conflict(message)),
        // read-only transaction (a standby), connection failures, insufficient resources, shutdown
        "25006" => Some(StoreError::Unavailable(message)),
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
            Some(StoreError::Unavailable(message))
        }
        _ => None,
    }
}

/// An event row exactly as stored, for hashing; [`StoredEvent::decode`] gives the typed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: u64,
    pub stream_id: String,
    pub version: u64,
    pub event_type: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub hash: String,
}

impl StoredEvent {
    /// Parses the payload and metadata.
    pub fn decode(&self) -> Result<RecordedEvent, StoreError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("position {}: {what}: {e}", self.position))
        };
        let event: Event = serde_json::from_str(&self.payload).map_err(|e| corrupt("payload", e))?;
        if event.event_type() != self.event_type {
            return Err(StoreError::Corrupt(format!(
                "position {}: event_type column says {} but the payload is {}",
                self.position,
                self.event_type,
                event.event_type()
            )));
        }
        Ok(RecordedEvent {
            position: self.position,
            stream_id: self.stream_id.clone(),
            version: self.version,
            event,
            metadata: serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", e))?,
            recorded_at: self.recorded_at,
            hash: self.hash.clone(),
        })
    }
}

/// The last appended event as the head record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub position: u64,
    pub hash: String,
    pub recorded_at: i64,
}

/// A stored projection row: its id and state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub table: String,
    pub id: String,
    pub state: serde_json::Value,
}

/// A stream of events read from the log.
pub type EventStream<'a> = Pin<Box<dyn Stream<Item = Result<StoredEvent, StoreError>> + Send + 'a>>;

/// State kept outside the ledger because it is not a fact anyone audits (see ARCHITECTURE.md): used
/// assertion ids, and keyed values with an optional expiry. Its own contract, apart from the log's;
/// every [`EventStore`] also keeps it, in the same database.
#[async_trait]
pub trait OffLedger: Send + Sync {
    /// Records `key` as used until `expires_at`; false when it already was. Forgets keys expired at `now`.
    async fn claim_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;

    /// Stores `value` under (`namespace`, `key`) outside the ledger, replacing what was there; it is
    /// forgotten after `expires_at` (never when `None`). Forgets every entry expired at `now`.
    async fn off_ledger_put(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The unexpired value under (`namespace`, `key`).
    async fn off_ledger_get(
        &self,
        namespace: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Removes and returns the unexpired value under (`namespace`, `key`): of two concurrent takes, one
    /// gets it.
    async fn off_ledger_take(
        &self,
        namespace: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Forgets (`namespace`, `key`).
    async fn off_ledger_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError>;

    /// How many unexpired entries `namespace` holds at `now`.
    async fn off_ledger_count(&self, namespace: &str, now: i64) -> Result<u64, StoreError>;

    /// Stores `value` under (`namespace`, `key`) unless an unexpired value is there, and returns the
    /// value stored now: of two nodes creating the same entry at once, both get the first one's.
    async fn off_ledger_insert(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<String, StoreError>;
}

/// A store's database connections at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open now, idle or in use.
    pub open: u32,
    /// Open and waiting for work.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// The contract every backend meets; the same test bodies run against each.
#[async_trait]
pub trait EventStore: OffLedger + CheckpointStore {
    /// Appends all of `request` or none of it. Returns once the events are durable.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, AppendError>;

    /// The clock appends are stamped with; the server reads the same one.
    fn clock(&self) -> crate::clock::ClockRef;

    /// The last committed position, changing as commits become durable: what live followers of the log
    /// wait on. It may lag a commit of another process (a lost notification); a follower also reads
    /// again from time to time.
    fn committed(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Up to `limit` events from `position` on (inclusive), in position order.
    async fn read_from(&self, position: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// The head record: last position and hash.
    async fn head(&self) -> Result<Head, StoreError>;

    /// The events of `range`, in position order: a key range of positions, optionally one stream's or
    /// one type's events within it (each an index lookup).
    async fn read_range(&self, range: EventRange<'_>) -> Result<Vec<StoredEvent>, StoreError>;

    /// The first position recorded at or after `recorded_at` (microseconds), or `None` when every event
    /// is older: one index seek, since `recorded_at` never decreases along the log.
    async fn first_position_at(&self, recorded_at: i64) -> Result<Option<u64>, StoreError>;

    /// The last version of `stream_id`, or `None` when it has no events.
    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>, StoreError>;

    /// One projection row's state.
    async fn row(&self, table: &'static str, id: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Projection rows matching the lookup columns given.
    async fn rows_where(
        &self,
        table: &'static str,
        filter: RowFilter<'_>,
    ) -> Result<Vec<serde_json::Value>, StoreError>;

    /// Every projection row of every table, for replay comparison.
    async fn all_rows(&self) -> Result<Vec<StoredRow>, StoreError>;

    /// Up to `limit` rows of `table` with ids after `after`, in id order, as `(id, state text)`: a
    /// bounded page for reading a table from end to end.
    async fn rows_page(
        &self,
        table: &'static str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Number of projection rows in every table together.
    async fn row_count(&self) -> Result<u64, StoreError>;

    /// Ready: reachable and fully migrated.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Stops accepting appends and waits for the writer to flush what it holds.
    async fn close(&self);

    /// The database connections this store holds now.
    fn connections(&self) -> Connections {
        Connections::default()
    }

    /// Events from `position` on, read page by page until the end of the log.
    fn stream_from(&self, position: u64) -> EventStream<'_> {
        Box::pin(async_stream::try_stream! {
            let mut next = position.max(1);
            loop {
                let page = self.read_from(next, 1_000).await?;
                let Some(last) = page.last() else { break };
                next = last.position + 1;
                for e in page {
                    yield e;
                }
            }
        })
    }
}

/// Which events [`EventStore::read_range`] returns: positions in `after + 1 ..= through`, at most
/// `limit` (capped at [`READ_LIMIT_MAX`]), only `stream_id`'s and `event_type`'s when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventRange<'a> {
    pub after: u64,
    pub through: u64,
    pub stream_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub limit: u32,
}

/// A lookup over the indexed columns of a projection table.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowFilter<'a> {
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub delegation_id: Option<&'a str>,
}

/// Refuses table names that are not projection tables: table names are the only SQL built from text.
fn table_name(table: &str) -> Result<&'static str, StoreError> {
    projections::TABLES
        .iter()
        .copied()
        .find(|t| *t == table)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown projection table {table}")))
}

/// A stored position or version: both databases keep them as signed 64-bit integers, never negative.
fn position(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative position or version {v}")))
}

/// The JSON array text of `items`, as SQLite's `json_each` takes a batch.
fn json_list<T: Serialize>(items: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(format!("cannot encode a batch: {e}")))
}

/// Reads one typed projection row.
pub async fn get<P: Projection>(store: &dyn EventStore, id: &str) -> Result<Option<P>, StoreError> {
    store
        .row(P::TABLE, id)
        .await?
        .map(|v| {
            serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("{} {id}: {e}", P::TABLE)))
        })
        .transpose()
}

/// Reads typed projection rows by lookup columns.
pub async fn find<P: Projection>(
    store: &dyn EventStore,
    filter: RowFilter<'_>,
) -> Result<Vec<P>, StoreError> {
    store
        .rows_where(P::TABLE, filter)
        .await?
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("{}: {e}", P::TABLE))))
        .collect()
}

/// Opens the store a database URL names, creating and migrating it as needed.
///
/// `sqlite:` URLs and plain paths open SQLite; `postgres://` and `postgresql://` open PostgreSQL.
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    open_with_clock(url, crate::clock::system()).await
}

/// [`open`], with appends stamped from `clock` (a test's manual clock).
pub async fn open_with_clock(url: &str, clock: ClockRef) -> Result<Arc<dyn EventStore>, StoreError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::open(url, clock).await?)),
        Some("sqlite") => Ok(Arc::new(SqliteStore::open(url, clock).await?)),
        Some(other) => Err(StoreError::NotALedger(format!(
            "unknown database scheme {other:?}: use sqlite://PATH or postgres://…"
        ))),
        None if url.starts_with("sqlite:") => Ok(Arc::new(SqliteStore::open(url, clock).await?)),
        None => Ok(Arc::new(
            SqliteStore::open(&format!("sqlite://{url}"), clock).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_position_is_corrupt_data_not_zero() {
        assert_eq!(position(7).unwrap(), 7);
        assert!(matches!(position(-1), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn only_failures_a_retry_may_cure_are_transient() {
        assert!(StoreError::Unavailable("down".into()).is_transient());
        assert!(StoreError::CommitFailed("lost".into()).is_transient());
        assert!(StoreError::NotMigrated("no table".into()).is_transient());
        assert!(!StoreError::Corrupt("bad json".into()).is_transient());
        assert!(!StoreError::NotALedger("foreign file".into()).is_transient());
    }
}
