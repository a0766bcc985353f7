//! Signed checkpoints and Merkle proofs: the API, the offline checks, and `audit verify --checkpoints`
//! catching history rewritten with a recomputed chain, on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{TOKEN_CONFIG, TestDb, TestServer, issued};
use consent_ledger::audit::checkpoint::Schedule;
use consent_ledger::audit::checkpointer::Checkpointer;
use consent_ledger::keys::KeyDir;
use consent_ledger::store::{AppendRequest, EventStore, ExpectedVersion};
use projections::chain::{self, Link};
use serde_json::Value;

const ADMIN: &str = "admin-token-admin-token-admin-token-0123";

/// Runs the binary, against `db` when given; returns exit code and stdout.
fn cli(db: Option<&TestDb>, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consent-ledger"));
    if let Some(db) = db {
        cmd.arg("--database").arg(&db.url);
    }
    let out = cmd
        .arg("--quiet")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{stdout}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("[stderr] {stderr}")
            }
        ),
    )
}

async fn append(store: &dyn EventStore, n: usize) {
    for _ in 0..n {
        let jti = consent_ledger::ids::id();
        store
            .append(AppendRequest::to_stream(
                format!("token-{jti}"),
                ExpectedVersion::NoStream,
                vec![issued(&jti)],
            ))
            .await
            .unwrap();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn get(s: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn checkpoints_appear_after_n_events_and_their_proofs_verify_offline(db: TestDb) {
    let config =
        format!("{TOKEN_CONFIG}\n[audit]\ncheckpoint_every_events = 5\ncheckpoint_every_seconds = 600\n");
    let s = TestServer::start(&db, &config).await;
    let store = s.app.store.clone();
    let checkpointer = Checkpointer::for_app(&s.app).await.unwrap();
    // A checkpoint of what the server recorded at start; from here on the schedule decides.
    let base = store.head().await.unwrap().position;
    checkpointer.sign(base, s.now()).await.unwrap();
    append(store.as_ref(), 4).await;
    assert_eq!(
        checkpointer.run_once().await.unwrap(),
        None,
        "4 events are not enough"
    );
    append(store.as_ref(), 1).await;
    let first = checkpointer
        .run_once()
        .await
        .unwrap()
        .expect("due after 5 events");
    assert_eq!(first.position, base + 5);
    assert_eq!(checkpointer.run_once().await.unwrap(), None, "nothing new");
    // The time limit signs a grown log even below the event count.
    append(store.as_ref(), 2).await;
    assert_eq!(checkpointer.run_once().await.unwrap(), None);
    s.advance(600);
    let second = checkpointer
        .run_once()
        .await
        .unwrap()
        .expect("due after 600 seconds");
    assert_eq!(second.position, base + 7);

    // The list is the auditors': newest first, behind the token.
    let (status, _) = get(&s, "/audit/checkpoints", None).await;
    assert_eq!(status, 401);
    let (status, list) = get(&s, "/audit/checkpoints?limit=1", Some(ADMIN)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["checkpoints"][0]["position"], second.position);
    assert_eq!(list["next_before"], second.position);
    let (_, keys) = get(&s, "/audit/checkpoint-keys", None).await;
    assert_eq!(keys["keys"][0]["kid"], checkpointer.kid());
    assert_eq!(keys["keys"][0]["kty"], "OKP");

    // Exported checkpoints and published keys, kept off the box.
    let dir = tempfile::tempdir().unwrap();
    let (code, export) = cli(Some(&db), &["audit", "checkpoints"]);
    assert_eq!(code, 0, "{export}");
    let exported: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported.last().unwrap()["position"], second.position);
    let checkpoints = write(dir.path(), "checkpoints.ndjson", &export);
    let key = write(dir.path(), "keys.json", &keys.to_string());

    for position in [1, base + 3, second.position] {
        let (status, proof) = get(
            &s,
            &format!("/audit/events/{position}/proof?checkpoint={}", second.position),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 200, "{proof}");
        let file = write(dir.path(), "proof.json", &proof.to_string());
        let (code, out) = cli(
            None,
            &[
                "audit",
                "prove-included",
                "--proof",
                &file,
                "--checkpoint",
                &checkpoints,
                "--checkpoint-key",
                &key,
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with(&format!("included: event {position} ")), "{out}");
        // A changed event is not in the signed tree, even with its hash made to agree with its fields.
        let mut forged = proof.clone();
        let e = &proof["event"];
        let payload = format!("{} ", e["payload"].as_str().unwrap());
        let hash = chain::link_hash(
            &chain::parse_hash(e["prev_hash"].as_str().unwrap()).unwrap(),
            &Link {
                position: e["position"].as_u64().unwrap(),
                stream_id: e["stream_id"].as_str().unwrap(),
                version: e["version"].as_u64().unwrap(),
                event_type: e["event_type"].as_str().unwrap(),
                payload: &payload,
                metadata: e["metadata"].as_str().unwrap(),
                recorded_at: e["recorded_at"].as_i64().unwrap(),
            },
        );
        forged["event"]["payload"] = Value::String(payload.clone());
        forged["event"]["hash"] = Value::String(hex::encode(hash));
        forged["leaf_input"] = Value::Null;
        let file = write(dir.path(), "forged.json", &forged.to_string());
        let (code, out) = cli(
            None,
            &[
                "audit",
                "prove-included",
                "--proof",
                &file,
                "--checkpoint",
                &checkpoints,
            ],
        );
        assert_eq!(code, 1, "{out}");
        assert!(
            out.starts_with(&format!("not proven: event {position} is NOT in the tree")),
            "{out}"
        );
    }

    let (status, proof) = get(
        &s,
        &format!(
            "/audit/checkpoints/consistency?from={}&to={}",
            first.position, second.position
        ),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{proof}");
    let kept = write(dir.path(), "first.json", &serde_json::to_string(&first).unwrap());
    let file = write(dir.path(), "consistency.json", &proof.to_string());
    let (code, out) = cli(
        None,
        &[
            "audit",
            "prove-consistent",
            "--proof",
            &file,
            "--checkpoint",
            &kept,
            "--checkpoint-key",
            &key,
        ],
    );
    assert_eq!((code, out.starts_with("consistent: ")), (0, true), "{out}");

    // Bad requests are the caller's, unknown checkpoints are 404.
    let (status, _) = get(
        &s,
        &format!(
            "/audit/events/{}/proof?checkpoint={}",
            second.position + 1,
            second.position
        ),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(&s, "/audit/events/1/proof?checkpoint=1", Some(ADMIN)).await;
    assert_eq!(status, 404);
    let (status, _) = get(&s, "/audit/events/x/proof?checkpoint=1", Some(ADMIN)).await;
    assert_eq!(status, 400);
}

/// Two nodes signing the same size keep one checkpoint.
async fn nodes_racing_for_one_size_record_one_checkpoint(db: TestDb) {
    let store = db.open().await;
    append(store.as_ref(), 3).await;
    let keys = tempfile::tempdir().unwrap();
    let schedule = Schedule {
        every_events: 1,
        every_seconds: 60,
    };
    let a = Checkpointer::new(store.clone(), store.clock(), &KeyDir::new(keys.path()), schedule)
        .await
        .unwrap();
    let b = Checkpointer::new(store.clone(), store.clock(), &KeyDir::new(keys.path()), schedule)
        .await
        .unwrap();
    assert_eq!(a.kid(), b.kid(), "nodes sharing the key directory share the key");
    let (x, y) = tokio::join!(a.sign(3, 100), b.sign(3, 200));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y);
    assert_eq!(store.checkpoints_before(None, 10).await.unwrap().len(), 1);
    store.close().await;
}

/// Rewrites every event from `from` on (payload changed at `from`), recomputing each hash and the head.
async fn rewrite_from(db: &TestDb, store: &Arc<dyn EventStore>, from: u64) {
    let events = store.read_from(1, 1_000).await.unwrap();
    let mut prev = chain::GENESIS;
    let mut sql = String::new();
    for e in &events {
        let payload = if e.position == from {
            e.payload.replace("read", "admin")
        } else {
            e.payload.clone()
        };
        let hash = chain::link_hash(
            &prev,
            &Link {
                position: e.position,
                stream_id: &e.stream_id,
                version: e.version,
                event_type: &e.event_type,
                payload: &payload,
                metadata: &e.metadata,
                recorded_at: e.recorded_at,
            },
        );
        if e.position >= from {
            sql.push_str(&format!(
                "UPDATE events SET payload = '{}', hash = '{}' WHERE position = {};",
                payload.replace('\'', "''"),
                hex::encode(hash),
                e.position
            ));
        }
        prev = hash;
    }
    sql.push_str(&format!(
        "UPDATE ledger_head SET hash = '{}' WHERE id = 1;",
        hex::encode(prev)
    ));
    db.exec(&sql).await;
}

async fn history_rewritten_with_a_recomputed_chain_passes_verify_but_not_verify_checkpoints(db: TestDb) {
    let store = db.open().await;
    let keys = tempfile::tempdir().unwrap();
    let schedule = Schedule {
        every_events: 1,
        every_seconds: 60,
    };
    let checkpointer = Checkpointer::new(store.clone(), store.clock(), &KeyDir::new(keys.path()), schedule)
        .await
        .unwrap();
    append(store.as_ref(), 3).await;
    checkpointer.sign(3, 100).await.unwrap();
    append(store.as_ref(), 5).await;
    checkpointer.sign(8, 200).await.unwrap();
    append(store.as_ref(), 2).await;

    let dir = tempfile::tempdir().unwrap();
    let (code, export) = cli(Some(&db), &["audit", "checkpoints"]);
    assert_eq!((code, export.lines().count()), (0, 2), "{export}");
    let checkpoints = write(dir.path(), "checkpoints.ndjson", &export);
    let (code, out) = cli(Some(&db), &["audit", "verify", "--checkpoints", &checkpoints]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches 2 checkpoint(s) up to position 8"), "{out}");
    // Later exports continue where the last one stopped.
    let (_, later) = cli(Some(&db), &["audit", "checkpoints", "--after", "3"]);
    assert_eq!(later.lines().count(), 1);

    // A signature that does not verify, or a key the auditor does not hold, is refused.
    let mut lines: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[0]["time"] = Value::from(lines[0]["time"].as_i64().unwrap() + 1);
    let tampered = write(
        dir.path(),
        "tampered.ndjson",
        &lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
    );
    let (code, out) = cli(Some(&db), &["audit", "verify", "--checkpoints", &tampered]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
    let stranger = tempfile::tempdir().unwrap();
    let other = consent_ledger::keys::CheckpointKey::load_or_create(&KeyDir::new(stranger.path())).unwrap();
    let other_key = write(dir.path(), "other.json", &other.public.jwk().to_string());
    let (code, out) = cli(
        Some(&db),
        &[
            "audit",
            "verify",
            "--checkpoints",
            &checkpoints,
            "--checkpoint-key",
            &other_key,
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no published checkpoint key"), "{out}");

    // Rewriting from position 5 and recomputing the chain: the chain alone cannot tell.
    rewrite_from(&db, &store, 5).await;
    let (code, out) = cli(Some(&db), &["audit", "verify"]);
    assert_eq!(code, 0, "the recomputed chain verifies: {out}");
    let (code, out) = cli(Some(&db), &["audit", "verify", "--checkpoints", &checkpoints]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("broken at position 4: the ledger no longer matches checkpoint 8"),
        "{out}"
    );
    assert!(out.contains("between positions 4 and 8"), "{out}");
    store.close().await;
}

async fn a_truncated_history_with_a_moved_head_fails_verify_checkpoints(db: TestDb) {
    let store = db.open().await;
    let keys = tempfile::tempdir().unwrap();
    let schedule = Schedule {
        every_events: 1,
        every_seconds: 60,
    };
    let checkpointer = Checkpointer::new(store.clone(), store.clock(), &KeyDir::new(keys.path()), schedule)
        .await
        .unwrap();
    append(store.as_ref(), 6).await;
    checkpointer.sign(6, 100).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, export) = cli(Some(&db), &["audit", "checkpoints"]);
    let checkpoints = write(dir.path(), "checkpoints.ndjson", &export);
    let fourth = store.read_from(4, 1).await.unwrap().remove(0);
    db.exec(&format!(
        "DELETE FROM events WHERE position > 4; UPDATE ledger_head SET position = 4, hash = '{}' WHERE id = 1;",
        fourth.hash
    ))
    .await;
    let (code, out) = cli(Some(&db), &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(Some(&db), &["audit", "verify", "--checkpoints", &checkpoints]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("events were removed"), "{out}");
    store.close().await;
}

on_both_stores!(
    checkpoints_appear_after_n_events_and_their_proofs_verify_offline,
    nodes_racing_for_one_size_record_one_checkpoint,
    history_rewritten_with_a_recomputed_chain_passes_verify_but_not_verify_checkpoints,
    a_truncated_history_with_a_moved_head_fails_verify_checkpoints,
);
