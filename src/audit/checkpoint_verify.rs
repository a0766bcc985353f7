//! Checks the ledger against checkpoints kept elsewhere: each checkpoint's signature, then the Merkle
//! root and head hash recomputed from the rows at each checkpoint's size.
//!
//! Recomputing the chain after rewriting history passes `audit verify`, but cannot reproduce a signed
//! root over the old history: the first checkpoint that covers a changed or missing event fails.

use projections::chain;

use super::checkpoint::{PublicKey, SignedCheckpoint};
use super::checkpointer::link;
use super::merkle::{self, Frontier};
use super::progress::Progress;
use super::verify::{PAGE_SIZE, Verdict};
use crate::store::{EventStore, StoreError};

/// Checks every signature in `checkpoints` against `keys`, then walks the log from position 1 and
/// compares each checkpoint with the tree and chain recomputed from the rows.
pub async fn verify_checkpoints(
    store: &dyn EventStore,
    checkpoints: &[SignedCheckpoint],
    keys: &[PublicKey],
    progress: &mut Progress,
) -> Result<Verdict, StoreError> {
    let mut sorted: Vec<&SignedCheckpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.position);
    for c in &sorted {
        if let Err(e) = c.verify(keys) {
            return Ok(Verdict::Broken {
                position: c.position,
                reason: e.to_string(),
            });
        }
    }
    let Some(last) = sorted.last().map(|c| c.position) else {
        return Ok(Verdict::Broken {
            position: 0,
            reason: "no checkpoints to check against".into(),
        });
    };
    progress.set_total(last);
    let mut pending = sorted.into_iter().peekable();
    let mut frontier = Frontier::default();
    let mut prev = chain::GENESIS;
    let mut checked_up_to = 0u64;
    // A checkpoint of size 0 (none are signed, but a file may hold one) covers nothing.
    while let Some(c) = pending.next_if(|c| c.position == 0) {
        if c.merkle_root != hex::encode(merkle::empty_root()) {
            return Ok(Verdict::Broken {
                position: 0,
                reason: "checkpoint 0 does not sign the empty tree".into(),
            });
        }
    }
    while frontier.size() < last {
        let want = u32::try_from(last - frontier.size())
            .unwrap_or(PAGE_SIZE)
            .min(PAGE_SIZE);
        let page = store.read_from(frontier.size() + 1, want).await?;
        if page.first().is_none_or(|e| e.position != frontier.size() + 1) {
            break;
        }
        for e in &page {
            if e.position != frontier.size() + 1 {
                break;
            }
            let input = chain::link_bytes(&prev, &link(e));
            prev = sha256(&input);
            frontier.push(merkle::leaf_hash(&input));
            while let Some(c) = pending.next_if(|c| c.position == frontier.size()) {
                let root = hex::encode(frontier.root());
                let head = hex::encode(prev);
                if root != c.merkle_root || head != c.head_hash {
                    let what = match (root == c.merkle_root, head == c.head_hash) {
                        (false, false) => "Merkle root and head hash differ",
                        (false, true) => "Merkle root differs",
                        _ => "head hash differs",
                    };
                    return Ok(Verdict::Broken {
                        position: checked_up_to + 1,
                        reason: format!(
                            "the ledger no longer matches checkpoint {} signed at {} ({what}): an event \
                             between positions {} and {} was changed, removed or inserted",
                            c.position,
                            c.time,
                            checked_up_to + 1,
                            c.position
                        ),
                    });
                }
                checked_up_to = c.position;
            }
        }
        progress.set(frontier.size());
    }
    progress.finish();
    if let Some(c) = pending.next() {
        return Ok(Verdict::Broken {
            position: frontier.size() + 1,
            reason: format!(
                "checkpoint {} covers {} events but the log stops after position {}: events were removed",
                c.position,
                c.position,
                frontier.size()
            ),
        });
    }
    Ok(Verdict::Intact {
        count: frontier.size(),
        head_hash: hex::encode(prev),
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
