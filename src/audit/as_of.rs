//! "Was it active then?": a delegation's or a subject's state as of a point of the log, folded from the
//! events of their streams alone up to that point.
//!
//! A row's value depends only on the events that touch it (the `Projection` invariant), so folding the
//! streams whose events touch the rows an answer shows gives those rows exactly as a fold of the whole
//! prefix would: [`streams`] names those streams from today's rows (which list every token, refresh
//! token and consent ever recorded, found by index), and the property test below checks the claim
//! against whole-state folds of random histories. The views ([`delegation`], [`subject`]) are pure.

use std::collections::BTreeSet;

use projections::LedgerState;
use projections::consents::Consent;
use projections::delegations::Delegation;
use projections::event::{UnixSeconds, streams as stream};
use projections::queries;
use projections::refresh_tokens::RefreshToken;
use projections::tokens::Token;
use serde_json::{Value, json};

use crate::audit::replay::Until;
use crate::store::{self, EventRange, EventStore, READ_LIMIT_MAX, RowFilter, StoreError};

/// Today's rows an answer is about, as found by index; the point's state is folded from their streams.
/// Rows are never deleted, so today's rows include every one that existed at any earlier point.
#[derive(Debug, Clone, Default)]
pub struct Related {
    pub delegations: Vec<Delegation>,
    pub tokens: Vec<Token>,
    pub refresh_tokens: Vec<RefreshToken>,
    pub consents: Vec<Consent>,
}

/// The streams whose events touch the rows of `related` and what judging them needs: each row's own,
/// its clients', and the signing keys' (a token is active only under a published key).
pub fn streams(related: &Related) -> BTreeSet<String> {
    let mut out = BTreeSet::from([stream::SIGNING_KEYS.to_owned()]);
    for d in &related.delegations {
        out.insert(stream::delegation(&d.delegation_id));
        out.insert(stream::client(&d.client_id));
    }
    // A token issued from a delegation also touches the delegation (its `last_used_at`).
    for t in &related.tokens {
        out.insert(stream::token(&t.jti));
        out.insert(stream::client(&t.client_id));
        if let Some(d) = &t.delegation_id {
            out.insert(stream::delegation(d));
        }
    }
    for r in &related.refresh_tokens {
        out.insert(stream::refresh_token(&r.token_hash));
        out.insert(stream::client(&r.client_id));
        out.insert(stream::delegation(&r.delegation_id));
    }
    for c in &related.consents {
        out.insert(stream::consent(&c.consent_id));
        out.insert(stream::client(&c.client_id));
    }
    out
}

/// The rows about delegation `id` in `state`: it, its tokens and refresh tokens, and the consents of its
/// subject to its client. `None` when `state` has no such delegation.
pub fn related_to_delegation(state: &LedgerState, id: &str) -> Option<Related> {
    let d = state.delegations.get(id)?;
    Some(Related {
        delegations: vec![d.clone()],
        tokens: state
            .tokens
            .values()
            .filter(|t| t.delegation_id.as_deref() == Some(id))
            .cloned()
            .collect(),
        refresh_tokens: state
            .refresh_tokens
            .values()
            .filter(|r| r.delegation_id == id)
            .cloned()
            .collect(),
        consents: state
            .consents
            .values()
            .filter(|c| c.subject == d.subject && c.client_id == d.client_id)
            .cloned()
            .collect(),
    })
}

/// The rows about `subject` in `state`: its delegations and their tokens and refresh tokens, its other
/// tokens, and its consents.
pub fn related_to_subject(state: &LedgerState, subject: &str) -> Related {
    let delegations: Vec<Delegation> = state
        .delegations
        .values()
        .filter(|d| d.subject == subject)
        .cloned()
        .collect();
    let of_theirs = |id: &Option<String>| {
        id.as_ref()
            .is_some_and(|id| delegations.iter().any(|d| &d.delegation_id == id))
    };
    Related {
        tokens: state
            .tokens
            .values()
            .filter(|t| t.subject == subject || of_theirs(&t.delegation_id))
            .cloned()
            .collect(),
        refresh_tokens: state
            .refresh_tokens
            .values()
            .filter(|r| r.subject == subject || of_theirs(&Some(r.delegation_id.clone())))
            .cloned()
            .collect(),
        consents: state
            .consents
            .values()
            .filter(|c| c.subject == subject)
            .cloned()
            .collect(),
        delegations,
    }
}

/// A delegation as it stood: active or not, each scope held or not at `at`.
fn delegation_row(d: &Delegation, at: UnixSeconds) -> Value {
    let held: Vec<&str> = d.scopes_at(at).map(|s| s.scope.as_str()).collect();
    json!({
        "delegation": d,
        "active": d.is_active_at(at),
        "scopes_held": held,
    })
}

fn consent_row(c: &Consent, at: UnixSeconds) -> Value {
    json!({"consent": c, "standing": c.is_standing_at(at)})
}

/// The tokens among `tokens` that counted at `at`, as `/introspect` would have judged them then.
fn active_tokens<'a>(
    state: &'a LedgerState,
    tokens: impl Iterator<Item = &'a Token>,
    at: UnixSeconds,
) -> Vec<&'a Token> {
    tokens
        .filter(|t| {
            let delegation = t.delegation_id.as_ref().and_then(|id| state.delegations.get(id));
            queries::token_active(
                t,
                state.clients.get(&t.client_id),
                delegation,
                state.signing_keys.get(&t.kid),
                at,
            )
        })
        .collect()
}

fn active_refresh_tokens<'a>(
    state: &'a LedgerState,
    tokens: impl Iterator<Item = &'a RefreshToken>,
    at: UnixSeconds,
) -> Vec<&'a RefreshToken> {
    tokens
        .filter(|r| {
            queries::refresh_token_active(
                r,
                state.clients.get(&r.client_id),
                state.delegations.get(&r.delegation_id),
                at,
            )
        })
        .collect()
}

/// Delegation `id` as of `state` (a fold up to the point) at second `at`: its scopes and their expiries,
/// the consents of its subject to its client, and the tokens and refresh tokens active then. `None`
/// when it did not exist yet.
pub fn delegation(state: &LedgerState, id: &str, at: UnixSeconds) -> Option<Value> {
    let d = state.delegations.get(id)?;
    let consents: Vec<Value> = state
        .consents
        .values()
        .filter(|c| c.subject == d.subject && c.client_id == d.client_id)
        .map(|c| consent_row(c, at))
        .collect();
    let ours = |t: &&Token| t.delegation_id.as_deref() == Some(id);
    Some(json!({
        "delegation": delegation_row(d, at),
        "consents": consents,
        "active_tokens": active_tokens(state, state.tokens.values().filter(ours), at),
        "active_refresh_tokens": active_refresh_tokens(
            state,
            state.refresh_tokens.values().filter(|r| r.delegation_id == id),
            at,
        ),
    }))
}

/// `subject` as of `state` at second `at`: its delegations (each active or not, with the scopes held),
/// its consents, and the tokens issued to it or from its delegations that were active then.
pub fn subject(state: &LedgerState, subject: &str, at: UnixSeconds) -> Value {
    let delegations: Vec<Value> = state
        .delegations
        .values()
        .filter(|d| d.subject == subject)
        .map(|d| delegation_row(d, at))
        .collect();
    let consents: Vec<Value> = state
        .consents
        .values()
        .filter(|c| c.subject == subject)
        .map(|c| consent_row(c, at))
        .collect();
    let theirs = |id: &str| state.delegations.get(id).is_some_and(|d| d.subject == subject);
    let tokens = state
        .tokens
        .values()
        .filter(|t| t.subject == subject || t.delegation_id.as_deref().is_some_and(theirs));
    let refresh = state
        .refresh_tokens
        .values()
        .filter(|r| r.subject == subject || theirs(&r.delegation_id));
    json!({
        "subject": subject,
        "delegations": delegations,
        "consents": consents,
        "active_tokens": active_tokens(state, tokens, at),
        "active_refresh_tokens": active_refresh_tokens(state, refresh, at),
    })
}

/// A point of the log: its last position and the second it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub position: u64,
    pub at: UnixSeconds,
    /// When the event at `position` was recorded (microseconds), 0 before the first.
    pub recorded_at: i64,
}

/// Where `until` falls in the log now: the last position at or before it, and the second it stands for
/// (the time given, or the recorded time of the event at the position given).
pub async fn point(store: &dyn EventStore, until: Until) -> Result<Point, StoreError> {
    let head = store.head().await?;
    let position = match until {
        Until::End => head.position,
        Until::Position(p) => p.min(head.position),
        Until::Time(t) => store
            .first_position_at(t.saturating_add(1))
            .await?
            .map_or(head.position, |p| p.saturating_sub(1)),
    };
    let recorded_at = match position {
        0 => 0,
        p => store.read_from(p, 1).await?.first().map_or(0, |e| e.recorded_at),
    };
    let at_micros = match until {
        Until::Time(t) => t,
        _ => recorded_at,
    };
    Ok(Point {
        position,
        at: at_micros.div_euclid(1_000_000),
        recorded_at,
    })
}

/// Today's rows about delegation `id`, by index; `None` when the ledger never held it.
pub async fn fetch_delegation(store: &dyn EventStore, id: &str) -> Result<Option<Related>, StoreError> {
    let Some(d) = store::get::<Delegation>(store, id).await? else {
        return Ok(None);
    };
    let by_delegation = RowFilter {
        delegation_id: Some(id),
        ..RowFilter::default()
    };
    let consents = store::find::<Consent>(
        store,
        RowFilter {
            subject: Some(&d.subject),
            client_id: Some(&d.client_id),
            ..RowFilter::default()
        },
    )
    .await?;
    Ok(Some(Related {
        tokens: store::find(store, by_delegation).await?,
        refresh_tokens: store::find(store, by_delegation).await?,
        consents,
        delegations: vec![d],
    }))
}

/// Today's rows about `subject`, by index.
pub async fn fetch_subject(store: &dyn EventStore, subject: &str) -> Result<Related, StoreError> {
    let by_subject = RowFilter {
        subject: Some(subject),
        ..RowFilter::default()
    };
    let delegations: Vec<Delegation> = store::find(store, by_subject).await?;
    let mut tokens: Vec<Token> = store::find(store, by_subject).await?;
    let mut refresh_tokens: Vec<RefreshToken> = store::find(store, by_subject).await?;
    for d in &delegations {
        let by_delegation = RowFilter {
            delegation_id: Some(&d.delegation_id),
            ..RowFilter::default()
        };
        let more: Vec<Token> = store::find(store, by_delegation).await?;
        tokens.extend(more.into_iter().filter(|t| t.subject != subject));
        let more: Vec<RefreshToken> = store::find(store, by_delegation).await?;
        refresh_tokens.extend(more.into_iter().filter(|r| r.subject != subject));
    }
    Ok(Related {
        consents: store::find(store, by_subject).await?,
        delegations,
        tokens,
        refresh_tokens,
    })
}

/// Folds the events of `streams` up to `position` (inclusive), reading each stream by its index.
pub async fn fold_streams(
    store: &dyn EventStore,
    streams: &BTreeSet<String>,
    position: u64,
) -> Result<LedgerState, StoreError> {
    let mut events = Vec::new();
    for s in streams {
        let mut after = 0;
        loop {
            let page = store
                .read_range(EventRange {
                    after,
                    through: position,
                    stream_id: Some(s),
                    event_type: None,
                    limit: READ_LIMIT_MAX,
                })
                .await?;
            let full = page.len() == READ_LIMIT_MAX as usize;
            for e in page {
                after = e.position;
                events.push(e.decode()?);
            }
            if !full {
                break;
            }
        }
    }
    events.sort_by_key(|e| e.position);
    Ok(LedgerState::fold(&events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::RecordedEvent;
    use proptest::prelude::*;

    /// The events of `streams` among `events`.
    fn only(events: &[RecordedEvent], streams: &BTreeSet<String>) -> Vec<RecordedEvent> {
        events
            .iter()
            .filter(|e| streams.contains(&e.stream_id))
            .cloned()
            .collect()
    }

    /// `events` as the store lets them be: an entity is created once (its first event on a stream
    /// expects no stream), so a later creation with the same id is dropped.
    fn realistic(events: Vec<projections::Event>) -> Vec<projections::Event> {
        use projections::Event as E;
        let mut created = BTreeSet::new();
        events
            .into_iter()
            .filter(|e| match e {
                E::DelegationCreated(_)
                | E::ConsentGranted(_)
                | E::ConsentDenied(_)
                | E::TokenIssued(_)
                | E::RefreshTokenIssued(_) => created.insert(e.stream_id()),
                _ => true,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The answer from the related streams alone equals the answer from the whole prefix, at every
        /// cut of the log and for every delegation and subject today's state knows.
        #[test]
        fn as_of_answers_equal_the_fold_of_the_whole_prefix(
            events in projections::testing::events(60),
            at in 0i64..2_500,
        ) {
            let log = projections::testing::recorded(&realistic(events), 1);
            let today = LedgerState::fold(&log);
            for cut in 0..=log.len() {
                let prefix = &log[..cut];
                let whole = LedgerState::fold(prefix);
                for id in today.delegations.keys() {
                    let related = related_to_delegation(&today, id).unwrap_or_default();
                    let part = LedgerState::fold(&only(prefix, &streams(&related)));
                    prop_assert_eq!(delegation(&part, id, at), delegation(&whole, id, at));
                }
                let subjects: BTreeSet<&str> = today
                    .delegations
                    .values()
                    .map(|d| d.subject.as_str())
                    .chain(today.tokens.values().map(|t| t.subject.as_str()))
                    .chain(today.consents.values().map(|c| c.subject.as_str()))
                    .collect();
                for s in subjects {
                    let part = LedgerState::fold(&only(prefix, &streams(&related_to_subject(&today, s))));
                    prop_assert_eq!(subject(&part, s, at), subject(&whole, s, at));
                }
            }
        }
    }
}
