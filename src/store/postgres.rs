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

use projections::RowWrite;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use super::migrations::{self, Dialect};
use super::sql::{SqlStore, head_of};
use super::writer::{Backend, LedgerTx, Writer};
use super::{AppendResult, Claim, Head, StoreError, StoredEvent, position, table_name};
use crate::clock::ClockRef;

/// The ledger in a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

struct PgBackend {
    pool: PgPool,
}

struct PgTx(Transaction<'static, Postgres>);

impl LedgerTx for PgTx {
    async fn lock_head(&mut self) -> Result<Head, StoreError> {
        let row = sqlx::query("SELECT position, hash, recorded_at FROM ledger_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *self.0)
            .await?;
        head_of(&row)
    }

    async fn stream_versions(&mut self, streams: &[&str]) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT stream_id, version FROM streams WHERE stream_id = ANY($1)")
            .bind(streams)
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, position(r.try_get(1)?)?)))
            .collect()
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

    async fn upsert_streams(&mut self, versions: &BTreeMap<&str, u64>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO streams (stream_id, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
        )
        .bind(versions.keys().copied().collect::<Vec<&str>>())
        .bind(versions.values().map(|v| *v as i64).collect::<Vec<i64>>())
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
                .map(|(_, r)| serde_json::to_string(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Corrupt(format!("cannot encode an append result: {e}")))?,
        )
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn claimed(&mut self, keys: &[&str], now: i64) -> Result<BTreeMap<String, i64>, StoreError> {
        sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *self.0)
            .await?;
        let taken: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, expires_at FROM used_assertions WHERE key = ANY($1)")
                .bind(keys)
                .fetch_all(&mut *self.0)
                .await?;
        Ok(taken.into_iter().collect())
    }

    async fn insert_claims(&mut self, claims: &[Claim]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO used_assertions (key, expires_at) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(claims.iter().map(|c| c.key.as_str()).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.expires_at).collect::<Vec<_>>())
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

    async fn notify(&mut self, head: &Head) -> Result<(), StoreError> {
        // Channels are per database, not per schema: the payload names the schema, so ledgers in
        // other schemas of the same database do not wake this one's followers.
        sqlx::query("SELECT pg_notify($1, current_schema() || ':' || $2)")
            .bind(COMMITTED_CHANNEL)
            .bind(head.position.to_string())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }
}

/// The `NOTIFY` channel every commit announces its last position on.
const COMMITTED_CHANNEL: &str = "consent_ledger_committed";

/// Listens for every process's commits and raises `committed` to each; sqlx reconnects a lost listener
/// (notifications sent meanwhile are lost, which followers cover by reading again from time to time).
/// The task ends when the store is closed (so closing the pool does not wait for the listener's
/// connection) or dropped.
async fn listen(pool: &PgPool, committed: Arc<tokio::sync::watch::Sender<u64>>) -> Result<(), StoreError> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(COMMITTED_CHANNEL).await?;
    let committed = Arc::downgrade(&committed);
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut closed = std::pin::pin!(pool.close_event());
        loop {
            let notification = tokio::select! {
                biased;
                _ = &mut closed => break,
                n = listener.recv() => n,
            };
            if pool.is_closed() {
                break;
            }
            let Some(committed) = committed.upgrade() else {
                break;
            };
            match notification {
                Ok(n) => {
                    let ours = n
                        .payload()
                        .rsplit_once(':')
                        .filter(|(s, _)| *s == schema)
                        .and_then(|(_, p)| p.parse::<u64>().ok());
                    if let Some(p) = ours {
                        super::writer::raise(&committed, p);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for commits failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

impl Backend for PgBackend {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx(self.pool.begin().await?))
    }
}

impl SqlStore<Postgres> {
    /// Connects to and migrates the PostgreSQL ledger at `url`.
    pub async fn open(url: &str, clock: ClockRef) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::NotALedger(format!("not a PostgreSQL URL: {e}")))?
            // The log grows fast from empty: a generic plan cached while a table was tiny would keep
            // scanning it whole long after it is large. Plan each statement for its actual arguments.
            // Statistics lag the growth too (autoanalyze runs after 10 % more rows): measured on a
            // young ledger, the writer's key lookups on `streams` and `tokens` became whole-table
            // scans, one per batch, as the tables grew. Every statement the server runs has a key or
            // index path, so a scan of a whole table is never the plan it wants.
            .options([
                ("plan_cache_mode", "force_custom_plan"),
                ("enable_seqscan", "off"),
            ]);
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach PostgreSQL at {target}: {e}")))?;
        migrations::migrator(Dialect::Postgres).run(&pool).await?;
        let head: i64 = sqlx::query_scalar("SELECT position FROM ledger_head WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let committed = Arc::new(tokio::sync::watch::Sender::new(position(head)?));
        listen(&pool, committed.clone()).await?;
        let writer = Writer::spawn(
            Arc::new(PgBackend { pool: pool.clone() }),
            clock.clone(),
            committed.clone(),
        );
        Ok(SqlStore {
            pool,
            writer,
            rows: None,
            clock,
            committed,
        })
    }
}
