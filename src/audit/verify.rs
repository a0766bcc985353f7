//! Recomputes the hash chain over the whole log.

use futures_util::StreamExt;
use projections::chain::{self, Link};

use crate::store::{EventStore, StoreError};

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
    let mut prev = chain::GENESIS;
    let mut expected = 1u64;
    let mut anchor_seen = anchor.is_none_or(|a| a.position == 0);
    let mut events = store.stream_from(1);
    while let Some(e) = events.next().await {
        let e = e?;
        if e.position != expected {
            let reason = if e.position > expected {
                format!(
                    "event missing: the next stored event is at position {}",
                    e.position
                )
            } else {
                format!("position {} stored out of order", e.position)
            };
            return Ok(Verdict::Broken {
                position: expected,
                reason,
            });
        }
        let computed = chain::link_hash(
            &prev,
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
            return Ok(Verdict::Broken {
                position: e.position,
                reason: format!("stored hash {:?} is not a hash", e.hash),
            });
        };
        if computed != stored {
            return Ok(Verdict::Broken {
                position: e.position,
                reason: "hash does not match the event's contents or the previous event's hash".into(),
            });
        }
        if let Err(err) = e.decode() {
            return Ok(Verdict::Broken {
                position: e.position,
                reason: format!("not a readable event: {err}"),
            });
        }
        if let Some(a) = anchor
            && a.position == e.position
        {
            if a.hash != e.hash {
                return Ok(Verdict::Broken {
                    position: e.position,
                    reason: format!("hash differs from the anchor {}", a.hash),
                });
            }
            anchor_seen = true;
        }
        prev = stored;
        expected += 1;
    }
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
