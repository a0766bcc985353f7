//! The event store on an embedded SQLite file: WAL mode, `synchronous=FULL`, one writer task.
//!
//! Batches travel as one JSON array per statement and are unpacked with `json_each`: each sqlx SQLite
//! statement costs about 0.1 ms however small, so per-row statements would cap appends near 10,000/s.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projections::{RowWrite, TABLES};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use super::migrations::{self, Dialect};
use super::row_reader::RowReader;
use super::writer::{Backend, LedgerTx, Writer};
use super::{
    AppendError, AppendRequest, AppendResult, EventStore, Head, READ_LIMIT_MAX, RowFilter, StoreError,
    StoredEvent, StoredRow, position, table_name,
};

/// The ledger in a SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
    rows: RowReader,
}

struct SqliteBackend {
    pool: SqlitePool,
}

struct SqliteTx(Transaction<'static, Sqlite>);

fn stored_event(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        position: position(row.try_get(0)?),
        stream_id: row.try_get(1)?,
        version: position(row.try_get(2)?),
        event_type: row.try_get(3)?,
        payload: row.try_get(4)?,
        metadata: row.try_get(5)?,
        recorded_at: row.try_get(6)?,
        hash: row.try_get(7)?,
    })
}

fn head_of(row: &sqlx::sqlite::SqliteRow) -> Result<Head, sqlx::Error> {
    Ok(Head {
        position: position(row.try_get(0)?),
        hash: row.try_get(1)?,
        recorded_at: row.try_get(2)?,
    })
}

fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

impl LedgerTx for SqliteTx {
    async fn lock_head(&mut self) -> Result<Head, StoreError> {
        // BEGIN IMMEDIATE already holds SQLite's write lock.
        let row = sqlx::query("SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1")
            .fetch_one(&mut *self.0)
            .await?;
        Ok(head_of(&row)?)
    }

    async fn stream_versions(&mut self, streams: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT stream_id, MAX(version) FROM events \
             WHERE stream_id IN (SELECT value FROM json_each(?1)) GROUP BY stream_id",
        )
        .bind(json_list(streams))
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, position(r.try_get(1)?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn known_keys(&mut self, keys: &[&str]) -> Result<BTreeMap<String, AppendResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, result FROM idempotency_keys WHERE key IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(keys))
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get(0)?;
                let result: String = r.try_get(1)?;
                let result = serde_json::from_str(&result)
                    .map_err(|e| StoreError::Corrupt(format!("idempotency key {key}: {e}")))?;
                Ok((key, result))
            })
            .collect()
    }

    async fn insert_events(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                json!([
                    e.position,
                    e.stream_id,
                    e.version,
                    e.event_type,
                    e.payload,
                    e.metadata,
                    e.recorded_at,
                    e.hash
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO events (position, stream_id, version, event_type, payload, metadata, recorded_at, hash) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                    value ->> 7 \
             FROM json_each(?1)",
        )
        .bind(json_list(&rows))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn load_rows(
        &mut self,
        table: &'static str,
        ids: &BTreeSet<String>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = format!(
            "SELECT id, state FROM {} WHERE id IN (SELECT value FROM json_each(?1))",
            table_name(table)?
        );
        let ids: Vec<&String> = ids.iter().collect();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(json_list(&ids))
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn upsert_rows(&mut self, table: &'static str, rows: &[&RowWrite]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (id, subject, client_id, delegation_id, state) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?1) WHERE true \
             ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, client_id = excluded.client_id, \
             delegation_id = excluded.delegation_id, state = excluded.state",
            table_name(table)?
        );
        let rows: Vec<_> = rows
            .iter()
            .map(|w| {
                json!([
                    w.id,
                    w.index.subject,
                    w.index.client_id,
                    w.index.delegation_id,
                    w.state.to_string()
                ])
            })
            .collect();
        sqlx::query(AssertSqlSafe(sql))
            .bind(json_list(&rows))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_keys(&mut self, keys: &[(String, AppendResult)]) -> Result<(), StoreError> {
        let rows: Vec<_> = keys
            .iter()
            .map(|(k, r)| json!([k, serde_json::to_string(r).unwrap_or_default()]))
            .collect();
        sqlx::query(
            "INSERT INTO idempotency_keys (key, result) SELECT value ->> 0, value ->> 1 FROM json_each(?1)",
        )
        .bind(json_list(&rows))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn set_head(&mut self, head: &Head) -> Result<(), StoreError> {
        sqlx::query("UPDATE ledger_head SET position = ?1, hash = ?2, recorded_at = ?3 WHERE id = 1")
            .bind(head.position as i64)
            .bind(&head.hash)
            .bind(head.recorded_at)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

impl Backend for SqliteBackend {
    type Tx = SqliteTx;

    async fn begin(&self) -> Result<SqliteTx, StoreError> {
        Ok(SqliteTx(self.pool.begin_with("BEGIN IMMEDIATE").await?))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the SQLite ledger at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("{url} is not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable before acknowledged: FULL syncs the WAL at every commit.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // The default 2 MiB page cache makes every append read index pages back through system
            // calls once the log outgrows it.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Checkpoint every ~40 MiB of WAL instead of every 4 MiB: the head row and the index pages
            // every commit rewrites are then copied back once per checkpoint, not ten times.
            .pragma("wal_autocheckpoint", "10000");
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = options.get_filename().display().to_string();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("cannot open SQLite database {file}: {e}")))?;

        let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("{file} is not a consent-ledger database: {e}")))?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(StoreError::Open(format!(
                "{file} is a SQLite database but not a consent-ledger one (it has tables {tables:?})"
            )));
        }
        migrations::migrator(Dialect::Sqlite).run(&pool).await?;
        let writer = Writer::spawn(Arc::new(SqliteBackend { pool: pool.clone() }));
        let rows = RowReader::spawn(pool.clone());
        Ok(SqliteStore { pool, writer, rows })
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, AppendError> {
        self.writer.append(request).await
    }

    async fn read_from(&self, position: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, stream_id, version, event_type, payload, metadata, recorded_at, hash \
             FROM events WHERE position >= ?1 ORDER BY position LIMIT ?2",
        )
        .bind(position as i64)
        .bind(limit.min(READ_LIMIT_MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(stored_event).collect::<Result<_, _>>()?)
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let row = sqlx::query("SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(head_of(&row)?)
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM events WHERE stream_id = ?1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.map(position))
    }

    async fn row(&self, table: &'static str, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let state = self.rows.get(table, id).await?;
        state
            .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{table} {id}: {e}"))))
            .transpose()
    }

    async fn rows_where(
        &self,
        table: &'static str,
        filter: RowFilter<'_>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut sql = format!("SELECT state FROM {} WHERE 1 = 1", table_name(table)?);
        let mut binds = Vec::new();
        for (column, value) in [
            ("subject", filter.subject),
            ("client_id", filter.client_id),
            ("delegation_id", filter.delegation_id),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ?{}", binds.len()));
            }
        }
        sql.push_str(" ORDER BY id");
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{table}: {e}"))))
            .collect()
    }

    async fn claim_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM used_assertions WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO used_assertions (key, expires_at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn off_ledger_put(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM off_ledger WHERE expires_at < ?1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO off_ledger (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
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
            "SELECT value FROM off_ledger WHERE namespace = ?1 AND key = ?2 \
             AND (expires_at IS NULL OR expires_at >= ?3)",
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
            "DELETE FROM off_ledger WHERE namespace = ?1 AND key = ?2 RETURNING value, expires_at",
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
        sqlx::query("DELETE FROM off_ledger WHERE namespace = ?1 AND key = ?2")
            .bind(namespace)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn off_ledger_count(&self, namespace: &str, now: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM off_ledger WHERE namespace = ?1 \
             AND (expires_at IS NULL OR expires_at >= ?2)",
        )
        .bind(namespace)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
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
            "INSERT INTO off_ledger (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at \
             WHERE off_ledger.expires_at IS NOT NULL AND off_ledger.expires_at < ?5",
        )
        .bind(namespace)
        .bind(key)
        .bind(value)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM off_ledger WHERE namespace = ?1 AND key = ?2")
                .bind(namespace)
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
        Ok(stored)
    }

    async fn all_rows(&self) -> Result<Vec<StoredRow>, StoreError> {
        let mut out = Vec::new();
        for table in TABLES {
            let sql = format!("SELECT id, state FROM {table} ORDER BY id");
            for r in sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await? {
                let id: String = r.try_get(0)?;
                let state: String = r.try_get(1)?;
                let state = serde_json::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("{table} {id}: {e}")))?;
                out.push(StoredRow {
                    table: table.to_owned(),
                    id,
                    state,
                });
            }
        }
        Ok(out)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await?;
        if applied.unwrap_or(0) < migrations::latest_version() {
            return Err(StoreError::Open("database schema is not migrated".into()));
        }
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
