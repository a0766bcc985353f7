//! The off-ledger contract (`OffLedger`): one body per behaviour, run on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::TestDb;
use consent_ledger::store::OffLedger;

async fn open(db: &TestDb) -> Arc<dyn OffLedger> {
    db.open().await
}

async fn a_value_is_kept_replaced_and_forgotten_at_its_expiry(db: TestDb) {
    let kv = open(&db).await;
    kv.off_ledger_put("sessions", "s1", "one", Some(100), 0)
        .await
        .unwrap();
    assert_eq!(
        kv.off_ledger_get("sessions", "s1", 100).await.unwrap().as_deref(),
        Some("one")
    );
    // Namespaces do not share keys.
    assert_eq!(kv.off_ledger_get("pushed", "s1", 0).await.unwrap(), None);

    kv.off_ledger_put("sessions", "s1", "two", None, 0).await.unwrap();
    assert_eq!(
        kv.off_ledger_get("sessions", "s1", 1_000_000)
            .await
            .unwrap()
            .as_deref(),
        Some("two")
    );

    kv.off_ledger_put("sessions", "s2", "short", Some(10), 0)
        .await
        .unwrap();
    assert_eq!(kv.off_ledger_get("sessions", "s2", 11).await.unwrap(), None);
    // A later put sweeps what expired: the value is gone for good, even for a reader with an old clock.
    kv.off_ledger_put("sessions", "s3", "x", None, 11).await.unwrap();
    assert_eq!(kv.off_ledger_get("sessions", "s2", 5).await.unwrap(), None);

    kv.off_ledger_delete("sessions", "s1").await.unwrap();
    assert_eq!(kv.off_ledger_get("sessions", "s1", 0).await.unwrap(), None);
    // Deleting what is not there is not an error.
    kv.off_ledger_delete("sessions", "never").await.unwrap();
}

async fn of_concurrent_takes_exactly_one_gets_the_value(db: TestDb) {
    let kv = open(&db).await;
    kv.off_ledger_put("requests", "r1", "pending", Some(100), 0)
        .await
        .unwrap();
    let takes = (0..16).map(|_| {
        let kv = kv.clone();
        tokio::spawn(async move { kv.off_ledger_take("requests", "r1", 50).await.unwrap() })
    });
    let mut got = Vec::new();
    for t in takes {
        got.extend(t.await.unwrap());
    }
    assert_eq!(got, vec!["pending".to_owned()]);

    // An expired value is not handed out by a take either.
    kv.off_ledger_put("requests", "r2", "late", Some(10), 0)
        .await
        .unwrap();
    assert_eq!(kv.off_ledger_take("requests", "r2", 11).await.unwrap(), None);
}

async fn a_key_is_claimed_once_until_it_expires(db: TestDb) {
    let kv = open(&db).await;
    let claims = (0..16).map(|_| {
        let kv = kv.clone();
        tokio::spawn(async move { kv.claim_once("jti-1", 100, 0).await.unwrap() })
    });
    let mut won = 0;
    for c in claims {
        won += usize::from(c.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(!kv.claim_once("jti-1", 100, 99).await.unwrap());
    assert!(kv.claim_once("jti-2", 100, 99).await.unwrap());
    // Once expired the key is forgotten, and may be claimed again.
    assert!(kv.claim_once("jti-1", 300, 101).await.unwrap());
}

on_both_stores!(
    a_value_is_kept_replaced_and_forgotten_at_its_expiry,
    of_concurrent_takes_exactly_one_gets_the_value,
    a_key_is_claimed_once_until_it_expires,
);
