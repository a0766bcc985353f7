//! Group commit: one writer task per process turns many concurrent appends into one transaction.
//!
//! A commit with fsync costs about a millisecond; committing each append alone would cap the ledger near
//! a thousand appends a second. The writer takes every append waiting in its queue (up to
//! [`BATCH_EVENTS_MAX`] events), plans them with [`batch::plan`], writes them with one statement per
//! table, commits once, and then answers each caller. Nobody is answered before the commit is durable.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use projections::{LedgerState, RowWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::batch;
use super::{
    AppendError, AppendRequest, AppendResult, BATCH_EVENTS_MAX, Claim, Head, StoreError, StoredEvent,
};
use crate::clock::ClockRef;

/// Appends that may wait for the writer before callers are slowed down.
const QUEUE_MAX: usize = 4_096;
/// How many times the writer yields, when its queue is empty, before committing what it has.
const GATHER_YIELDS_MAX: u32 = 4;

/// The statements one group commit needs, inside one open transaction.
pub(crate) trait LedgerTx: Send {
    /// Reads the head and takes the ledger's write lock until commit.
    fn lock_head(&mut self) -> impl Future<Output = Result<Head, StoreError>> + Send;
    /// The current version of each named stream that exists (from `streams`, one key lookup each).
    fn stream_versions(
        &mut self,
        streams: &[&str],
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, StoreError>> + Send;
    /// Stored results of the named idempotency keys that were used before.
    fn known_keys(
        &mut self,
        keys: &[&str],
    ) -> impl Future<Output = Result<BTreeMap<String, AppendResult>, StoreError>> + Send;
    fn insert_events(
        &mut self,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records each stream's new current version.
    fn upsert_streams(
        &mut self,
        versions: &BTreeMap<&str, u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Current state of the named rows of one projection table that exist.
    fn load_rows(
        &mut self,
        table: &'static str,
        ids: &BTreeSet<String>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    fn upsert_rows(
        &mut self,
        table: &'static str,
        rows: &[&RowWrite],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn insert_keys(
        &mut self,
        keys: &[(String, AppendResult)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Deletes the claims expired before `now` (Unix seconds), then answers the expiry of each of
    /// `keys` that is stored.
    fn claimed(
        &mut self,
        keys: &[&str],
        now: i64,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, StoreError>> + Send;
    /// Stores each claim, replacing an expired one of the same key.
    fn insert_claims(&mut self, claims: &[Claim]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn set_head(&mut self, head: &Head) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Tells other processes, on commit, that the log now ends at `head` (PostgreSQL `NOTIFY`, sent in
    /// the transaction so it is delivered only if the batch commits). Nothing on a database that only
    /// one process writes.
    fn notify(&mut self, _head: &Head) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A database the writer can open transactions on.
pub(crate) trait Backend: Send + Sync + 'static {
    type Tx: LedgerTx;
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
}

/// Plans and writes one batch in one transaction; returns one answer per request.
pub(crate) async fn commit_batch<B: Backend>(
    backend: &B,
    requests: &[AppendRequest],
    now_micros: i64,
) -> Result<Vec<Result<AppendResult, AppendError>>, StoreError> {
    let mut tx = backend.begin().await?;
    let head = tx.lock_head().await?;
    let versions = tx.stream_versions(&batch::streams(requests)).await?;
    let keys = batch::keys(requests);
    let known = if keys.is_empty() {
        BTreeMap::new()
    } else {
        tx.known_keys(&keys).await?
    };
    let claimed = match batch::claim_keys(requests) {
        (keys, Some(earliest)) => tx.claimed(&keys, earliest).await?,
        _ => BTreeMap::new(),
    };
    let plan = batch::plan(&head, &versions, &known, &claimed, requests, now_micros)?;
    if !plan.new_claims.is_empty() {
        tx.insert_claims(&plan.new_claims).await?;
    }
    if plan.events.is_empty() {
        // No event accepted: release the lock, keeping only the claims.
        tx.commit().await?;
        return Ok(plan.results);
    }

    tx.insert_events(&plan.events).await?;
    let mut current: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &plan.events {
        let v = current.entry(e.stream_id.as_str()).or_default();
        *v = (*v).max(e.version);
    }
    tx.upsert_streams(&current).await?;
    let touched = LedgerState::touched(&plan.recorded);
    let mut loaded = Vec::new();
    for (table, ids) in &touched {
        for (id, state) in tx.load_rows(table, ids).await? {
            let state = serde_json::from_str(&state)
                .map_err(|e| StoreError::Corrupt(format!("{table} row {id}: {e}")))?;
            loaded.push((*table, id, state));
        }
    }
    let writes = batch::project(&plan.recorded, &touched, loaded)?;
    for table in touched.keys() {
        let rows: Vec<&RowWrite> = writes.iter().filter(|w| w.table == *table).collect();
        if !rows.is_empty() {
            tx.upsert_rows(table, &rows).await?;
        }
    }
    if !plan.new_keys.is_empty() {
        tx.insert_keys(&plan.new_keys).await?;
    }
    tx.set_head(&plan.head).await?;
    tx.notify(&plan.head).await?;
    tx.commit().await?;
    Ok(plan.results)
}

type Reply = oneshot::Sender<Result<AppendResult, AppendError>>;

/// Raises the committed position to `position`, never lowers it: followers wake only for news.
pub(crate) fn raise(committed: &watch::Sender<u64>, position: u64) {
    committed.send_if_modified(|head| {
        let news = position > *head;
        if news {
            *head = position;
        }
        news
    });
}

/// The handle appenders use to reach the writer task.
pub(crate) struct Writer {
    // A std mutex: held only to clone or drop the sender, never across an await.
    queue: std::sync::Mutex<Option<mpsc::Sender<(AppendRequest, Reply)>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The batch's `recorded_at` in microseconds, read once per batch; a clock before 1970 fails the batch
/// rather than recording a made-up time in the chain.
fn now_micros(clock: &ClockRef) -> Result<i64, StoreError> {
    let now = clock.now_micros();
    if now < 0 {
        return Err(StoreError::CommitFailed(
            "the clock is outside the range a ledger records".into(),
        ));
    }
    Ok(now)
}

impl Writer {
    /// Starts the writer task for `backend`, stamping each batch from `clock`, and raising `committed`
    /// to the last position of each batch once it is durable.
    pub(crate) fn spawn<B: Backend>(backend: Arc<B>, clock: ClockRef, head: Arc<watch::Sender<u64>>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(AppendRequest, Reply)>(QUEUE_MAX);
        let task = tokio::spawn(async move {
            let mut jobs: Vec<(AppendRequest, Reply)> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut events = first.0.events.len();
                jobs.push(first);
                // Callers just answered by the last commit are still being scheduled; yielding a few
                // times lets them queue their next appends, so batches grow with the load instead of
                // the writer committing the first few alone.
                let mut yields = 0;
                while events < BATCH_EVENTS_MAX {
                    match rx.try_recv() {
                        Ok(job) => {
                            events += job.0.events.len();
                            jobs.push(job);
                        }
                        Err(_) if yields < GATHER_YIELDS_MAX => {
                            yields += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
                metrics::gauge!("ledger_writer_queue_depth").set(rx.len() as f64);
                metrics::histogram!("ledger_append_batch_events").record(events as f64);
                let started = crate::telemetry::stopwatch();
                let committed = match now_micros(&clock) {
                    Ok(now) => commit_batch(backend.as_ref(), &requests, now).await,
                    Err(e) => Err(e),
                };
                metrics::histogram!("ledger_commit_seconds").record(started.elapsed().as_secs_f64());
                if committed.is_err() {
                    metrics::counter!("ledger_commit_failures_total").increment(1);
                }
                match committed {
                    Ok(results) => {
                        let last = results
                            .iter()
                            .filter_map(|r| r.as_ref().ok())
                            .map(|r| r.last_position)
                            .max();
                        if let Some(last) = last {
                            raise(&head, last);
                        }
                        for (reply, result) in replies.into_iter().zip(results) {
                            // A caller that gave up waiting is not an error: its append is durable.
                            let _ = reply.send(result);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, appends = replies.len(), "group commit failed");
                        // A transient failure is the batch's, not the callers': each is told its append
                        // did not commit and may be retried. Corrupt data stays what it is.
                        let failed = match e {
                            StoreError::CommitFailed(m) => StoreError::CommitFailed(m),
                            e if e.is_transient() => StoreError::CommitFailed(e.to_string()),
                            e => e,
                        };
                        for reply in replies {
                            let _ = reply.send(Err(AppendError::Store(failed.duplicate())));
                        }
                    }
                }
            }
        });
        Writer {
            queue: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<(AppendRequest, Reply)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues `request` and waits until it is durable or refused.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendResult, AppendError> {
        // A stream's version counts one entity's events only if nothing else is ever appended to it.
        if let Some((e, belongs_to)) = request
            .events
            .iter()
            .map(|e| (e, e.event.stream_id()))
            .find(|(e, own)| *own != e.stream_id)
        {
            return Err(AppendError::WrongStream {
                stream_id: e.stream_id.clone(),
                belongs_to,
                event_type: e.event.event_type(),
            });
        }
        let sender = self.sender().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send((request, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Refuses new appends, lets the writer commit what is queued, and waits for it to finish.
    pub(crate) async fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
