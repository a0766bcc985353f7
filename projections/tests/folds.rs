#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties of the pure folds that the store relies on.

use projections::consents::Consent;
use projections::queries;
use projections::testing::{events, recorded};
use projections::{LedgerState, RecordedEvent};
use proptest::prelude::*;

/// Folds `events` the way the store does: load only the touched rows (through their JSON form), apply
/// the batch, write back the touched rows.
fn fold_by_rows(stored: &mut LedgerState, batch: &[RecordedEvent]) {
    let touched = LedgerState::touched(batch);
    let mut partial = LedgerState::default();
    for row in stored.all_rows().unwrap() {
        if touched.get(row.table).is_some_and(|ids| ids.contains(&row.id)) {
            partial.load_row(row.table, &row.id, row.state).unwrap();
        }
    }
    for e in batch {
        partial.apply(e);
    }
    for w in partial.row_writes(&touched).unwrap() {
        stored.load_row(w.table, &w.id, w.state).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn folding_in_chunks_equals_folding_at_once(evs in events(60), cuts in proptest::collection::vec(0usize..60, 0..6)) {
        let log = recorded(&evs, 1);
        let whole = LedgerState::fold(&log);

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(log.len())).collect();
        cuts.push(0);
        cuts.push(log.len());
        cuts.sort_unstable();
        cuts.dedup();

        let mut chunked = LedgerState::default();
        let mut by_rows = LedgerState::default();
        for w in cuts.windows(2) {
            let chunk = &log[w[0]..w[1]];
            for e in chunk { chunked.apply(e); }
            fold_by_rows(&mut by_rows, chunk);
        }
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&by_rows, &whole);
    }

    #[test]
    fn rows_survive_their_json_form(evs in events(40)) {
        let state = LedgerState::fold(&recorded(&evs, 1));
        let mut back = LedgerState::default();
        for w in state.all_rows().unwrap() {
            back.load_row(w.table, &w.id, w.state).unwrap();
        }
        prop_assert_eq!(back, state);
    }

    /// Expiry needs no event: the same folded rows answer "does a consent stand?" differently on either
    /// side of a consent's `expires_at`, and never with a consent past it.
    #[test]
    fn a_standing_consent_is_never_past_its_expiry(evs in events(60), now in 0i64..2_500) {
        let state = LedgerState::fold(&recorded(&evs, 1));
        let consents: Vec<&Consent> = state.consents.values().collect();
        for c in &consents {
            for scope in &c.scopes {
                let standing = |t| queries::standing_consent(consents.iter().copied(), &c.subject, &c.client_id, scope, t);
                if let Some(found) = standing(now) {
                    prop_assert!(found.expires_at.is_none_or(|e| now < e), "{found:?} at {now}");
                    prop_assert!(found.revoked_at.is_none());
                }
                if let Some(exp) = c.expires_at {
                    prop_assert!(standing(exp).is_none_or(|f| f.consent_id != c.consent_id));
                    if c.is_standing_at(exp - 1) && c.given_at < exp {
                        // The latest decision on the scope governs: when it is this consent, it stands
                        // until the second before its expiry.
                        let latest = consents
                            .iter()
                            .filter(|o| o.subject == c.subject && o.client_id == c.client_id
                                && o.given_at < exp && o.scopes.contains(scope))
                            .max_by_key(|o| o.position);
                        if latest.is_some_and(|l| l.consent_id == c.consent_id) {
                            prop_assert_eq!(standing(exp - 1).map(|f| &f.consent_id), Some(&c.consent_id));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn events_survive_their_json_form(evs in events(40)) {
        for e in evs {
            let text = serde_json::to_string(&e).unwrap();
            let back: projections::Event = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, e);
        }
    }

    /// What `audit replay` relies on to compare in bounded memory: folding the whole log into only the
    /// rows of one part, part after part, gives every row of the whole fold exactly once, and the events
    /// that touch no row of a part can be skipped for it.
    #[test]
    fn folding_part_by_part_equals_folding_at_once(evs in events(60), parts in 1u64..6, salt in 0u64..1_000) {
        let log = recorded(&evs, 1);
        let whole = LedgerState::fold(&log);
        let part_of = |table: &str, id: &str| {
            let mut h = salt;
            for b in table.bytes().chain(id.bytes()) {
                h = h.wrapping_mul(31).wrapping_add(u64::from(b));
            }
            h % parts
        };
        let mut rows = Vec::new();
        for part in 0..parts {
            let mut state = LedgerState::default();
            for e in &log {
                if !LedgerState::touches_any(&e.event, |t, id| part_of(t, id) == part) {
                    continue;
                }
                state.apply_where(e, |t, id| part_of(t, id) == part);
            }
            for w in state.all_rows().unwrap() {
                prop_assert_eq!(part_of(w.table, &w.id), part);
                rows.push(w);
            }
        }
        rows.sort_by(|a, b| (a.table, &a.id).cmp(&(b.table, &b.id)));
        let mut expected = whole.all_rows().unwrap();
        expected.sort_by(|a, b| (a.table, &a.id).cmp(&(b.table, &b.id)));
        prop_assert_eq!(rows.len(), whole.row_count());
        prop_assert_eq!(rows, expected);
    }

    #[test]
    fn taking_a_row_gives_its_stored_form_once(evs in events(40)) {
        let mut state = LedgerState::fold(&recorded(&evs, 1));
        for w in state.clone().all_rows().unwrap() {
            prop_assert_eq!(state.take_row(w.table, &w.id).map(|r| r.unwrap()), Some(w.state));
            prop_assert!(state.take_row(w.table, &w.id).is_none());
        }
        prop_assert_eq!(state.row_count(), 0);
    }
}
