//! Folds the log from the start into fresh state and compares it with the stored projection rows, in
//! memory bounded by [`ROWS_PER_PASS_MAX`] whatever the size of the ledger.
//!
//! # Design
//!
//! The [`projections::Projection`] invariant says a row's value depends only on its old value and the
//! events that touch it (`Projection::touched`), never on another row. So the fold of the whole log,
//! restricted to any set of rows, equals the fold of the whole log into only those rows
//! ([`LedgerState::apply_where`]). The comparison splits the rows of every table into `parts` by a
//! stable hash of `(table, id)` ([`part_of`]) and takes one part per pass: it streams the log folding
//! only the rows of that part, then streams every stored table page by page (keyset pages in id order),
//! compares each stored row of the part with the folded one (removing it from memory as it goes) and
//! reports what is left as missing. Memory holds the rows of one part plus one page; `parts` is chosen
//! from the number of stored rows so a part holds about [`ROWS_PER_PASS_MAX`] of them.
//!
//! The first pass also records, for every event, the one part its rows fall in (one byte per event,
//! [`PartTag`]): later passes skip decoding the events of other parts, so the JSON of each event is
//! parsed about once, not once per pass. Hash partitioning is correct for every table (a key range
//! would need the ids in advance) and spreads skewed ids evenly.
//!
//! `--until` keeps its meaning: the state as of a position or time, printed whole ([`fold`]).

use futures_util::StreamExt;
use projections::LedgerState;

use crate::audit::progress::Progress;
use crate::store::{EventStore, StoreError, StoredEvent};

/// Rows folded in memory at once, about: with tokens (the largest rows, about 0.5 KB folded) a pass
/// stays near 150 MB.
pub const ROWS_PER_PASS_MAX: u64 = 300_000;

/// Events and rows read per statement.
pub const PAGE_SIZE: u32 = 5_000;

/// The most parts a comparison splits the rows into (a part number must fit a [`PartTag`]).
pub const PARTS_MAX: u64 = 250;

/// What the first pass learned of an event: the one part all its rows fall in, or one of two marks.
pub type PartTag = u8;
/// The event touches no projection row: no pass needs it.
pub const TAG_NONE: PartTag = 255;
/// The event touches rows of several parts: every pass decodes it.
pub const TAG_SEVERAL: PartTag = 254;

/// The part `(table, id)` falls in among `parts` (FNV-1a, then mixed: stable across runs and builds).
pub fn part_of(table: &str, id: &str, parts: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.bytes().chain([0u8]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits depend only on the low bits of the input: mix the high ones down before `%`.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h % parts.max(1)
}

/// How many parts to split `rows` rows into.
pub fn parts_for(rows: u64) -> u64 {
    rows.div_ceil(ROWS_PER_PASS_MAX).clamp(1, PARTS_MAX)
}

/// The tag of an event: which part its rows fall in.
pub fn tag_of(event: &projections::Event, parts: u64) -> PartTag {
    let mut tag = TAG_NONE;
    LedgerState::touches_any(event, |table, id| {
        let part = part_of(table, id, parts) as PartTag;
        if tag == TAG_NONE {
            tag = part;
        } else if tag != part {
            tag = TAG_SEVERAL;
            return true;
        }
        false
    });
    tag
}

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The end of the log.
    End,
    /// The last event at or before this position.
    Position(u64),
    /// The last event recorded at or before this time (Unix microseconds).
    Time(i64),
}

impl Until {
    fn includes(&self, position: u64, recorded_at: i64) -> bool {
        match *self {
            Until::End => true,
            Until::Position(p) => position <= p,
            // Recorded times never decrease along the log, so this is a prefix.
            Until::Time(t) => recorded_at <= t,
        }
    }
}

/// Folds the log up to `until` into a fresh state; returns it and the last position folded.
pub async fn fold(store: &dyn EventStore, until: Until) -> Result<(LedgerState, u64), StoreError> {
    fold_with(store, until, &mut Progress::quiet()).await
}

/// [`fold`], reporting progress in events.
pub async fn fold_with(
    store: &dyn EventStore,
    until: Until,
    progress: &mut Progress,
) -> Result<(LedgerState, u64), StoreError> {
    let head = store.head().await?.position;
    progress.set_total(match until {
        Until::Position(p) => p.min(head),
        _ => head,
    });
    let mut state = LedgerState::default();
    let mut last = 0;
    let mut events = store.stream_from(1);
    while let Some(e) = events.next().await {
        let e = e?;
        if !until.includes(e.position, e.recorded_at) {
            break;
        }
        state.apply(&e.decode()?);
        last = e.position;
        if last % 1_000 == 0 {
            progress.set(last);
        }
    }
    progress.finish();
    Ok((state, last))
}

/// One way the stored rows differ from the replayed fold.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The fold has the row; the database does not.
    Missing { table: String, id: String },
    /// The database has a row the fold does not produce.
    Unexpected { table: String, id: String },
    /// Both have the row with different state.
    Changed {
        table: String,
        id: String,
        stored: serde_json::Value,
        replayed: serde_json::Value,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { table, id } => write!(f, "{table} {id}: in the replay, not stored"),
            Difference::Unexpected { table, id } => write!(f, "{table} {id}: stored, not in the replay"),
            Difference::Changed {
                table,
                id,
                stored,
                replayed,
            } => {
                write!(f, "{table} {id}: stored {stored} but replay gives {replayed}")
            }
        }
    }
}

/// Replays the whole log and lists every difference from the stored projection rows.
pub async fn compare(store: &dyn EventStore) -> Result<Vec<Difference>, StoreError> {
    compare_with(store, &mut Progress::quiet()).await
}

/// [`compare`], reporting progress in events folded and rows read, every pass.
pub async fn compare_with(
    store: &dyn EventStore,
    progress: &mut Progress,
) -> Result<Vec<Difference>, StoreError> {
    let parts = parts_for(store.row_count().await?);
    compare_in(store, parts, progress).await
}

/// [`compare_with`] in `parts` passes, whatever the number of rows (tests use it to split small ledgers).
pub async fn compare_in(
    store: &dyn EventStore,
    parts: u64,
    progress: &mut Progress,
) -> Result<Vec<Difference>, StoreError> {
    let parts = parts.clamp(1, PARTS_MAX);
    let events = store.head().await?.position;
    let rows = store.row_count().await?;
    progress.set_total((events + rows) * parts);
    let mut done = 0u64;
    let mut tags: Vec<PartTag> = Vec::new();
    let mut out = Vec::new();
    for part in 0..parts {
        let mut state = LedgerState::default();
        let mut index = 0usize;
        let mut next = 1u64;
        let mut last_decoded = 0u64;
        loop {
            let page = store.read_from(next, PAGE_SIZE).await?;
            let Some(last) = page.last() else { break };
            next = last.position + 1;
            for e in &page {
                fold_one(&mut state, e, part, parts, &mut tags, index)?;
                index += 1;
                last_decoded = e.position;
            }
            progress.set(done + last_decoded);
        }
        done += events;
        compare_part(store, &mut state, part, parts, &mut out, &mut |n| {
            done += n;
            progress.set(done);
        })
        .await?;
    }
    progress.finish();
    out.sort_by(|a, b| a.key().cmp(&b.key()));
    Ok(out)
}

/// Folds one event into the rows of `part`; the first pass tags it, later ones skip it by its tag.
fn fold_one(
    state: &mut LedgerState,
    e: &StoredEvent,
    part: u64,
    parts: u64,
    tags: &mut Vec<PartTag>,
    index: usize,
) -> Result<(), StoreError> {
    if part > 0 {
        match tags.get(index).copied() {
            Some(TAG_NONE) => return Ok(()),
            Some(t) if t != TAG_SEVERAL && u64::from(t) != part => return Ok(()),
            // Not seen by the first pass (appended since): decode it.
            _ => {}
        }
    }
    let recorded = e.decode()?;
    if part == 0 && parts > 1 {
        tags.push(tag_of(&recorded.event, parts));
    }
    state.apply_where(&recorded, |table, id| part_of(table, id, parts) == part);
    Ok(())
}

/// Compares the stored rows of `part` with the folded ones, which it removes from `state` as it goes.
async fn compare_part(
    store: &dyn EventStore,
    state: &mut LedgerState,
    part: u64,
    parts: u64,
    out: &mut Vec<Difference>,
    read: &mut impl FnMut(u64),
) -> Result<(), StoreError> {
    for table in projections::TABLES {
        let mut after: Option<String> = None;
        loop {
            let page = store.rows_page(table, after.as_deref(), PAGE_SIZE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            read(page.len() as u64);
            for (id, text) in page {
                if part_of(table, &id, parts) != part {
                    continue;
                }
                let stored: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("{table} {id}: {e}")))?;
                match state.take_row(table, &id) {
                    None => out.push(Difference::Unexpected {
                        table: table.to_owned(),
                        id,
                    }),
                    Some(replayed) => {
                        let replayed = replayed.map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        if replayed != stored {
                            out.push(Difference::Changed {
                                table: table.to_owned(),
                                id,
                                stored,
                                replayed,
                            });
                        }
                    }
                }
            }
        }
    }
    // What the fold has and no table holds.
    let left = state.all_rows().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend(left.into_iter().map(|row| Difference::Missing {
        table: row.table.to_owned(),
        id: row.id,
    }));
    Ok(())
}

impl Difference {
    /// Orders differences by table (in [`projections::TABLES`] order), then id.
    fn key(&self) -> (usize, &str) {
        let (Difference::Missing { table, id }
        | Difference::Unexpected { table, id }
        | Difference::Changed { table, id, .. }) = self;
        let t = projections::TABLES
            .iter()
            .position(|t| t == table)
            .unwrap_or(usize::MAX);
        (t, id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_with_the_rows_and_stay_within_a_tag() {
        assert_eq!(parts_for(0), 1);
        assert_eq!(parts_for(ROWS_PER_PASS_MAX), 1);
        assert_eq!(parts_for(ROWS_PER_PASS_MAX + 1), 2);
        assert_eq!(parts_for(u64::MAX), PARTS_MAX);
        assert!(PARTS_MAX < u64::from(TAG_SEVERAL));
    }

    #[test]
    fn a_row_falls_in_one_stable_part_and_parts_spread_evenly() {
        assert_eq!(part_of("tokens", "j1", 1), 0);
        assert_eq!(part_of("tokens", "j1", 7), part_of("tokens", "j1", 7));
        // The table is part of the key: the same id in two tables need not share a part.
        assert!((0..50).any(|i| {
            let id = format!("x{i}");
            part_of("tokens", &id, 4) != part_of("clients", &id, 4)
        }));
        let mut counts = [0u32; 4];
        for i in 0..4_000 {
            counts[part_of("tokens", &format!("fill-0-0-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1_200).contains(&c)), "{counts:?}");
    }
}
