//! The event store on an embedded SQLite file: WAL mode, `synchronous=FULL`, one writer task.
//!
//! Batches travel as one JSON array per statement and are unpacked with `json_each`: each sqlx SQLite
//! statement costs about 0.1 ms however small, so per-row statements would cap appends near 10,000/s.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use projections::RowWrite;
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use super::migrations::{self, Dialect};
use super::row_reader::RowReader;
use super::sql::{SqlStore, head_of};
use super::writer::{Backend, LedgerTx, Writer};
use super::{AppendResult, Claim, Head, StoreError, StoredEvent, json_list, position, table_name};
use crate::clock::ClockRef;

/// The ledger in a SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

struct SqliteBackend {
    pool: SqlitePool,
}

struct SqliteTx(Transaction<'static, Sqlite>);

impl LedgerTx for SqliteTx {
    async fn lock_head(&mut self) -> Result<Head, StoreError> {
        // BEGIN IMMEDIATE already holds SQLite's write lock.
        let row = sqlx::query("SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1")
            .fetch_one(&mut *self.0)
            .await?;
        head_of(&row)
    }

    async fn stream_versions(&mut self, streams: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT stream_id, version FROM streams WHERE stream_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(streams)?)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, position(r.try_get(1)?)?)))
            .collect()
    }

    async fn known_keys(&mut self, keys: &[&str]) -> Result<BTreeMap<String, AppendResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, result FROM idempotency_keys WHERE key IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(keys)?)
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
        .bind(json_list(&rows)?)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn upsert_streams(&mut self, versions: &BTreeMap<&str, u64>) -> Result<(), StoreError> {
        let rows: Vec<_> = versions.iter().map(|(s, v)| json!([s, v])).collect();
        sqlx::query(
            "INSERT INTO streams (stream_id, version) SELECT value ->> 0, value ->> 1 FROM json_each(?1) WHERE true \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
        )
        .bind(json_list(&rows)?)
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
            .bind(json_list(&ids)?)
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
            .bind(json_list(&rows)?)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_keys(&mut self, keys: &[(String, AppendResult)]) -> Result<(), StoreError> {
        let rows: Vec<_> = keys
            .iter()
            .map(|(k, r)| Ok(json!([k, serde_json::to_string(r)?])))
            .collect::<Result<_, serde_json::Error>>()
            .map_err(|e| StoreError::Corrupt(format!("cannot encode an append result: {e}")))?;
        sqlx::query(
            "INSERT INTO idempotency_keys (key, result) SELECT value ->> 0, value ->> 1 FROM json_each(?1)",
        )
        .bind(json_list(&rows)?)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn claimed(&mut self, keys: &[&str], now: i64) -> Result<BTreeMap<String, i64>, StoreError> {
        sqlx::query("DELETE FROM used_assertions WHERE expires_at < ?1")
            .bind(now)
            .execute(&mut *self.0)
            .await?;
        let taken: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key, expires_at FROM used_assertions WHERE key IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_list(keys)?)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(taken.into_iter().collect())
    }

    async fn insert_claims(&mut self, claims: &[Claim]) -> Result<(), StoreError> {
        let rows: Vec<_> = claims.iter().map(|c| json!([c.key, c.expires_at])).collect();
        sqlx::query(
            "INSERT INTO used_assertions (key, expires_at) SELECT value ->> 0, value ->> 1 FROM json_each(?1) \
             WHERE true ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(json_list(&rows)?)
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

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) and migrates the SQLite ledger at `url` (`sqlite://PATH`).
    pub async fn open(url: &str, clock: ClockRef) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::NotALedger(format!("{url} is not a SQLite URL: {e}")))?
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
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = options.get_filename().display().to_string();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open SQLite database {file}: {e}")))?;

        let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .map_err(|e| StoreError::NotALedger(format!("{file} is not a consent-ledger database: {e}")))?;
        if !tables.is_empty() && !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(StoreError::NotALedger(format!(
                "{file} is a SQLite database but not a consent-ledger one (it has tables {tables:?})"
            )));
        }
        migrations::migrator(Dialect::Sqlite).run(&pool).await?;
        let head: i64 = sqlx::query_scalar("SELECT position FROM ledger_head WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let committed = Arc::new(tokio::sync::watch::Sender::new(position(head)?));
        let writer = Writer::spawn(
            Arc::new(SqliteBackend { pool: pool.clone() }),
            clock.clone(),
            committed.clone(),
        );
        let rows = RowReader::spawn(pool.clone());
        Ok(SqlStore {
            pool,
            writer,
            rows: Some(rows),
            clock,
            committed,
        })
    }
}
