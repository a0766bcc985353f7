//! `X-Request-Id` on SQLite and PostgreSQL: the id a caller (or its load balancer) sends comes back on the
//! answer and is recorded with the events the request appended, so a support ticket leads to the ledger;
//! an id that is unsafe to repeat is replaced, never written into logs or the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestDb, TestServer};
use consent_ledger::store::EventStore;
use projections::Event;
use projections::event::RecordedEvent;
use serde_json::json;

const CONFIG: &str = r#"
admin_token = "admin-token-admin-token-admin-token-0123"
[[scopes]]
name = "messages:read"
description = "Read your messages"
default = true
"#;

async fn service(s: &TestServer) -> String {
    s.register(json!({
        "client_id": "svc", "name": "Service", "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["messages:read"],
    }))
    .await
    .unwrap()
}

/// Asks for a token with `request_id` in the header (or none); returns the id the answer carries.
async fn token_with(s: &TestServer, secret: &str, request_id: Option<&str>) -> String {
    let mut r = s
        .http
        .post(format!("{}/token", s.base))
        .basic_auth("svc", Some(secret))
        .form(&[("grant_type", "client_credentials")]);
    if let Some(id) = request_id {
        r = r.header("X-Request-Id", id);
    }
    let r = r.send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let status = r.status();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    id
}

async fn last_token_issued(s: &TestServer) -> RecordedEvent {
    let store: &dyn EventStore = s.app.store.as_ref();
    store
        .read_from(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.decode().unwrap())
        .rfind(|r| matches!(r.event, Event::TokenIssued(_)))
        .unwrap()
}

async fn a_callers_request_id_comes_back_and_is_recorded_with_the_tokens_event(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    let secret = service(&s).await;
    assert_eq!(token_with(&s, &secret, Some("ticket-4711")).await, "ticket-4711");
    let recorded = last_token_issued(&s).await;
    assert_eq!(recorded.metadata.request_id.as_deref(), Some("ticket-4711"));
}

async fn an_unsafe_or_missing_request_id_is_replaced_by_a_fresh_one(db: TestDb) {
    let s = TestServer::start(&db, CONFIG).await;
    let secret = service(&s).await;
    let forged = "x\" level=admin msg=\"forged";
    let given = token_with(&s, &secret, Some(forged)).await;
    assert_ne!(given, forged);
    assert_eq!(given.len(), 32, "a fresh id: {given}");
    assert_eq!(
        last_token_issued(&s).await.metadata.request_id,
        Some(given.clone())
    );
    // Without one, each request gets its own
    let first = token_with(&s, &secret, None).await;
    let second = token_with(&s, &secret, None).await;
    assert_ne!(first, second);
    assert_eq!(last_token_issued(&s).await.metadata.request_id, Some(second));
    // Even an unrouted path answers with an id
    let r = s.http.get(format!("{}/nowhere", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}

on_both_stores!(
    a_callers_request_id_comes_back_and_is_recorded_with_the_tokens_event,
    an_unsafe_or_missing_request_id_is_replaced_by_a_fresh_one,
);
