//! The event store on PostgreSQL, for several server processes sharing one database.
//!
//! Every group commit starts by locking the single `ledger_head` row (`SELECT … FOR UPDATE`). That lock
//! serialises batches from every process: positions are assigned under it, so they are gap-free and in
//! commit order, and each batch chains from the hash the previous batch committed. Batches travel as
//! arrays and are unpacked with `UNNEST`, one statement per table.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projections::{RowWrite, TABLES};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::migrations::{self, Dialect};
use super::writer::{Backend, LedgerTx, Writer};
use super::{
    AppendError, AppendRequest, AppendResult, EventStore, Head, READ_LIMIT_MAX, RowFilter, StoreError,
    StoredEvent, StoredRow, position, table_name,
};

/// The ledger in a PostgreSQL database.
pub struct PostgresStore {
    pool: PgPool,
    writer: Writer,
}

struct PgBackend {
    pool: PgPool,
}

struct PgTx(Transaction<'static, Postgres>);

fn stored_event(row: &PgRow) -> Result<StoredEvent, sqlx::Error> {
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

fn head_of(row: &PgRow) -> Result<Head, sqlx::Error> {
    Ok(Head {
        position: position(row.try_get(0)?),
        hash: row.try_get(1)?,
        recorded_at: row.try_get(2)?,
    })
}

impl LedgerTx for PgTx {
    async fn lock_head(&mut self) -> Result<Head, StoreError> {
        let row = sqlx::query("SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *self.0)
            .await?;
        Ok(head_of(&row)?)
    }

    async fn stream_versions(&mut self, streams: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT stream_id, MAX(version) FROM events WHERE stream_id = ANY($1) GROUP BY stream_id",
        )
        .bind(streams)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, position(r.try_get(1)?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn known_keys(&mut self, keys: &[&str]) -> Result<BTreeMap<String, AppendResult>, StoreError> {
        let rows = sqlx::query("SELECT key, result FROM idempotency_keys WHERE key = ANY($1)")
            .bind(keys)
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
        let column = |f: fn(&StoredEvent) -> i64| events.iter().map(f).collect::<Vec<i64>>();
        let text = |f: fn(&StoredEvent) -> &str| events.iter().map(f).collect::<Vec<&str>>();
        sqlx::query(
            "INSERT INTO events (position, stream_id, version, event_type, payload, metadata, recorded_at, hash) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                                  $7::bigint[], $8::text[])",
        )
        .bind(column(|e| e.position as i64))
        .bind(text(|e| &e.stream_id))
        .bind(column(|e| e.version as i64))
        .bind(text(|e| &e.event_type))
        .bind(text(|e| &e.payload))
        .bind(text(|e| &e.metadata))
        .bind(column(|e| e.recorded_at))
        .bind(text(|e| &e.hash))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn load_rows(
        &mut self,
        table: &'static str,
        ids: &BTreeSet<String>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = format!("SELECT id, state FROM {} WHERE id = ANY($1)", table_name(table)?);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
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
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, client_id = excluded.client_id, \
             delegation_id = excluded.delegation_id, state = excluded.state",
            table_name(table)?
        );
        let opt =
            |f: fn(&RowWrite) -> &Option<String>| rows.iter().map(|w| f(w).as_deref()).collect::<Vec<_>>();
        sqlx::query(AssertSqlSafe(sql))
            .bind(rows.iter().map(|w| w.id.as_str()).collect::<Vec<_>>())
            .bind(opt(|w| &w.index.subject))
            .bind(opt(|w| &w.index.client_id))
            .bind(opt(|w| &w.index.delegation_id))
            .bind(rows.iter().map(|w| w.state.to_string()).collect::<Vec<_>>())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_keys(&mut self, keys: &[(String, AppendResult)]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO idempotency_keys (key, result) SELECT * FROM UNNEST($1::text[], $2::text[])",
        )
        .bind(keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        .bind(
            keys.iter()
                .map(|(_, r)| serde_json::to_string(r).unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn set_head(&mut self, head: &Head) -> Result<(), StoreError> {
        sqlx::query("UPDATE ledger_head SET position = $1, hash = $2, recorded_at = $3 WHERE id = 1")
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

impl Backend for PgBackend {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx(self.pool.begin().await?))
    }
}

impl PostgresStore {
    /// Connects to and migrates the PostgreSQL ledger at `url`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(format!("not a PostgreSQL URL: {e}")))?
            // The log grows fast from empty: a generic plan cached while a table was tiny would keep
            // scanning it whole long after it is large. Plan each statement for its actual arguments.
            .options([("plan_cache_mode", "force_custom_plan")]);
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("cannot reach PostgreSQL at {target}: {e}")))?;
        migrations::migrator(Dialect::Postgres).run(&pool).await?;
        let writer = Writer::spawn(Arc::new(PgBackend { pool: pool.clone() }));
        Ok(PostgresStore { pool, writer })
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, AppendError> {
        self.writer.append(request).await
    }

    async fn read_from(&self, position: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, stream_id, version, event_type, payload, metadata, recorded_at, hash \
             FROM events WHERE position >= $1 ORDER BY position LIMIT $2",
        )
        .bind(position as i64)
        .bind(i64::from(limit.min(READ_LIMIT_MAX)))
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
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.map(position))
    }

    async fn row(&self, table: &'static str, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let sql = format!("SELECT state FROM {} WHERE id = $1", table_name(table)?);
        let state: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
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
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
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
        sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO used_assertions (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
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
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
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
