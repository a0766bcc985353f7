//! Tamper evidence and replay through the `consent-ledger audit` commands, on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{TestDb, issued};
use consent_ledger::store::{AppendRequest, ExpectedVersion};

/// Runs the binary against `db`; returns exit code and stdout.
fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .arg("--database")
        .arg(&db.url)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A ledger of five events on five streams.
async fn ledger_of_five(db: &TestDb) {
    let store = db.open().await;
    for i in 1..=5 {
        let jti = format!("j{i}");
        store
            .append(AppendRequest::to_stream(
                format!("token-{jti}"),
                ExpectedVersion::NoStream,
                vec![issued(&jti)],
            ))
            .await
            .unwrap();
    }
    store.close().await;
}

fn assert_broken_at(db: &TestDb, position: u64) -> String {
    let (code, out, err) = cli(db, &["audit", "verify"]);
    assert_eq!(code, 1, "stdout: {out} stderr: {err}");
    assert!(
        out.starts_with(&format!("broken at position {position}:")),
        "{out}"
    );
    out
}

async fn an_intact_ledger_verifies_and_replays(db: TestDb) {
    ledger_of_five(&db).await;
    let (code, out, _) = cli(&db, &["audit", "verify"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("intact: 5 events, head "), "{out}");
    let head = out.trim().rsplit(' ').next().unwrap().to_owned();
    let (code, out, _) = cli(&db, &["audit", "verify", "--anchor", &format!("5:{head}")]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli(&db, &["audit", "verify", "--anchor", &format!("3:{head}")]);
    assert_eq!(
        (
            code,
            out.starts_with("broken at position 3: hash differs from the anchor")
        ),
        (1, true),
        "{out}"
    );

    let (code, out, _) = cli(&db, &["audit", "replay"]);
    assert_eq!((code, out.trim()), (0, "replay matches the stored projections"));
    let (code, out, _) = cli(&db, &["audit", "replay", "--until", "2"]);
    assert_eq!(code, 0);
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(state["position"], 2);
    let tokens = state["state"]["tokens"].as_object().unwrap();
    assert_eq!(tokens.keys().collect::<Vec<_>>(), vec!["j1", "j2"]);
    let (code, out, _) = cli(&db, &["audit", "replay", "--until", "1970-01-01T00:00:00Z"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["position"],
        0
    );
}

async fn one_changed_byte_is_found_at_its_position(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec("UPDATE events SET payload = replace(payload, '\"j3\"', '\"j9\"') WHERE position = 3")
        .await;
    let out = assert_broken_at(&db, 3);
    assert!(out.contains("hash does not match"), "{out}");
}

async fn a_deleted_event_is_found_at_its_position(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec("DELETE FROM events WHERE position = 2").await;
    let out = assert_broken_at(&db, 2);
    assert!(out.contains("missing"), "{out}");
}

async fn two_swapped_events_are_found_at_the_first(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec(
        "UPDATE events SET position = -position WHERE position IN (2, 4); \
         UPDATE events SET position = 4 WHERE position = -2; \
         UPDATE events SET position = 2 WHERE position = -4;",
    )
    .await;
    assert_broken_at(&db, 2);
}

async fn a_truncated_tail_is_found_even_after_new_appends(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec("DELETE FROM events WHERE position > 3").await;
    let out = assert_broken_at(&db, 4);
    assert!(out.contains("removed"), "{out}");

    let store = db.open().await;
    store
        .append(AppendRequest::to_stream(
            "token-new",
            ExpectedVersion::Any,
            vec![issued("new")],
        ))
        .await
        .unwrap();
    store.close().await;
    let out = assert_broken_at(&db, 4);
    assert!(out.contains("missing"), "{out}");
}

async fn replay_reports_a_projection_row_that_differs_from_the_log(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec("UPDATE tokens SET state = replace(state, '\"read\"', '\"admin\"') WHERE id = 'j4'")
        .await;
    db.exec("DELETE FROM tokens WHERE id = 'j5'").await;
    let (code, out, _) = cli(&db, &["audit", "replay"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tokens j4: stored"), "{out}");
    assert!(out.contains("tokens j5: in the replay, not stored"), "{out}");
    assert!(out.contains("2 difference(s)"), "{out}");
}

async fn replay_reports_a_stored_row_no_event_produced(db: TestDb) {
    ledger_of_five(&db).await;
    db.exec(
        "INSERT INTO tokens (id, subject, client_id, delegation_id, state) \
         SELECT 'j6', subject, client_id, delegation_id, state FROM tokens WHERE id = 'j1'",
    )
    .await;
    let (code, out, _) = cli(&db, &["audit", "replay"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tokens j6: stored, not in the replay"), "{out}");
    assert!(out.contains("1 difference(s)"), "{out}");
}

/// The comparison in several passes (what a large ledger gets) finds what one pass finds.
async fn replay_in_parts_finds_what_one_pass_finds(db: TestDb) {
    use consent_ledger::audit::{progress::Progress, replay};
    ledger_of_five(&db).await;
    let store = db.open().await;
    assert_eq!(
        replay::compare_in(store.as_ref(), 4, &mut Progress::quiet())
            .await
            .unwrap(),
        vec![]
    );
    store.close().await;
    db.exec("UPDATE tokens SET state = replace(state, '\"read\"', '\"admin\"') WHERE id = 'j4'")
        .await;
    db.exec("DELETE FROM tokens WHERE id = 'j5'").await;
    db.exec(
        "INSERT INTO tokens (id, subject, client_id, delegation_id, state) \
         SELECT 'j6', subject, client_id, delegation_id, state FROM tokens WHERE id = 'j1'",
    )
    .await;
    let store = db.open().await;
    let whole = replay::compare_in(store.as_ref(), 1, &mut Progress::quiet())
        .await
        .unwrap();
    assert_eq!(whole.len(), 3, "{whole:?}");
    for parts in [2, 3, 7] {
        let split = replay::compare_in(store.as_ref(), parts, &mut Progress::quiet())
            .await
            .unwrap();
        assert_eq!(split, whole, "{parts} parts");
    }
    store.close().await;
}

on_both_stores!(
    an_intact_ledger_verifies_and_replays,
    one_changed_byte_is_found_at_its_position,
    a_deleted_event_is_found_at_its_position,
    two_swapped_events_are_found_at_the_first,
    a_truncated_tail_is_found_even_after_new_appends,
    replay_reports_a_projection_row_that_differs_from_the_log,
    replay_reports_a_stored_row_no_event_produced,
    replay_in_parts_finds_what_one_pass_finds,
);

#[test]
fn bad_input_gets_one_line_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let run = |db: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
            .args(["--database", db, "audit", "verify"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert!(!out.status.success(), "{db}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        err
    };
    assert!(run("mysql://localhost/x").contains("unknown database scheme"));
    assert!(run("postgres://postgres@127.0.0.1:1/none").contains("cannot reach PostgreSQL"));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    assert!(run(&format!("sqlite://{}", junk.display())).contains("not a"));
    let other = dir.path().join("other.db");
    let other_url = format!("sqlite://{}?mode=rwc", other.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&other_url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE invoices (id INTEGER)")
            .execute(&mut c)
            .await
            .unwrap();
    });
    assert!(run(&format!("sqlite://{}", other.display())).contains("not a consent-ledger one"));
}
