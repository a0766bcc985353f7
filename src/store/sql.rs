//! The store both databases share: one generic implementation of [`EventStore`] and [`OffLedger`] over
//! any sqlx database, and one SQL text per statement.
//!
//! The texts use `$n` placeholders, which PostgreSQL and SQLite (through sqlx) both read, and only SQL
//! both dialects accept (`ON CONFLICT`, `RETURNING`). What does differ lives in the backends: how a
//! batch travels to the database (`UNNEST` or `json_each`, in [`super::writer::LedgerTx`]), how the
//! database is opened, and SQLite's coalesced point reads ([`RowReader`]).

use async_trait::async_trait;
use projections::TABLES;
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::row_reader::RowReader;
use super::writer::Writer;
use super::{
    AppendError, AppendRequest, AppendResult, EventRange, EventStore, Head, OffLedger, READ_LIMIT_MAX,
    RowFilter, StoreError, StoredEvent, StoredRow, migrations, position, table_name,
};

/// The ledger in a SQL database: the pool reads, the writer task appends.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) writer: Writer,
    /// Point reads coalesced into one statement per table (SQLite); `None` reads each row alone.
    pub(super) rows: Option<RowReader>,
    /// The clock the writer stamps `recorded_at` from, shared with the server.
    pub(super) clock: crate::clock::ClockRef,
    /// The last committed position, raised by this process's writer (and, on PostgreSQL, by the
    /// notifications of every process's commits).
    pub(super) committed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

const HEAD: &str = "SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1";

fn stored_event<R: Row>(row: &R) -> Result<StoredEvent, StoreError>
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StoredEvent {
        position: position(row.try_get(0)?)?,
        stream_id: row.try_get(1)?,
        version: position(row.try_get(2)?)?,
        event_type: row.try_get(3)?,
        payload: row.try_get(4)?,
        metadata: row.try_get(5)?,
        recorded_at: row.try_get(6)?,
        hash: row.try_get(7)?,
    })
}

/// The head record from a row of [`HEAD`] (or the writer's locking variant of it).
pub(super) fn head_of<R: Row>(row: &R) -> Result<Head, StoreError>
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Head {
        position: position(row.try_get(0)?)?,
        hash: row.try_get(1)?,
        recorded_at: row.try_get(2)?,
    })
}

fn state(table: &str, id: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{table} {id}: {e}")))
}

#[async_trait]
impl<DB: Database> EventStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn append(&self, mut request: AppendRequest) -> Result<AppendResult, AppendError> {
        // Read here, on the request's task: the writer that commits runs on its own.
        if request.metadata.request_id.is_none() {
            request.metadata.request_id = crate::telemetry::request_id();
        }
        self.writer.append(request).await
    }

    fn clock(&self) -> crate::clock::ClockRef {
        self.clock.clone()
    }

    fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn connections(&self) -> super::Connections {
        super::Connections {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn read_from(&self, position: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let from = i64::try_from(position).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT position, stream_id, version, event_type, payload, metadata, recorded_at, hash \
             FROM events WHERE position >= $1 ORDER BY position LIMIT $2",
        )
        .bind(from)
        .bind(i64::from(limit.min(READ_LIMIT_MAX)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    async fn read_range(&self, range: EventRange<'_>) -> Result<Vec<StoredEvent>, StoreError> {
        // One text per combination, so each is planned on its own index: `position` alone, or the
        // `(stream_id, version)` key for a stream, never an `OR … IS NULL` that defeats both.
        const COLUMNS: &str = "SELECT position, stream_id, version, event_type, payload, metadata, \
                               recorded_at, hash FROM events WHERE position > $1 AND position <= $2";
        let sql = match (range.stream_id, range.event_type) {
            (None, None) => format!("{COLUMNS} ORDER BY position LIMIT $3"),
            (Some(_), None) => format!("{COLUMNS} AND stream_id = $4 ORDER BY position LIMIT $3"),
            (None, Some(_)) => format!("{COLUMNS} AND event_type = $4 ORDER BY position LIMIT $3"),
            (Some(_), Some(_)) => {
                format!("{COLUMNS} AND stream_id = $4 AND event_type = $5 ORDER BY position LIMIT $3")
            }
        };
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(i64::try_from(range.after).unwrap_or(i64::MAX))
            .bind(i64::try_from(range.through).unwrap_or(i64::MAX))
            .bind(i64::from(range.limit.min(READ_LIMIT_MAX)));
        for value in [range.stream_id, range.event_type].into_iter().flatten() {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(stored_event).collect()
    }

    async fn first_position_at(&self, recorded_at: i64) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT position FROM events WHERE recorded_at >= $1 ORDER BY recorded_at, position LIMIT 1",
        )
        .bind(recorded_at)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| position(r.try_get(0)?)).transpose()
    }

    async fn head(&self) -> Result<Head, StoreError> {
        head_of(&sqlx::query(HEAD).fetch_one(&self.pool).await?)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| position(r.try_get(0)?)).transpose()
    }

    async fn row(&self, table: &'static str, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text = match &self.rows {
            Some(rows) => rows.get(table, id).await?,
            None => {
                let sql = format!("SELECT state FROM {} WHERE id = $1", table_name(table)?);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| r.try_get::<String, _>(0)).transpose()?
            }
        };
        text.map(|s| state(table, id, &s)).transpose()
    }

    async fn rows_where(
        &self,
        table: &'static str,
        filter: RowFilter<'_>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut sql = format!("SELECT id, state FROM {} WHERE 1 = 1", table_name(table)?);
        let mut binds = Vec::new();
        for (column, value) in [
            ("subject", filter.subject),
            ("client_id", filter.client_id),
            ("delegation_id", filter.delegation_id),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        sql.push_str(" ORDER BY id");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                state(table, &id, &r.try_get::<String, _>(1)?)
            })
            .collect()
    }

    async fn all_rows(&self) -> Result<Vec<StoredRow>, StoreError> {
        let mut out = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT id, state FROM {table} ORDER BY id");
            for r in sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await? {
                let id: String = r.try_get(0)?;
                let state = state(table, &id, &r.try_get::<String, _>(1)?)?;
                out.push(StoredRow {
                    table: table.to_owned(),
                    id,
                    state,
                });
            }
        }
        Ok(out)
    }

    async fn rows_page(
        &self,
        table: &'static str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let table = table_name(table)?;
        let limit = i64::from(limit.min(READ_LIMIT_MAX));
        let rows = match after {
            Some(after) => {
                let sql = format!("SELECT id, state FROM {table} WHERE id > $1 ORDER BY id LIMIT $2");
                sqlx::query(AssertSqlSafe(sql))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT id, state FROM {table} ORDER BY id LIMIT $1");
                sqlx::query(AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn row_count(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for table in TABLES {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let n: i64 = sqlx::query(AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            total += position(n)?;
        }
        Ok(total)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        let applied: Option<i64> = row.try_get(0)?;
        let applied = applied.unwrap_or(0);
        if applied < migrations::latest_version() {
            return Err(StoreError::NotMigrated(format!(
                "migration {applied} applied, {} needed",
                migrations::latest_version()
            )));
        }
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

#[async_trait]
impl<DB: Database> OffLedger for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn claim_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        // Through the writer: the claim joins the next group commit instead of paying a transaction
        // (and an fsync) of its own.
        match self
            .writer
            .append(AppendRequest::claiming(key, expires_at, now))
            .await
        {
            Ok(_) => Ok(true),
            Err(AppendError::Claimed { .. }) => Ok(false),
            Err(AppendError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::CommitFailed(other.to_string())),
        }
    }

    async fn off_ledger_put(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM off_ledger WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO off_ledger (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(namespace)
        .bind(key)
        .bind(value)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn off_ledger_get(
        &self,
        namespace: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT value FROM off_ledger WHERE namespace = $1 AND key = $2 \
             AND (expires_at IS NULL OR expires_at >= $3)",
        )
        .bind(namespace)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn off_ledger_take(
        &self,
        namespace: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM off_ledger WHERE namespace = $1 AND key = $2 RETURNING value, expires_at",
        )
        .bind(namespace)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: Option<i64> = row.try_get(1)?;
        if expires_at.is_some_and(|e| e < now) {
            return Ok(None);
        }
        Ok(Some(row.try_get(0)?))
    }

    async fn off_ledger_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM off_ledger WHERE namespace = $1 AND key = $2")
            .bind(namespace)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn off_ledger_count(&self, namespace: &str, now: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM off_ledger WHERE namespace = $1 \
             AND (expires_at IS NULL OR expires_at >= $2)",
        )
        .bind(namespace)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    async fn off_ledger_insert(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<String, StoreError> {
        // An expired entry is replaced; an unexpired one wins over this value.
        sqlx::query(
            "INSERT INTO off_ledger (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
             WHERE off_ledger.expires_at IS NOT NULL AND off_ledger.expires_at < $5",
        )
        .bind(namespace)
        .bind(key)
        .bind(value)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM off_ledger WHERE namespace = $1 AND key = $2")
                .bind(namespace)
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
        Ok(stored)
    }
}
