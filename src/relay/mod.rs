//! Publishes the ledger to a NATS JetStream stream, every committed event in position order, once.
//!
//! This is the imperative shell: it reads the log page by page, publishes, and reads acknowledgements;
//! every decision is in [`plan`]. The stream itself is the source of truth for how far publishing got:
//! on start, and after anything unexpected, the relay reads the stream's last sequence and resumes after
//! it. Nothing is kept on disk or in the ledger.
//!
//! # Ordering and duplicates
//!
//! Stream sequence N holds ledger position N ([`plan`]): each message carries
//! `Nats-Expected-Last-Sequence: N - 1`, `Nats-Msg-Id: N` and `Ledger-Position: N`. So:
//!
//! - a crash between publishing and reading the acknowledgement is harmless: the restarted relay reads
//!   the stream's last sequence and publishes after it; a message in flight at the crash is either
//!   stored (and skipped) or not (and published again);
//! - several relays at once (one per node) cannot store a position twice or out of order: a relay
//!   that fell behind has its publication recognised as a duplicate by its message id (inside the
//!   duplicate window) or refused with "wrong last sequence" (after it), and reads the resume point
//!   again. They race harmlessly; the stream's sequence decides.
//!
//! Acknowledgements are pipelined, up to `max_in_flight` at once, on one connection. JetStream assigns
//! sequences in the order a stream receives messages, and one connection delivers them in the order
//! sent, so pipelining keeps the order; and if it did not, the expected-last-sequence check would refuse
//! the message that came early (the relay then reads the resume point again) rather than store it out
//! of order.
//!
//! Position 1 expects last sequence 0, an empty stream; nats-server enforces that too (checked with
//! 2.9.10).

pub mod message;
pub mod plan;

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};

use crate::store::{EventStore, StoreError};
use plan::{Ack, Inconsistency, Step};

/// Where and how the relay publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The JetStream stream, created when missing.
    pub stream: String,
    /// Events are published on `<prefix>.<EventType>`.
    pub subject_prefix: String,
    /// How long the stream remembers message ids for deduplication.
    pub duplicate_window: Duration,
    /// How often the relay looks for new events once it has published everything.
    pub poll_interval: Duration,
    /// Events read per statement.
    pub page_size: u32,
    /// Publications awaiting their acknowledgement at once.
    pub max_in_flight: usize,
}

impl RelayConfig {
    /// The defaults for a server at `nats_url`: stream `LEDGER`, subjects `ledger.<EventType>`, a
    /// two-minute duplicate window (JetStream's default), a 200 ms poll.
    pub fn new(nats_url: impl Into<String>) -> RelayConfig {
        RelayConfig {
            nats_url: nats_url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            duplicate_window: Duration::from_secs(120),
            poll_interval: Duration::from_millis(200),
            page_size: 500,
            max_in_flight: 256,
        }
    }
}

/// The stream the relay publishes to unless told otherwise.
pub const DEFAULT_STREAM: &str = "LEDGER";
/// The subject prefix unless told otherwise.
pub const DEFAULT_SUBJECT_PREFIX: &str = "ledger";

/// How long the relay waits before trying again after a failure a retry may cure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The options cannot work.
    #[error("{0}")]
    Config(String),
    /// The first connection to the NATS server failed.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A JetStream request failed (stream set-up, stream info, reading a message).
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The stream and the ledger disagree; publishing on would be wrong.
    #[error(transparent)]
    Inconsistent(#[from] Inconsistency),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RelayError {
    /// True when waiting and trying again may cure it.
    fn is_transient(&self) -> bool {
        match self {
            RelayError::JetStream(_) => true,
            RelayError::Store(e) => e.is_transient(),
            RelayError::Config(_) | RelayError::Connect { .. } | RelayError::Inconsistent(_) => false,
        }
    }
}

impl From<plan::PlanError> for RelayError {
    fn from(e: plan::PlanError) -> Self {
        match e {
            plan::PlanError::Inconsistent(i) => RelayError::Inconsistent(i),
            plan::PlanError::Store(s) => RelayError::Store(s),
        }
    }
}

fn jetstream_error(what: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::JetStream(format!("{what}: {e}"))
}

/// Publishes the ledger until `shutdown` resolves; returns early only on an error no retry cures.
pub async fn run(
    store: &dyn EventStore,
    config: &RelayConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RelayError> {
    plan::check_subject_prefix(&config.subject_prefix).map_err(RelayError::Config)?;
    if config.page_size == 0 || config.max_in_flight == 0 {
        return Err(RelayError::Config(
            "page size and in-flight publications must be at least 1".into(),
        ));
    }
    let client = async_nats::ConnectOptions::new()
        .name("consent-ledger relay")
        .connect(config.nats_url.as_str())
        .await
        .map_err(|e| RelayError::Connect {
            url: config.nats_url.clone(),
            reason: e.to_string(),
        })?;
    let js = jetstream::context::ContextBuilder::new()
        .max_ack_inflight(config.max_in_flight)
        .backpressure_on_inflight(true)
        .build(client);
    tokio::select! {
        r = relay(store, &js, config) => r,
        () = shutdown => {
            tracing::info!("relay stopping; messages not yet acknowledged are published again on restart");
            Ok(())
        }
    }
}

/// The loop: resume from the stream, publish until caught up, wait, repeat; after trouble, set the
/// stream up and resume from it again.
async fn relay(
    store: &dyn EventStore,
    js: &jetstream::Context,
    config: &RelayConfig,
) -> Result<(), RelayError> {
    let mut stream: Option<stream::Stream> = None;
    let mut resume: Option<u64> = None;
    loop {
        match publish_once(store, js, config, &mut stream, resume).await {
            Ok(Pumped::CaughtUp(at)) => {
                resume = Some(at);
                tokio::time::sleep(config.poll_interval).await;
            }
            Ok(Pumped::Reread) => resume = None,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "relay will retry");
                stream = None;
                resume = None;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One turn of the loop: the stream set up if it is not, the resume point read if it is not known,
/// then everything after it published.
async fn publish_once(
    store: &dyn EventStore,
    js: &jetstream::Context,
    config: &RelayConfig,
    stream: &mut Option<stream::Stream>,
    resume: Option<u64>,
) -> Result<Pumped, RelayError> {
    let from = match (resume, stream.as_ref()) {
        (Some(r), Some(_)) => r,
        (_, Some(s)) => resume_point(s, store).await?,
        (_, None) => {
            let s = stream.insert(ensure_stream(js, config).await?);
            let r = resume_point(s, store).await?;
            tracing::info!(stream = %config.stream, resume_after = r, "relay publishing");
            r
        }
    };
    publish_from(store, js, config, from).await
}

/// Creates the stream when missing; on an existing stream, adds the relay's subjects and sets its
/// duplicate window only when they differ, leaving every other setting (limits, replicas) as set.
async fn ensure_stream(js: &jetstream::Context, config: &RelayConfig) -> Result<stream::Stream, RelayError> {
    let subjects = format!("{}.>", config.subject_prefix);
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: vec![subjects.clone()],
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    let mut s = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| jetstream_error(&format!("stream {}", config.stream), e))?;
    let info = s.info().await.map_err(|e| jetstream_error("stream info", e))?;
    let mut current = info.config.clone();
    let mut changed = false;
    if !current.subjects.contains(&subjects) {
        current.subjects.push(subjects);
        changed = true;
    }
    if current.duplicate_window != config.duplicate_window {
        current.duplicate_window = config.duplicate_window;
        changed = true;
    }
    if changed {
        js.update_stream(&current)
            .await
            .map_err(|e| jetstream_error(&format!("updating stream {}", config.stream), e))?;
    }
    Ok(s)
}

/// The last position the stream holds.
async fn resume_point(stream: &stream::Stream, store: &dyn EventStore) -> Result<u64, RelayError> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| jetstream_error("stream info", e))?;
    let last_sequence = info.state.last_sequence;
    let last_position = if last_sequence == 0 {
        None
    } else {
        match stream.get_raw_message(last_sequence).await {
            Ok(m) => Some(
                m.headers
                    .get(plan::POSITION_HEADER)
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or(Inconsistency::Mismatch {
                        sequence: last_sequence,
                        position: 0,
                    })?,
            ),
            // Removed by the stream's limits (or deleted): the sequence still says how far it got.
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(jetstream_error("reading the stream's last message", e)),
        }
    };
    let head = store.head().await?.position;
    let resume = plan::resume_point(last_sequence, last_position, head)?;
    metrics::gauge!("relay_lag_positions").set(head.saturating_sub(resume) as f64);
    Ok(resume)
}

/// How a run of publishing ended.
enum Pumped {
    /// Everything up to this position is in the stream and the log has nothing after it.
    CaughtUp(u64),
    /// The stream is not where the relay believed: read the resume point again.
    Reread,
}

/// Publishes the log after `resume`, page by page, with up to `max_in_flight` acknowledgements awaited
/// at once, oldest first.
async fn publish_from(
    store: &dyn EventStore,
    js: &jetstream::Context,
    config: &RelayConfig,
    mut resume: u64,
) -> Result<Pumped, RelayError> {
    loop {
        let page = store.read_from(resume + 1, config.page_size).await?;
        if page.is_empty() {
            metrics::gauge!("relay_lag_positions").set(0.0);
            return Ok(Pumped::CaughtUp(resume));
        }
        let mut in_flight = VecDeque::with_capacity(config.max_in_flight);
        for p in plan::publications(resume, &page, &config.subject_prefix)? {
            if in_flight.len() >= config.max_in_flight {
                match settle(in_flight.pop_front()).await {
                    Step::Advance(at) => resume = at,
                    Step::Reread => return Ok(Pumped::Reread),
                    Step::Stop(i) => return Err(i.into()),
                }
            }
            let message = PublishMessage::build()
                .payload(p.body.into())
                .message_id(p.position.to_string())
                .expected_last_sequence(p.expected_last_sequence)
                .header(plan::POSITION_HEADER, p.position.to_string());
            match js.send_publish(p.subject, message).await {
                Ok(ack) => in_flight.push_back((p.position, ack)),
                Err(e) => {
                    tracing::warn!(position = p.position, error = %e, "publish failed");
                    return Ok(Pumped::Reread);
                }
            }
        }
        while !in_flight.is_empty() {
            match settle(in_flight.pop_front()).await {
                Step::Advance(at) => resume = at,
                Step::Reread => return Ok(Pumped::Reread),
                Step::Stop(i) => return Err(i.into()),
            }
        }
        let head = page.last().map_or(resume, |e| e.position);
        tracing::debug!(published_through = head, "relay page acknowledged");
    }
}

/// Awaits one acknowledgement and decides what it means.
async fn settle(next: Option<(u64, jetstream::context::PublishAckFuture)>) -> Step {
    let Some((position, ack)) = next else {
        return Step::Reread;
    };
    let ack = match ack.await {
        Ok(a) if a.duplicate => Ack::Duplicate { sequence: a.sequence },
        Ok(a) => {
            metrics::counter!("relay_published_total").increment(1);
            Ack::Stored { sequence: a.sequence }
        }
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            tracing::info!(
                position,
                "another relay published this position first; resuming from the stream"
            );
            Ack::WrongLastSequence
        }
        Err(e) => {
            tracing::warn!(position, error = %e, "no acknowledgement; resuming from the stream");
            Ack::Failed
        }
    };
    plan::after_ack(position, ack)
}
