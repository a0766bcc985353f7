//! The background task that grows the Merkle tree from the log's tail and signs checkpoints.
//!
//! It never touches the append path: it reads events the writer already committed, in position order,
//! stores the perfect subtrees they complete, and, when the schedule says so, signs the tree's root and
//! the head hash. Growing the tree by `k` events costs O(k) hashing and O(log n) reads for the right
//! edge; several nodes on one database may run it at once (every write is idempotent).

use std::sync::Arc;
use std::time::Duration;

use projections::chain::{self, Link};

use super::checkpoint::{Schedule, SignedCheckpoint};
use super::merkle::{self, Frontier, MissingNode};
use crate::clock::ClockRef;
use crate::keys::{CheckpointKey, KeyDir, KeyError};
use crate::store::{EventStore, StoreError};

/// Events read (and nodes written) per step while growing the tree.
const PAGE: u32 = 2_000;

/// How often the task looks at the log, at most.
const POLL: Duration = Duration::from_secs(1);

/// Why growing the tree or signing failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tree(#[from] MissingNode),
    #[error("the log has no event at position {0}")]
    Gap(u64),
}

/// The checkpointer of one node.
pub struct Checkpointer {
    store: Arc<dyn EventStore>,
    clock: ClockRef,
    key: CheckpointKey,
    schedule: Schedule,
    /// When this node started: before any checkpoint, the time schedule counts from here.
    started: i64,
}

impl Checkpointer {
    /// Loads (or makes) the checkpoint key in `key_dir` and publishes its public half.
    pub async fn new(
        store: Arc<dyn EventStore>,
        clock: ClockRef,
        key_dir: &KeyDir,
        schedule: Schedule,
    ) -> Result<Checkpointer, CheckpointerError> {
        let key = CheckpointKey::load_or_create(key_dir)?;
        store
            .checkpoint_key_insert(&key.public.kid, &key.public.jwk())
            .await?;
        let started = clock.now();
        Ok(Checkpointer {
            store,
            clock,
            key,
            schedule,
            started,
        })
    }

    /// The checkpointer for a server's configuration.
    pub async fn for_app(app: &crate::app::App) -> Result<Checkpointer, CheckpointerError> {
        let schedule = Schedule {
            every_events: app.config.audit.checkpoint_every_events,
            every_seconds: app.config.audit.checkpoint_every_seconds,
        };
        Self::new(
            app.store.clone(),
            app.clock.clone(),
            &KeyDir::new(&app.config.key_dir),
            schedule,
        )
        .await
    }

    /// The `kid` checkpoints are signed with.
    pub fn kid(&self) -> &str {
        &self.key.public.kid
    }

    /// Signs a checkpoint of the whole log now if one is due; returns the checkpoint recorded for that
    /// size (this node's, or another's that was first).
    pub async fn run_once(&self) -> Result<Option<SignedCheckpoint>, CheckpointerError> {
        let now = self.clock.now();
        let head = self.store.head().await?.position;
        let (last_size, last_time) = match self.store.checkpoints_before(None, 1).await?.first() {
            Some(c) => (c.position, c.time),
            None => (0, self.started),
        };
        if !self.schedule.due(head, last_size, last_time, now) {
            return Ok(None);
        }
        self.sign(head, now).await.map(Some)
    }

    /// Grows the tree to `size` events and signs a checkpoint of it at `now`.
    pub async fn sign(&self, size: u64, now: i64) -> Result<SignedCheckpoint, CheckpointerError> {
        let (frontier, head_hash) = grow(self.store.as_ref(), size).await?;
        let merkle_root = hex::encode(frontier.root());
        let kid = self.key.public.kid.clone();
        let body = SignedCheckpoint::signed_bytes(size, &head_hash, &merkle_root, now, &kid);
        let checkpoint = SignedCheckpoint {
            position: size,
            head_hash,
            merkle_root,
            time: now,
            kid,
            signature: self.key.sign(&body),
        };
        if self.store.checkpoint_insert(&checkpoint).await? {
            tracing::info!(position = size, root = %checkpoint.merkle_root, "checkpoint signed");
            return Ok(checkpoint);
        }
        // Another node signed this size first; its checkpoint is the one on record.
        Ok(self.store.checkpoint(size).await?.unwrap_or(checkpoint))
    }

    /// Runs [`Checkpointer::run_once`] every second until the process ends; failures are logged and
    /// retried on the next tick.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "checkpoint failed; retrying");
                }
            }
        })
    }
}

/// Stores the tree's subtrees up to `size` leaves (from wherever the stored tree ends) and returns the
/// frontier at `size` with the chain hash of the event at `size`.
pub async fn grow(store: &dyn EventStore, size: u64) -> Result<(Frontier, String), CheckpointerError> {
    let stored = store.merkle_size().await?;
    if size == 0 {
        return Ok((Frontier::default(), hex::encode(chain::GENESIS)));
    }
    if stored >= size {
        let nodes = store.merkle_nodes(&Frontier::keys(size)).await?;
        let frontier = Frontier::from_nodes(size, &mut merkle::source(&nodes))?;
        return Ok((frontier, head_hash_at(&store.read_from(size, 1).await?, size)?));
    }
    let nodes = store.merkle_nodes(&Frontier::keys(stored)).await?;
    let mut frontier = Frontier::from_nodes(stored, &mut merkle::source(&nodes))?;
    let mut prev = if stored == 0 {
        chain::GENESIS
    } else {
        let before = store.read_from(stored, 1).await?;
        chain::parse_hash(&head_hash_at(&before, stored)?)
            .ok_or_else(|| StoreError::Corrupt(format!("event {stored}: stored hash is not a hash")))?
    };
    let mut last = String::new();
    while frontier.size() < size {
        let next = frontier.size() + 1;
        let want = u32::try_from(size - frontier.size()).unwrap_or(PAGE).min(PAGE);
        let page = store.read_from(next, want).await?;
        if page.is_empty() {
            return Err(CheckpointerError::Gap(next));
        }
        let mut made = Vec::with_capacity(page.len() * 2);
        for e in &page {
            if e.position != frontier.size() + 1 {
                return Err(CheckpointerError::Gap(frontier.size() + 1));
            }
            let input = chain::link_bytes(&prev, &link(e));
            made.extend(frontier.push(merkle::leaf_hash(&input)));
            prev = chain::parse_hash(&e.hash).ok_or_else(|| {
                StoreError::Corrupt(format!("event {}: stored hash is not a hash", e.position))
            })?;
            last.clone_from(&e.hash);
        }
        store.merkle_insert(&made).await?;
    }
    Ok((frontier, last))
}

fn head_hash_at(events: &[crate::store::StoredEvent], position: u64) -> Result<String, CheckpointerError> {
    events
        .first()
        .filter(|e| e.position == position)
        .map(|e| e.hash.clone())
        .ok_or(CheckpointerError::Gap(position))
}

/// The chain's view of a stored event.
pub fn link(e: &crate::store::StoredEvent) -> Link<'_> {
    Link {
        position: e.position,
        stream_id: &e.stream_id,
        version: e.version,
        event_type: &e.event_type,
        payload: &e.payload,
        metadata: &e.metadata,
        recorded_at: e.recorded_at,
    }
}
