//! Nodes starting at the same moment on one database, on SQLite and PostgreSQL: every one comes up, and
//! what they record at start (configured clients, the policy, a signing key) is recorded once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOKEN_CONFIG, TestDb};
use consent_ledger::audit::verify;
use projections::Event;

const NODES: usize = 4;

fn config(key_dir: &std::path::Path) -> consent_ledger::config::Config {
    let toml = format!(
        r#"{TOKEN_CONFIG}
[[clients]]
client_id = "client-web"
name = "Web"
grant_types = ["client_credentials"]
scopes = ["read"]
secret_sha256 = "{}"
[[clients]]
client_id = "client-batch"
name = "Batch"
grant_types = ["client_credentials"]
scopes = ["read", "write"]
secret_sha256 = "{}"
"#,
        "a".repeat(64),
        "b".repeat(64),
    );
    let mut config = consent_ledger::config::Config::parse("test.toml", &toml).unwrap();
    config.key_dir = key_dir.to_owned();
    config.validate("test.toml").unwrap();
    config
}

on_both_stores!(nodes_started_together_all_come_up_and_record_once);

async fn nodes_started_together_all_come_up_and_record_once(db: TestDb) {
    // Several rounds: the race is between whole start-ups, so one round may not hit it.
    let keys = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut stores = Vec::new();
        for _ in 0..NODES {
            // Each node its own pool and group-commit writer, as separate processes have.
            stores.push(db.open().await);
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(NODES));
        let mut nodes = Vec::new();
        for store in stores {
            let config = config(keys.path());
            let barrier = barrier.clone();
            nodes.push(tokio::spawn(async move {
                let now = store.clock().now();
                barrier.wait().await;
                consent_ledger::startup::start(store, config, now).await
            }));
        }
        for node in nodes {
            let started = node.await.unwrap();
            assert!(
                started.is_ok(),
                "round {round}: a node failed to start: {:?}",
                started.err()
            );
        }
    }

    let store = db.open().await;
    let events: Vec<Event> = store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.decode().unwrap().event)
        .collect();
    let count = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(
        count(&|e| matches!(e, Event::ClientRegistered(_))),
        2,
        "{events:#?}"
    );
    assert_eq!(count(&|e| matches!(e, Event::ClientUpdated(_))), 0);
    assert_eq!(count(&|e| matches!(e, Event::PolicyPublished(_))), 1);
    assert_eq!(
        count(&|e| matches!(e, Event::SigningKeyAdded(_))),
        1,
        "{events:#?}"
    );
    let verdict = verify::verify(store.as_ref(), None).await.unwrap();
    assert!(matches!(verdict, verify::Verdict::Intact { .. }), "{verdict:?}");
}
