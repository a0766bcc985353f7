//! The checkpoint tables: the Merkle tree's perfect subtrees, signed checkpoints, and the checkpoint
//! keys' public halves. Every statement is a primary-key lookup or a key range.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{SqlStore, StoreError, position};
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::merkle::{Hash, Node, NodeKey};

/// Nodes per statement when reading or writing the tree.
const NODES_PER_STATEMENT: usize = 100;

/// What the checkpointer and the audit routes read and write.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// How many leaves the stored tree holds (the highest leaf index plus one).
    async fn merkle_size(&self) -> Result<u64, StoreError>;

    /// The stored subtrees among `keys`; absent ones are left out.
    async fn merkle_nodes(&self, keys: &[NodeKey]) -> Result<HashMap<NodeKey, Hash>, StoreError>;

    /// Stores `nodes` in one transaction, keeping any already there (they can only be equal: the tree
    /// is a function of the log).
    async fn merkle_insert(&self, nodes: &[Node]) -> Result<(), StoreError>;

    /// Records `checkpoint` unless one of its size exists; true when this one was recorded.
    async fn checkpoint_insert(&self, checkpoint: &SignedCheckpoint) -> Result<bool, StoreError>;

    /// The checkpoint of tree size `size`.
    async fn checkpoint(&self, size: u64) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// Up to `limit` checkpoints smaller than `before` (all when `None`), largest first.
    async fn checkpoints_before(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<SignedCheckpoint>, StoreError>;

    /// Up to `limit` checkpoints larger than `after`, smallest first.
    async fn checkpoints_after(&self, after: u64, limit: u32) -> Result<Vec<SignedCheckpoint>, StoreError>;

    /// Publishes a checkpoint key's public JWK (once per `kid`).
    async fn checkpoint_key_insert(&self, kid: &str, jwk: &serde_json::Value) -> Result<(), StoreError>;

    /// Every published checkpoint key's JWK, by `kid`.
    async fn checkpoint_keys(&self) -> Result<Vec<serde_json::Value>, StoreError>;
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn hash(text: &str) -> Result<Hash, StoreError> {
    projections::chain::parse_hash(text)
        .ok_or_else(|| StoreError::Corrupt(format!("merkle node hash {text:?} is not a hash")))
}

fn checkpoint_of<R: Row>(row: &R) -> Result<SignedCheckpoint, StoreError>
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(SignedCheckpoint {
        position: position(row.try_get(0)?)?,
        head_hash: row.try_get(1)?,
        merkle_root: row.try_get(2)?,
        time: row.try_get(3)?,
        kid: row.try_get(4)?,
        signature: row.try_get(5)?,
    })
}

const CHECKPOINT_COLUMNS: &str = "size, head_hash, merkle_root, time, kid, signature";

#[async_trait]
impl<DB: Database> CheckpointStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn merkle_size(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT idx FROM merkle_nodes WHERE level = 0 ORDER BY idx DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(position(r.try_get(0)?)? + 1),
            None => Ok(0),
        }
    }

    async fn merkle_nodes(&self, keys: &[NodeKey]) -> Result<HashMap<NodeKey, Hash>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(NODES_PER_STATEMENT) {
            let mut sql = String::from("SELECT level, idx, hash FROM merkle_nodes WHERE ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                sql.push_str(&format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2));
            }
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (level, index) in chunk {
                query = query.bind(i64::from(*level)).bind(int(*index));
            }
            for r in query.fetch_all(&self.pool).await? {
                let level = u8::try_from(r.try_get::<i64, _>(0)?)
                    .map_err(|_| StoreError::Corrupt("merkle node level out of range".into()))?;
                let index = position(r.try_get(1)?)?;
                out.insert((level, index), hash(&r.try_get::<String, _>(2)?)?);
            }
        }
        Ok(out)
    }

    async fn merkle_insert(&self, nodes: &[Node]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in nodes.chunks(NODES_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO merkle_nodes (level, idx, hash) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
            }
            sql.push_str(" ON CONFLICT (level, idx) DO NOTHING");
            let hexes: Vec<String> = chunk.iter().map(|(_, _, h)| hex::encode(h)).collect();
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for ((level, index, _), h) in chunk.iter().zip(&hexes) {
                query = query.bind(i64::from(*level)).bind(int(*index)).bind(h.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoint_insert(&self, c: &SignedCheckpoint) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO checkpoints (size, head_hash, merkle_root, time, kid, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (size) DO NOTHING RETURNING size",
        )
        .bind(int(c.position))
        .bind(c.head_hash.as_str())
        .bind(c.merkle_root.as_str())
        .bind(c.time)
        .bind(c.kid.as_str())
        .bind(c.signature.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    async fn checkpoint(&self, size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(int(size))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(checkpoint_of).transpose()
    }

    async fn checkpoints_before(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size < $1 ORDER BY size DESC LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(before.map_or(i64::MAX, int))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    async fn checkpoints_after(&self, after: u64, limit: u32) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(int(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    async fn checkpoint_key_insert(&self, kid: &str, jwk: &serde_json::Value) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO checkpoint_keys (kid, jwk) VALUES ($1, $2) ON CONFLICT (kid) DO NOTHING")
            .bind(kid)
            .bind(projections::chain::canonical_json(jwk).as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn checkpoint_keys(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query("SELECT kid, jwk FROM checkpoint_keys ORDER BY kid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let kid: String = r.try_get(0)?;
                serde_json::from_str(&r.try_get::<String, _>(1)?)
                    .map_err(|e| StoreError::Corrupt(format!("checkpoint key {kid}: {e}")))
            })
            .collect()
    }
}
