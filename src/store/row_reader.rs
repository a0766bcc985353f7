//! Point reads of projection rows on SQLite, coalesced: every `row` lookup waiting when a read starts is
//! answered by one `SELECT … WHERE id IN (…)` per table.
//!
//! Each sqlx SQLite statement hops to the connection's worker thread and back, so under load the token
//! endpoint spends more time switching threads than reading: with 64 requests in flight, one statement
//! instead of sixty-odd. At low load a lookup finds the reader idle and runs alone, at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, Row, SqlitePool};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{StoreError, json_list, table_name};

/// Lookups one read answers at most.
const LOOKUPS_MAX: usize = 512;
/// Reads in flight at once: while they run, the next lookups queue up and go together.
const READS_IN_FLIGHT: usize = 1;

struct Lookup {
    table: &'static str,
    id: String,
    reply: oneshot::Sender<Result<Option<String>, StoreError>>,
}

/// The handle the store reads rows through.
pub struct RowReader {
    lookups: mpsc::UnboundedSender<Lookup>,
}

impl RowReader {
    /// Starts the reader task over `pool`.
    pub fn spawn(pool: SqlitePool) -> RowReader {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        RowReader { lookups: tx }
    }

    /// The stored state (JSON text) of row `id` in `table`.
    pub async fn get(&self, table: &'static str, id: &str) -> Result<Option<String>, StoreError> {
        let table = table_name(table)?;
        let (reply, answer) = oneshot::channel();
        self.lookups
            .send(Lookup {
                table,
                id: id.to_owned(),
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(pool: SqlitePool, mut lookups: mpsc::UnboundedReceiver<Lookup>) {
    let permits = Arc::new(Semaphore::new(READS_IN_FLIGHT));
    while let Some(first) = lookups.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the reads in flight ran goes in this one.
        let mut batch = vec![first];
        while batch.len() < LOOKUPS_MAX {
            match lookups.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut by_table: BTreeMap<&'static str, Vec<Lookup>> = BTreeMap::new();
            for l in batch {
                by_table.entry(l.table).or_default().push(l);
            }
            for (table, group) in by_table {
                answer(&pool, table, group).await;
            }
            drop(permit);
        });
    }
}

async fn answer(pool: &SqlitePool, table: &'static str, group: Vec<Lookup>) {
    match read(pool, table, &group).await {
        Ok(rows) => {
            // Several lookups may name the same row (every request of one client reads it).
            for l in group {
                let _ = l.reply.send(Ok(rows.get(&l.id).cloned()));
            }
        }
        Err(e) => {
            // One failure answers every lookup of the read; each gets its own copy, of the same kind.
            for l in group {
                let _ = l.reply.send(Err(e.duplicate()));
            }
        }
    }
}

async fn read(
    pool: &SqlitePool,
    table: &'static str,
    group: &[Lookup],
) -> Result<BTreeMap<String, String>, StoreError> {
    let ids: Vec<&str> = group.iter().map(|l| l.id.as_str()).collect();
    let sql = format!("SELECT id, state FROM {table} WHERE id IN (SELECT value FROM json_each(?1))");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(json_list(&ids)?)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?)
}
