//! Acknowledged appends survive SIGKILL; several processes share one PostgreSQL ledger; the server
//! answers its health checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::TestDb;
use consent_ledger::audit::{replay, verify};
use consent_ledger::store::{AppendRequest, ExpectedVersion};
use projections::Event;
use projections::event::{ConsentRevoked, V1};

const ACKS_BEFORE_KILL: usize = 2_000;

async fn every_acknowledged_append_survives_sigkill(db: TestDb) {
    // Migrate first so the child starts appending at once.
    db.open().await.close().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .args([
            "--database",
            &db.url,
            "bench",
            "append",
            "--count",
            "10000000",
            "--concurrency",
            "16",
            "--acks",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < ACKS_BEFORE_KILL {
        let line = lines.next().expect("child stopped before being killed").unwrap();
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("ack"));
        let stream = parts.next().unwrap().to_owned();
        let position: u64 = parts.next().unwrap().parse().unwrap();
        acked.insert(position, stream);
    }
    // SIGKILL: no destructor, no flush, no goodbye.
    child.kill().unwrap();
    child.wait().unwrap();

    let store = db.open().await;
    let last = *acked.keys().last().unwrap();
    let stored: BTreeMap<u64, String> = store
        .read_from(1, last as u32)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.stream_id))
        .collect();
    for (position, stream) in &acked {
        assert_eq!(
            stored.get(position),
            Some(stream),
            "acknowledged append at {position} lost"
        );
    }
    assert!(matches!(
        verify::verify(store.as_ref(), None).await.unwrap(),
        verify::Verdict::Intact { .. }
    ));
    assert_eq!(replay::compare(store.as_ref()).await.unwrap(), vec![]);
    store.close().await;
}

on_both_stores!(every_acknowledged_append_survives_sigkill);

fn revoke(id: &str) -> Event {
    Event::ConsentRevoked(ConsentRevoked {
        v: V1,
        consent_id: id.into(),
        at: 1,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_appending_at_once_keep_one_gap_free_chain() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let mut tasks = Vec::new();
    for (node, store) in [("a", a.clone()), ("b", b.clone())] {
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let event = revoke(&format!("{node}-{t}-{i}"));
                    store
                        .append(AppendRequest::to_stream(
                            event.stream_id(),
                            ExpectedVersion::NoStream,
                            vec![event],
                        ))
                        .await
                        .unwrap();
                }
                // Both nodes race for one stream too: exactly one of each pair wins.
                store
                    .append(AppendRequest::to_stream(
                        "consent-shared",
                        ExpectedVersion::Exact(t),
                        vec![revoke("shared")],
                    ))
                    .await
                    .is_ok()
            }));
        }
    }
    let mut shared_wins = 0;
    for t in tasks {
        shared_wins += usize::from(t.await.unwrap());
    }
    let events = a.read_from(1, 10_000).await.unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=positions.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.iter().filter(|e| e.stream_id == "consent-shared").count(),
        shared_wins
    );
    assert!(shared_wins >= 1);
    assert!(matches!(
        verify::verify(b.as_ref(), None).await.unwrap(),
        verify::Verdict::Intact { count: 640.., .. }
    ));
    assert_eq!(replay::compare(a.as_ref()).await.unwrap(), vec![]);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn the_server_answers_health_and_readiness_and_stops_on_sigterm() {
    let db = TestDb::sqlite();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_consent-ledger"))
        .args([
            "--database",
            &db.url,
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let get = |path: &str| {
        let path = path.to_owned();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out)
        }
    };
    let mut health = None;
    for _ in 0..100 {
        health = get("/healthz").await;
        if health.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(health.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(std::path::Path::new(db.url.trim_start_matches("sqlite://")).exists());

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
