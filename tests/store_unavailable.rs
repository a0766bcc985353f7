//! A database that is gone or cannot take writes is answered with 503 `temporarily_unavailable` and a
//! `Retry-After`, for reads and appends alike, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Kind, TOKEN_CONFIG, TestDb, TestServer};
use serde_json::json;

async fn client(s: &TestServer) -> String {
    s.register(json!({
        "client_id": "billing", "name": "Billing", "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["read"],
    }))
    .await
    .unwrap()
}

/// Asks for a token and checks the answer is a retryable 503 with `Retry-After`.
async fn assert_temporarily_unavailable(s: &TestServer, secret: &str) {
    let (status, headers, body) = s
        .post_form(
            "/token",
            Some(("billing", secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0);
    assert_eq!(headers["cache-control"], "no-store");
}

/// The reads a token needs succeed but its append cannot commit: the client is told to retry (503), not
/// that the server is broken (500), and gets no token the ledger does not hold.
async fn a_token_whose_append_cannot_commit_is_refused_with_503_and_retry_after(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s).await;
    let (status, _, _) = s
        .post_form(
            "/token",
            Some(("billing", &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200);

    db.exec("DROP TABLE events").await;
    assert_temporarily_unavailable(&s, &secret).await;
}

/// The whole schema is gone (dropped, or a database that was never migrated behind a live server).
async fn a_token_request_to_a_server_whose_database_is_gone_answers_503_with_retry_after(db: TestDb) {
    let s = TestServer::start(&db, TOKEN_CONFIG).await;
    let secret = client(&s).await;
    match db.kind {
        Kind::Postgres => {
            let schema = db.url.rsplit("search_path]=").next().unwrap().to_owned();
            db.exec(&format!("DROP SCHEMA {schema} CASCADE")).await;
        }
        Kind::Sqlite => {
            db.exec(
                "PRAGMA foreign_keys = OFF; \
                 DROP TABLE events; DROP TABLE ledger_head; DROP TABLE idempotency_keys; DROP TABLE streams; \
                 DROP TABLE clients; DROP TABLE signing_keys; DROP TABLE delegations; DROP TABLE consents; \
                 DROP TABLE tokens; DROP TABLE refresh_tokens; DROP TABLE used_assertions; \
                 DROP TABLE users; DROP TABLE authorization_codes; DROP TABLE off_ledger; \
                 DROP TABLE _sqlx_migrations;",
            )
            .await;
        }
    }
    assert_temporarily_unavailable(&s, &secret).await;
    let ready = s.http.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

on_both_stores!(
    a_token_whose_append_cannot_commit_is_refused_with_503_and_retry_after,
    a_token_request_to_a_server_whose_database_is_gone_answers_503_with_retry_after,
);
