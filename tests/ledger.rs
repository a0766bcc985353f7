//! The event store contract, run against SQLite and PostgreSQL with the same bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{TestDb, issued};
use consent_ledger::audit::{replay, verify};
use consent_ledger::store::{self, AppendError, AppendRequest, ExpectedVersion};
use futures_util::StreamExt;
use projections::event::{ClientDisabled, RevocationReason, TokenRevoked, V1};
use projections::testing::{events, stream_of};
use projections::tokens::Token;
use projections::{Event, Metadata};
use proptest::prelude::*;

fn revoked(jti: &str) -> Event {
    Event::TokenRevoked(TokenRevoked {
        v: V1,
        jti: jti.into(),
        reason: RevocationReason::ClientRequest,
        at: 200,
    })
}

fn one(stream: &str, expected: ExpectedVersion, event: Event) -> AppendRequest {
    AppendRequest::to_stream(stream, expected, vec![event])
}

async fn assert_intact(store: &dyn store::EventStore, count: u64) {
    match verify::verify(store, None).await.unwrap() {
        verify::Verdict::Intact { count: c, .. } => assert_eq!(c, count),
        broken => panic!("expected an intact chain, got {broken:?}"),
    }
    assert_eq!(replay::compare(store).await.unwrap(), vec![]);
}

async fn many_concurrent_reads_of_rows_each_get_their_own_answer(db: TestDb) {
    let store = db.open().await;
    for jti in ["a", "b"] {
        store
            .append(one(
                &format!("token-{jti}"),
                ExpectedVersion::NoStream,
                issued(jti),
            ))
            .await
            .unwrap();
    }
    // Reads in flight together (SQLite answers them with one statement): the same row asked for many
    // times, another row, and a missing one.
    let reads = (0..96).map(|i| {
        let store = store.clone();
        let id = ["a", "a", "b", "missing"][i % 4];
        tokio::spawn(async move { (id, store::get::<Token>(store.as_ref(), id).await.unwrap()) })
    });
    let by_subject = (0..32).map(|i| {
        let store = store.clone();
        let subject = ["c1", "nobody"][i % 2];
        tokio::spawn(async move {
            let filter = store::RowFilter {
                subject: Some(subject),
                ..store::RowFilter::default()
            };
            (
                subject,
                store::find::<Token>(store.as_ref(), filter).await.unwrap(),
            )
        })
    });
    for read in futures_util::future::join_all(reads).await {
        let (id, row) = read.unwrap();
        match id {
            "missing" => assert!(row.is_none()),
            _ => assert_eq!(row.unwrap().jti, id),
        }
    }
    for read in futures_util::future::join_all(by_subject).await {
        let (subject, rows) = read.unwrap();
        let jtis: Vec<String> = rows.into_iter().map(|t| t.jti).collect();
        match subject {
            "c1" => assert_eq!(jtis, vec!["a", "b"]),
            _ => assert!(jtis.is_empty()),
        }
    }
}

async fn appends_are_read_back_in_order_with_their_projections(db: TestDb) {
    let store = db.open().await;
    let meta = Metadata {
        request_id: Some("r1".into()),
        actor: Some("admin".into()),
        policy_version: None,
    };
    let r = store
        .append(one("token-a", ExpectedVersion::NoStream, issued("a")).with_metadata(meta.clone()))
        .await
        .unwrap();
    assert_eq!((r.first_position, r.last_position, r.replayed), (1, 1, false));
    let r = store
        .append(
            AppendRequest::to_stream("token-a", ExpectedVersion::Exact(1), vec![revoked("a")]).and(
                AppendRequest::to_stream(
                    "token-b",
                    ExpectedVersion::NoStream,
                    vec![issued("b"), revoked("b")],
                ),
            ),
        )
        .await
        .unwrap();
    assert_eq!((r.first_position, r.last_position), (2, 4));
    assert_eq!(r.stream_versions.get("token-b"), Some(&2));

    let page = store.read_from(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![2, 3]);
    let all: Vec<_> = store
        .stream_from(1)
        .map(|e| e.unwrap().decode().unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].metadata, meta);
    assert_eq!(all[3].event, revoked("b"));
    assert_eq!((all[3].stream_id.as_str(), all[3].version), ("token-b", 2));
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));

    let a: Token = store::get(store.as_ref(), "a").await.unwrap().unwrap();
    assert_eq!((a.revoked_at, a.issued_position), (Some(200), 1));
    assert!(
        store::get::<Token>(store.as_ref(), "nope")
            .await
            .unwrap()
            .is_none()
    );
    let by_client: Vec<Token> = store::find(
        store.as_ref(),
        store::RowFilter {
            client_id: Some("c1"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_client.len(), 2);
    assert_intact(store.as_ref(), 4).await;
    store.close().await;
}

async fn a_conflicting_append_names_the_stream_and_leaves_no_trace(db: TestDb) {
    let store = db.open().await;
    store
        .append(one("token-a", ExpectedVersion::NoStream, issued("a")))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let rows = store.all_rows().await.unwrap();

    let err = store
        .append(one("token-a", ExpectedVersion::NoStream, revoked("a")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppendError::Conflict { stream_id, actual: Some(1), .. } if stream_id == "token-a")
    );
    // All or nothing across streams: the good half is not written either.
    let both = one("token-z", ExpectedVersion::NoStream, issued("z")).and(one(
        "token-a",
        ExpectedVersion::Exact(5),
        revoked("a"),
    ));
    let err = store.append(both).await.unwrap_err();
    assert!(
        matches!(&err, AppendError::Conflict { stream_id, .. } if stream_id == "token-a"),
        "{err}"
    );

    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(store.all_rows().await.unwrap(), rows);
    assert_eq!(store.read_from(1, 100).await.unwrap().len(), 1);
    assert_intact(store.as_ref(), 1).await;
    store.close().await;
}

async fn a_retried_append_with_its_idempotency_key_writes_once(db: TestDb) {
    let store = db.open().await;
    let mut req = one("token-a", ExpectedVersion::NoStream, issued("a"));
    req.idempotency_key = Some("req-1".into());
    let first = store.append(req.clone()).await.unwrap();
    let again = store.append(req).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(
        (again.first_position, again.stream_versions),
        (first.first_position, first.stream_versions)
    );
    assert_eq!(store.head().await.unwrap().position, 1);
    store.close().await;
}

async fn concurrent_appends_with_the_same_expected_version_have_one_winner(db: TestDb) {
    let store = db.open().await;
    store
        .append(one("token-x", ExpectedVersion::NoStream, issued("x")))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(one("token-x", ExpectedVersion::Exact(1), revoked("x")))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(AppendError::Conflict {
                stream_id,
                expected,
                actual,
            }) => {
                assert_eq!(
                    (stream_id.as_str(), expected, actual),
                    ("token-x", ExpectedVersion::Exact(1), Some(2))
                );
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_intact(store.as_ref(), 2).await;
    store.close().await;
}

async fn the_store_refuses_appends_after_close_and_reopens_intact(db: TestDb) {
    let store = db.open().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(one(
                        &format!("token-{i}"),
                        ExpectedVersion::NoStream,
                        issued(&i.to_string()),
                    ))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    store.close().await;
    assert!(
        store
            .append(one("token-late", ExpectedVersion::Any, issued("late")))
            .await
            .is_err()
    );
    let reopened = db.open().await;
    assert_intact(reopened.as_ref(), 50).await;
    reopened.close().await;
}

async fn stored_rows_equal_the_fold_of_the_stored_log_for_random_histories(db: TestDb) {
    let store = db.open().await;
    let runtime = tokio::runtime::Handle::current();
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // The proptest body is synchronous; it drives the async store on this test's runtime from a plain thread.
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        proptest::test_runner::TestRunner::new(config)
            .run(
                &(events(40), proptest::collection::vec(1usize..8, 1..10)),
                |(evs, sizes)| {
                    runtime.block_on(async {
                        let mut rest = evs.as_slice();
                        let mut sizes = sizes.iter().cycle();
                        while !rest.is_empty() {
                            let n = (*sizes.next().unwrap()).min(rest.len());
                            let (batch, tail) = rest.split_at(n);
                            rest = tail;
                            let mut req = AppendRequest::default();
                            for e in batch {
                                req = req.and(AppendRequest::to_stream(
                                    stream_of(e),
                                    ExpectedVersion::Any,
                                    vec![e.clone()],
                                ));
                            }
                            // Expectations are per stream; a batch naming a stream twice keeps its first.
                            let mut seen = BTreeSet::new();
                            req.expectations.retain(|x| seen.insert(x.stream_id.clone()));
                            s.append(req).await.unwrap();
                        }
                        // A refused batch leaves no trace.
                        let head = s.head().await.unwrap();
                        let rows = s.all_rows().await.unwrap();
                        let bad = one(
                            "client-client0",
                            ExpectedVersion::Exact(99),
                            Event::ClientDisabled(ClientDisabled {
                                v: V1,
                                client_id: "client0".into(),
                                reason: "x".into(),
                                at: 1,
                            }),
                        );
                        assert!(s.append(bad).await.is_err());
                        prop_assert_eq!(s.head().await.unwrap(), head);
                        prop_assert_eq!(s.all_rows().await.unwrap(), rows);
                        prop_assert_eq!(replay::compare(s.as_ref()).await.unwrap(), vec![]);
                        Ok(())
                    })
                },
            )
            .unwrap();
    })
    .await
    .unwrap();
    assert!(matches!(
        verify::verify(store.as_ref(), None).await.unwrap(),
        verify::Verdict::Intact { .. }
    ));
    store.close().await;
}

/// A ledger written before the `streams` table existed gets it filled from its events on upgrade, so an
/// append that replays a stream's first event is still refused after the upgrade.
async fn upgrading_a_ledger_keeps_every_stream_version(db: TestDb) {
    let store = db.open().await;
    store
        .append(one("token-up", ExpectedVersion::NoStream, issued("up")))
        .await
        .unwrap();
    store
        .append(one("token-up", ExpectedVersion::Exact(1), revoked("up")))
        .await
        .unwrap();
    store.close().await;
    // Back to the schema before migration 4 (and the tables of the migrations after it).
    db.exec(
        "DROP TABLE streams; DROP TABLE trusted_issuers; DROP TABLE device_authorizations; \
         DROP TABLE backchannel_requests; DROP TABLE merkle_nodes; DROP TABLE checkpoints; \
         DROP TABLE checkpoint_keys; DROP INDEX events_recorded_at; DROP INDEX tokens_subject; \
         DROP INDEX refresh_tokens_subject; DELETE FROM _sqlx_migrations WHERE version >= 4",
    )
    .await;

    let store = db.open().await;
    assert_eq!(store.stream_version("token-up").await.unwrap(), Some(2));
    assert_eq!(store.stream_version("token-none").await.unwrap(), None);
    let err = store
        .append(one("token-up", ExpectedVersion::NoStream, issued("up")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { actual: Some(2), .. }),
        "{err}"
    );
    store
        .append(one("token-up", ExpectedVersion::Exact(2), revoked("up")))
        .await
        .unwrap();
    assert_eq!(store.stream_version("token-up").await.unwrap(), Some(3));
    store.close().await;
}

/// `recorded_at` is the store's clock (the one the server shares), never a clock of its own; a clock set
/// back does not make the chain's times go backwards.
async fn recorded_at_comes_from_the_clock_the_store_was_opened_with(db: TestDb) {
    let clock = consent_ledger::clock::ManualClock::at(1_700_000_000);
    let store = db.open_with_clock(&clock).await;
    let recorded = |from: u64| {
        let store = store.clone();
        async move { store.read_from(from, 1).await.unwrap()[0].recorded_at }
    };
    store
        .append(one("token-a", ExpectedVersion::Any, issued("a")))
        .await
        .unwrap();
    assert_eq!(recorded(1).await, 1_700_000_000_000_000);
    clock.advance(5);
    clock.advance_micros(250_000);
    store
        .append(one("token-b", ExpectedVersion::Any, issued("b")))
        .await
        .unwrap();
    assert_eq!(recorded(2).await, 1_700_000_005_250_000);
    clock.advance(-100);
    store
        .append(one("token-c", ExpectedVersion::Any, issued("c")))
        .await
        .unwrap();
    assert_eq!(recorded(3).await, 1_700_000_005_250_000);
    assert_intact(store.as_ref(), 3).await;
    store.close().await;
}

/// Revoking token `b` on token `a`'s stream would make `a`'s version 2 and so defeat every check that reads
/// a stream's version as "what happened to this entity" (a refresh token's rotation, a code's redemption).
async fn an_event_appended_to_another_entitys_stream_is_refused_and_leaves_no_trace(db: TestDb) {
    let store = db.open().await;
    store
        .append(one("token-a", ExpectedVersion::NoStream, issued("a")))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let misplaced = one("token-a", ExpectedVersion::Exact(1), revoked("b")).and(one(
        "token-c",
        ExpectedVersion::NoStream,
        issued("c"),
    ));
    let err = store.append(misplaced).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AppendError::WrongStream { stream_id, belongs_to, event_type: "TokenRevoked" }
                if stream_id == "token-a" && belongs_to == "token-b"
        ),
        "{err:?}"
    );
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(store.stream_version("token-a").await.unwrap(), Some(1));
    assert_eq!(store.stream_version("token-c").await.unwrap(), None);
    assert_intact(store.as_ref(), 1).await;
    store.close().await;
}

on_both_stores!(
    recorded_at_comes_from_the_clock_the_store_was_opened_with,
    upgrading_a_ledger_keeps_every_stream_version,
    an_event_appended_to_another_entitys_stream_is_refused_and_leaves_no_trace,
    many_concurrent_reads_of_rows_each_get_their_own_answer,
    appends_are_read_back_in_order_with_their_projections,
    a_conflicting_append_names_the_stream_and_leaves_no_trace,
    a_retried_append_with_its_idempotency_key_writes_once,
    concurrent_appends_with_the_same_expected_version_have_one_winner,
    the_store_refuses_appends_after_close_and_reopens_intact,
    stored_rows_equal_the_fold_of_the_stored_log_for_random_histories,
);
