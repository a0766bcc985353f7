//! What a group commit writes, decided without touching the database.
//!
//! The writer reads the head, the current versions of the streams involved and any known idempotency
//! keys, then [`plan`] decides, request by request and in arrival order, which appends are accepted, their
//! positions, versions and chain hashes. Both backends write exactly what the plan says.

use std::collections::{BTreeMap, BTreeSet};

use projections::chain::{self, Link};
use projections::{LedgerState, RecordedEvent, RowWrite, Touched};

use super::{
    APPEND_EVENTS_MAX, AppendError, AppendRequest, AppendResult, Claim, ExpectedVersion, Head, StoreError,
    StoredEvent,
};

/// Longest stream id accepted.
pub const STREAM_ID_LEN_MAX: usize = 200;
/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 200;
/// Longest claimed key accepted: an issuer and a `jti` fit many times over (form bodies are smaller).
pub const CLAIM_KEY_LEN_MAX: usize = 4096;

/// The outcome of planning one group commit.
#[derive(Debug)]
pub struct Plan {
    /// Rows to insert into the events table, in position order.
    pub events: Vec<StoredEvent>,
    /// The same events, decoded, for the projection fold.
    pub recorded: Vec<RecordedEvent>,
    /// One answer per request, in request order.
    pub results: Vec<Result<AppendResult, AppendError>>,
    /// Idempotency keys to remember with their results.
    pub new_keys: Vec<(String, AppendResult)>,
    /// Keys the accepted requests claim, each once.
    pub new_claims: Vec<Claim>,
    /// The head after the batch.
    pub head: Head,
}

/// Every stream a batch names, for the version lookup.
pub fn streams(requests: &[AppendRequest]) -> Vec<&str> {
    let set: BTreeSet<&str> = requests
        .iter()
        .flat_map(|r| {
            r.events
                .iter()
                .map(|e| e.stream_id.as_str())
                .chain(r.expectations.iter().map(|x| x.stream_id.as_str()))
        })
        .collect();
    set.into_iter().collect()
}

/// Every idempotency key a batch carries.
pub fn keys(requests: &[AppendRequest]) -> Vec<&str> {
    let set: BTreeSet<&str> = requests
        .iter()
        .filter_map(|r| r.idempotency_key.as_deref())
        .collect();
    set.into_iter().collect()
}

/// Every key a batch claims, for the lookup of those already taken, and the earliest instant any is
/// judged at: claims expired before it concern nobody in the batch and may be deleted.
pub fn claim_keys(requests: &[AppendRequest]) -> (Vec<&str>, Option<i64>) {
    let claims = requests.iter().flat_map(|r| r.claims.iter());
    let set: BTreeSet<&str> = claims.clone().map(|c| c.key.as_str()).collect();
    (set.into_iter().collect(), claims.map(|c| c.now).min())
}

fn validate(request: &AppendRequest) -> Result<(), AppendError> {
    let invalid = |m: String| Err(AppendError::Invalid(m));
    if request.events.is_empty() && request.claims.is_empty() {
        return invalid("an append needs at least one event or claim".into());
    }
    if request
        .claims
        .iter()
        .any(|c| c.key.is_empty() || c.key.len() > CLAIM_KEY_LEN_MAX)
    {
        return invalid(format!("claimed keys are 1 to {CLAIM_KEY_LEN_MAX} bytes"));
    }
    if request.events.len() > APPEND_EVENTS_MAX {
        return invalid(format!("an append carries at most {APPEND_EVENTS_MAX} events"));
    }
    for id in request
        .events
        .iter()
        .map(|e| &e.stream_id)
        .chain(request.expectations.iter().map(|x| &x.stream_id))
    {
        if id.is_empty() || id.len() > STREAM_ID_LEN_MAX {
            return invalid(format!("stream ids are 1 to {STREAM_ID_LEN_MAX} bytes"));
        }
    }
    let mut seen = BTreeSet::new();
    for x in &request.expectations {
        if !seen.insert(&x.stream_id) {
            return invalid(format!("stream {} has two expectations", x.stream_id));
        }
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX)
    {
        return invalid(format!(
            "idempotency keys are 1 to {IDEMPOTENCY_KEY_LEN_MAX} bytes"
        ));
    }
    Ok(())
}

fn check(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::Exact(n) => actual.unwrap_or(0) == n,
    }
}

/// Plans one group commit.
///
/// `versions` holds the last version of every existing stream the batch names; `known_keys` the stored
/// results of idempotency keys already used; `claimed` the expiry of each claimed key stored.
/// Requests are judged in order, each against the state the accepted requests before it leave, so a
/// refused request writes nothing and never blocks the others.
pub fn plan(
    head: &Head,
    versions: &BTreeMap<String, u64>,
    known_keys: &BTreeMap<String, AppendResult>,
    claimed: &BTreeMap<String, i64>,
    requests: &[AppendRequest],
    now_micros: i64,
) -> Result<Plan, StoreError> {
    let mut versions = versions.clone();
    let mut keys = known_keys.clone();
    let mut claimed = claimed.clone();
    let mut prev = chain::parse_hash(&head.hash)
        .ok_or_else(|| StoreError::Corrupt(format!("ledger head hash {:?} is not a hash", head.hash)))?;
    let mut position = head.position;
    // Recorded times never go backwards, even if the clock does or another node's runs behind.
    let recorded_at = now_micros.max(head.recorded_at);
    let mut out = Plan {
        events: Vec::new(),
        recorded: Vec::new(),
        results: Vec::with_capacity(requests.len()),
        new_keys: Vec::new(),
        new_claims: Vec::new(),
        head: head.clone(),
    };

    for request in requests {
        if let Err(e) = validate(request) {
            out.results.push(Err(e));
            continue;
        }
        if let Some(first) = request.idempotency_key.as_ref().and_then(|k| keys.get(k)) {
            out.results.push(Ok(AppendResult {
                replayed: true,
                ..first.clone()
            }));
            continue;
        }
        if let Some(x) = request
            .expectations
            .iter()
            .find(|x| !check(x.expected, versions.get(&x.stream_id).copied()))
        {
            out.results.push(Err(AppendError::Conflict {
                stream_id: x.stream_id.clone(),
                expected: x.expected,
                actual: versions.get(&x.stream_id).copied(),
            }));
            continue;
        }
        let taken = |c: &&Claim| claimed.get(&c.key).is_some_and(|until| *until >= c.now);
        if let Some(c) = request.claims.iter().find(taken) {
            out.results.push(Err(AppendError::Claimed { key: c.key.clone() }));
            continue;
        }
        let metadata = match serde_json::to_value(&request.metadata) {
            Ok(v) => chain::canonical_json(&v),
            Err(e) => {
                out.results
                    .push(Err(AppendError::Invalid(format!("metadata: {e}"))));
                continue;
            }
        };
        let payloads: Result<Vec<String>, _> = request
            .events
            .iter()
            .map(|e| serde_json::to_value(&e.event).map(|v| chain::canonical_json(&v)))
            .collect();
        let payloads = match payloads {
            Ok(p) => p,
            Err(e) => {
                out.results
                    .push(Err(AppendError::Invalid(format!("payload: {e}"))));
                continue;
            }
        };

        let first_position = position + 1;
        let mut touched_streams = BTreeMap::new();
        for (new, payload) in request.events.iter().zip(payloads) {
            position += 1;
            let version = versions.get(&new.stream_id).copied().unwrap_or(0) + 1;
            versions.insert(new.stream_id.clone(), version);
            touched_streams.insert(new.stream_id.clone(), version);
            let event_type = new.event.event_type();
            let hash = chain::link_hash(
                &prev,
                &Link {
                    position,
                    stream_id: &new.stream_id,
                    version,
                    event_type,
                    payload: &payload,
                    metadata: &metadata,
                    recorded_at,
                },
            );
            prev = hash;
            let hash = hex::encode(hash);
            out.recorded.push(RecordedEvent {
                position,
                stream_id: new.stream_id.clone(),
                version,
                event: new.event.clone(),
                metadata: request.metadata.clone(),
                recorded_at,
                hash: hash.clone(),
            });
            out.events.push(StoredEvent {
                position,
                stream_id: new.stream_id.clone(),
                version,
                event_type: event_type.to_owned(),
                payload,
                metadata: metadata.clone(),
                recorded_at,
                hash,
            });
        }
        let result = AppendResult {
            first_position,
            last_position: position,
            stream_versions: touched_streams,
            replayed: false,
        };
        if let Some(key) = &request.idempotency_key {
            keys.insert(key.clone(), result.clone());
            out.new_keys.push((key.clone(), result.clone()));
        }
        for c in &request.claims {
            claimed.insert(c.key.clone(), c.expires_at);
            out.new_claims.retain(|n| n.key != c.key);
            out.new_claims.push(c.clone());
        }
        out.results.push(Ok(result));
    }

    out.head = Head {
        position,
        hash: hex::encode(prev),
        recorded_at: if out.events.is_empty() {
            head.recorded_at
        } else {
            recorded_at
        },
    };
    Ok(out)
}

/// Folds the planned events into the rows they touch.
///
/// `loaded` holds the current state of every touched row that exists, as `(table, id, state)`. Returns
/// the rows to write back.
pub fn project(
    recorded: &[RecordedEvent],
    touched: &Touched,
    loaded: Vec<(&'static str, String, serde_json::Value)>,
) -> Result<Vec<RowWrite>, StoreError> {
    let mut state = LedgerState::default();
    for (table, id, row) in loaded {
        state
            .load_row(table, &id, row)
            .map_err(|e| StoreError::Corrupt(format!("{table} row {id}: {e}")))?;
    }
    for e in recorded {
        state.apply(e);
    }
    state
        .row_writes(touched)
        .map_err(|e| StoreError::Corrupt(format!("projection row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewEvent, StreamExpectation};
    use projections::event::{ClientDisabled, V1};
    use projections::{Event, Metadata};

    fn genesis() -> Head {
        Head {
            position: 0,
            hash: hex::encode(chain::GENESIS),
            recorded_at: 0,
        }
    }

    fn disable(id: &str) -> Event {
        Event::ClientDisabled(ClientDisabled {
            v: V1,
            client_id: id.into(),
            reason: "r".into(),
            at: 1,
        })
    }

    fn req(stream: &str, expected: ExpectedVersion, n: usize) -> AppendRequest {
        AppendRequest::to_stream(stream, expected, (0..n).map(|_| disable(stream)).collect())
    }

    #[test]
    fn requests_in_one_batch_are_judged_in_order_against_each_other() {
        let requests = vec![
            req("a", ExpectedVersion::NoStream, 2),
            req("a", ExpectedVersion::NoStream, 1),
            req("a", ExpectedVersion::Exact(2), 1),
            req("b", ExpectedVersion::Exact(7), 1),
        ];
        let plan = plan(
            &genesis(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &requests,
            10,
        )
        .unwrap();
        assert!(matches!(
            plan.results[0],
            Ok(AppendResult {
                first_position: 1,
                last_position: 2,
                ..
            })
        ));
        assert!(matches!(
            &plan.results[1],
            Err(AppendError::Conflict { stream_id, actual: Some(2), .. }) if stream_id == "a"
        ));
        assert!(matches!(
            plan.results[2],
            Ok(AppendResult {
                first_position: 3,
                last_position: 3,
                ..
            })
        ));
        assert!(matches!(
            plan.results[3],
            Err(AppendError::Conflict { actual: None, .. })
        ));
        let versions: Vec<_> = plan.events.iter().map(|e| (e.position, e.version)).collect();
        assert_eq!(versions, vec![(1, 1), (2, 2), (3, 3)]);
        assert_eq!(plan.head.position, 3);
        assert_eq!(plan.head.hash, plan.events[2].hash);
    }

    #[test]
    fn a_multi_stream_append_is_refused_whole_when_one_stream_conflicts() {
        let both = req("a", ExpectedVersion::Any, 1).and(req("b", ExpectedVersion::Exact(1), 1));
        let plan = plan(
            &genesis(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[both],
            10,
        )
        .unwrap();
        assert!(plan.events.is_empty());
        assert!(matches!(&plan.results[0], Err(AppendError::Conflict { stream_id, .. }) if stream_id == "b"));
        assert_eq!(plan.head, genesis());
    }

    #[test]
    fn a_repeated_idempotency_key_returns_the_first_result_and_writes_nothing() {
        let mut first = req("a", ExpectedVersion::NoStream, 1);
        first.idempotency_key = Some("k".into());
        let plan = plan(
            &genesis(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[first.clone(), first],
            10,
        )
        .unwrap();
        assert_eq!(plan.events.len(), 1);
        let (a, b) = (
            plan.results[0].as_ref().unwrap(),
            plan.results[1].as_ref().unwrap(),
        );
        assert_eq!((a.first_position, a.replayed), (1, false));
        assert_eq!((b.first_position, b.replayed), (1, true));
        assert_eq!(plan.new_keys.len(), 1);
    }

    #[test]
    fn malformed_requests_are_refused_without_affecting_the_rest() {
        let empty = AppendRequest::default();
        let dup = AppendRequest {
            events: vec![NewEvent {
                stream_id: "a".into(),
                event: disable("a"),
            }],
            expectations: vec![
                StreamExpectation {
                    stream_id: "a".into(),
                    expected: ExpectedVersion::Any,
                },
                StreamExpectation {
                    stream_id: "a".into(),
                    expected: ExpectedVersion::Any,
                },
            ],
            metadata: Metadata::default(),
            idempotency_key: None,
            claims: vec![],
        };
        let long = req(&"x".repeat(STREAM_ID_LEN_MAX + 1), ExpectedVersion::Any, 1);
        let ok = req("b", ExpectedVersion::Any, 1);
        let plan = plan(
            &genesis(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[empty, dup, long, ok],
            10,
        )
        .unwrap();
        assert!(matches!(plan.results[0], Err(AppendError::Invalid(_))));
        assert!(matches!(plan.results[1], Err(AppendError::Invalid(_))));
        assert!(matches!(plan.results[2], Err(AppendError::Invalid(_))));
        assert!(plan.results[3].is_ok());
        assert_eq!(plan.events.len(), 1);
    }

    #[test]
    fn recorded_time_never_goes_backwards() {
        let head = Head {
            recorded_at: 500,
            ..genesis()
        };
        let plan = plan(
            &head,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[req("a", ExpectedVersion::Any, 1)],
            10,
        )
        .unwrap();
        assert_eq!(plan.events[0].recorded_at, 500);
    }

    fn claim(key: &str, expires_at: i64, now: i64) -> AppendRequest {
        AppendRequest::claiming(key, expires_at, now)
    }

    #[test]
    fn a_key_is_claimed_once_until_it_expires_even_within_one_batch() {
        // Given "old" stored until 100 and "live" until 200, when a batch claims at 150
        let stored = BTreeMap::from([("old".to_owned(), 100), ("live".to_owned(), 200)]);
        let mut with_event = req("a", ExpectedVersion::Any, 1);
        with_event.claims = claim("live", 300, 150).claims;
        let requests = [
            claim("old", 300, 150),
            claim("live", 300, 150),
            claim("new", 300, 150),
            claim("new", 300, 150),
            with_event,
        ];
        let plan = plan(
            &genesis(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &stored,
            &requests,
            10,
        )
        .unwrap();
        let taken = |i: usize| matches!(&plan.results[i], Err(AppendError::Claimed { .. }));
        // then the expired key is free again, the live one is refused, a key is claimed once per batch,
        // and a refused claim refuses its events too
        assert!(plan.results[0].is_ok());
        assert!(taken(1));
        assert!(plan.results[2].is_ok());
        assert!(taken(3));
        assert!(taken(4));
        assert!(plan.events.is_empty());
        let claimed: Vec<(&str, i64)> = plan
            .new_claims
            .iter()
            .map(|c| (c.key.as_str(), c.expires_at))
            .collect();
        assert_eq!(claimed, [("old", 300), ("new", 300)]);
        assert_eq!(plan.head, genesis(), "claims alone move nothing in the ledger");
    }
}
