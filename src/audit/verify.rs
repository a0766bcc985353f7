//! Recomputes the hash chain over the whole log.

use projections::chain::{self, Link};

use crate::audit::progress::Progress;
use crate::store::{EventStore, StoreError, StoredEvent};

/// A position and hash an auditor recorded earlier and expects the chain still to contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub position: u64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, h) = s.split_once(':').ok_or("an anchor is POSITION:HASH")?;
        let position = p.parse().map_err(|_| format!("{p:?} is not a position"))?;
        chain::parse_hash(h).ok_or(format!("{h:?} is not a 64-digit hex hash"))?;
        Ok(Anchor {
            position,
            hash: h.to_ascii_lowercase(),
        })
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event links to the one before and the head record matches the last one.
    Intact { count: u64, head_hash: String },
    /// The first position that does not verify, and why.
    Broken { position: u64, reason: String },
}

/// Walks the log from position 1, recomputing each hash from the stored fields.
pub async fn verify(store: &dyn EventStore, anchor: Option<&Anchor>) -> Result<Verdict, StoreError> {
    verify_with(store, anchor, &mut Progress::quiet()).await
}

/// Events read per statement.
pub const PAGE_SIZE: u32 = 5_000;

/// The walk's state between events.
struct Walk<'a> {
    prev: [u8; 32],
    expected: u64,
    anchor: Option<&'a Anchor>,
    anchor_seen: bool,
}

impl Walk<'_> {
    /// Checks the next stored event; `Some` when the chain breaks there.
    fn check(&mut self, e: &StoredEvent) -> Option<Verdict> {
        let expected = self.expected;
        if e.position != expected {
            let reason = if e.position > expected {
                format!(
                    "event missing: the next stored event is at position {}",
                    e.position
                )
            } else {
                format!("position {} stored out of order", e.position)
            };
            return Some(Verdict::Broken {
                position: expected,
                reason,
            });
        }
        let computed = chain::link_hash(
            &self.prev,
            &Link {
                position: e.position,
                stream_id: &e.stream_id,
                version: e.version,
                event_type: &e.event_type,
                payload: &e.payload,
                metadata: &e.metadata,
                recorded_at: e.recorded_at,
            },
        );
        let Some(stored) = chain::parse_hash(&e.hash) else {
            return Some(Verdict::Broken {
                position: e.position,
                reason: format!("stored hash {:?} is not a hash", e.hash),
            });
        };
        if computed != stored {
            return Some(Verdict::Broken {
                position: e.position,
                reason: "hash does not match the event's contents or the previous event's hash".into(),
            });
        }
        if let Err(err) = e.decode() {
            return Some(Verdict::Broken {
                position: e.position,
                reason: format!("not a readable event: {err}"),
            });
        }
        if let Some(a) = self.anchor
            && a.position == e.position
        {
            if a.hash != e.hash {
                return Some(Verdict::Broken {
                    position: e.position,
                    reason: format!("hash differs from the anchor {}", a.hash),
                });
            }
            self.anchor_seen = true;
        }
        self.prev = stored;
        self.expected += 1;
        None
    }
}

/// [`verify`], reporting progress in events. The next page is read while this one is hashed, so the
/// database and the hashing overlap on two cores.
pub async fn verify_with(
    store: &dyn EventStore,
    anchor: Option<&Anchor>,
    progress: &mut Progress,
) -> Result<Verdict, StoreError> {
    let mut walk = Walk {
        prev: chain::GENESIS,
        expected: 1,
        anchor,
        anchor_seen: anchor.is_none_or(|a| a.position == 0),
    };
    progress.set_total(store.head().await?.position);
    let mut page = store.read_from(1, PAGE_SIZE).await?;
    while let Some(last) = page.last() {
        let following = last.position + 1;
        let (next, broken) = futures_util::future::join(store.read_from(following, PAGE_SIZE), async {
            page.iter().find_map(|e| walk.check(e))
        })
        .await;
        if let Some(verdict) = broken {
            progress.finish();
            return Ok(verdict);
        }
        progress.set(walk.expected - 1);
        page = next?;
    }
    progress.finish();
    let Walk {
        prev,
        expected,
        anchor_seen,
        ..
    } = walk;
    let last = expected - 1;
    let last_hash = hex::encode(prev);
    let head = store.head().await?;
    if head.position > last {
        return Ok(Verdict::Broken {
            position: last + 1,
            reason: format!(
                "the ledger head records position {} but the chain ends at position {last}: events were removed",
                head.position
            ),
        });
    }
    if head.position < last || head.hash != last_hash {
        return Ok(Verdict::Broken {
            position: head.position.max(1),
            reason: format!(
                "the ledger head (position {}, hash {}) does not match the chain",
                head.position, head.hash
            ),
        });
    }
    if let Some(a) = anchor.filter(|_| !anchor_seen) {
        return Ok(Verdict::Broken {
            position: a.position,
            reason: format!(
                "the anchor names position {} but the chain ends at {last}",
                a.position
            ),
        });
    }
    Ok(Verdict::Intact {
        count: last,
        head_hash: last_hash,
    })
}
