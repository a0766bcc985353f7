//! The `http` authorizer through `client_credentials`, on SQLite and PostgreSQL, against a small AuthZEN
//! decision point started in the test: allow, deny with a reason, conditions, a timeout, and a decision
//! point that cannot be reached. Every failure denies, and the decision trail in the ledger says why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use common::{TestDb, TestServer};
use serde_json::{Value, json};

const TIMEOUT_MS: u64 = 300;
const PDP_TOKEN: &str = "pdp-token-0123456789";

/// What the decision point received: the Authorization header and the body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// An AuthZEN evaluation endpoint: allows `read`, denies `write` with a reason, allows `ttl` for 60
/// seconds, and answers `slow` long after the authorizer's timeout.
async fn evaluation(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().push((auth, body.clone()));
    let answer = match body["resource"]["id"].as_str().unwrap() {
        "read" => json!({"decision": true}),
        "write" => json!({"decision": false, "context": {"reason": "write needs approval from finance"}}),
        "ttl" => json!({"decision": true, "context": {"conditions": {"ttl_seconds": 60}}}),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json!({"decision": true})
        }
        _ => json!({"decision": false}),
    };
    Json(answer)
}

/// Starts the decision point on an ephemeral port; returns its evaluation url and what it receives.
async fn start_pdp() -> (String, Seen) {
    let seen = Seen::default();
    let router = axum::Router::new()
        .route("/access/v1/evaluation", axum::routing::post(evaluation))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/access/v1/evaluation", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, seen)
}

/// A url on which nothing listens: a port just bound, then released.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/access/v1/evaluation")
}

fn config(url: &str) -> String {
    format!(
        r#"
admin_token = "admin-token-admin-token-admin-token-0123"
[tokens]
access_token_seconds = 600

[[authorizers]]
name = "pdp"
type = "http"
url = "{url}"
timeout_ms = {TIMEOUT_MS}
bearer_token = "{PDP_TOKEN}"
[[authorizers]]
name = "open"
type = "allow"

[[scopes]]
name = "read"
authorizers = ["pdp"]
[[scopes]]
name = "write"
authorizers = ["pdp"]
[[scopes]]
name = "ttl"
authorizers = ["pdp"]
[[scopes]]
name = "slow"
authorizers = ["pdp"]
[[scopes]]
name = "open"
authorizers = ["open"]
"#
    )
}

async fn machine_client(s: &TestServer, id: &str) -> String {
    s.register(json!({
        "client_id": id, "name": id, "kind": "first_party", "audience": "machine",
        "grant_types": ["client_credentials"], "scopes": ["read", "write", "ttl", "slow", "open"],
    }))
    .await
    .unwrap()
}

async fn token(s: &TestServer, id: &str, secret: &str, scope: &str) -> (u16, Value) {
    let (status, _, body) = s
        .post_form(
            "/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    (status, body)
}

/// The decision trail the ledger recorded with the TokenIssued event of `jti`, by scope.
async fn trail(s: &TestServer, jti: &str) -> Vec<Value> {
    let events = s.app.store.read_from(1, 1000).await.unwrap();
    let issued = events
        .iter()
        .filter(|e| e.event_type == "TokenIssued")
        .map(|e| e.decode().unwrap().event)
        .find_map(|e| match e {
            projections::Event::TokenIssued(t) if t.jti == jti => Some(t),
            _ => None,
        })
        .unwrap();
    issued.decision_trail["scopes"].as_array().unwrap().clone()
}

fn scope_line<'a>(trail: &'a [Value], scope: &str) -> &'a Value {
    trail.iter().find(|t| t["scope"] == scope).unwrap()
}

fn claims(body: &Value) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(body["access_token"].as_str().unwrap())
        .unwrap()
        .claims
}

#[allow(clippy::disallowed_methods)] // the timeout is real time spent waiting on a socket
async fn the_decision_point_allows_denies_limits_and_times_out(db: TestDb) {
    // Given a decision point and an http authorizer asking it about four scopes
    let (url, seen) = start_pdp().await;
    let s = TestServer::start(&db, &config(&url)).await;
    let secret = machine_client(&s, "billing").await;

    // When a token is requested for all four
    let started = Instant::now();
    let (status, body) = token(&s, "billing", &secret, "read write ttl slow").await;
    let elapsed = started.elapsed();

    // Then it holds the allowed and the limited scope, for the limited scope's 60 seconds
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read ttl");
    let claims = claims(&body);
    assert_eq!(claims["scope"], "read ttl");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
    // and the slow answer was not waited for
    assert!(elapsed < Duration::from_secs(3), "the request took {elapsed:?}");

    // and the ledger's decision trail says why each scope went the way it did
    let trail = trail(&s, claims["jti"].as_str().unwrap()).await;
    let write = scope_line(&trail, "write");
    assert_eq!(write["outcome"], "denied");
    assert_eq!(write["reason"], "write needs approval from finance");
    assert_eq!(write["authorizers"][0]["name"], "pdp");
    assert_eq!(write["authorizers"][0]["type"], "http");
    let slow = scope_line(&trail, "slow");
    assert_eq!(slow["outcome"], "denied");
    assert_eq!(
        slow["reason"],
        format!("http: decision point timed out after {TIMEOUT_MS} ms")
    );
    assert_eq!(scope_line(&trail, "read")["outcome"], "issued");
    assert_eq!(
        scope_line(&trail, "ttl")["combined"]["conditions"]["ttl_seconds"],
        60
    );

    // and the decision point was asked once per scope, in the AuthZEN shape, with the bearer token
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    let (auth, read) = seen.iter().find(|(_, b)| b["resource"]["id"] == "read").unwrap();
    assert_eq!(auth.as_deref(), Some(format!("Bearer {PDP_TOKEN}").as_str()));
    assert_eq!(read["subject"], json!({"type": "user", "id": "billing"}));
    assert_eq!(read["resource"]["type"], "scope");
    assert_eq!(
        read["resource"]["properties"],
        json!({"template": "read", "value": null})
    );
    assert_eq!(read["action"], json!({"name": "issue_token"}));
    assert_eq!(read["context"]["client_id"], "billing");
    assert_eq!(read["context"]["client_kind"], "first_party");
    assert_eq!(read["context"]["grant_type"], "client_credentials");
    assert_eq!(read["context"]["user_present"], false);

    // and the token never reached the ledger, though the policy holding it was published there
    let events = s.app.store.read_from(1, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "PolicyPublished"));
    assert!(
        !events.iter().any(|e| e.payload.contains(PDP_TOKEN)),
        "the bearer token reached the ledger"
    );
}

async fn an_unreachable_decision_point_denies(db: TestDb) {
    // Given an http authorizer pointing at a port nothing listens on
    let s = TestServer::start(&db, &config(&closed_url().await)).await;
    let secret = machine_client(&s, "billing").await;

    // When only scopes it decides are requested, then nothing is left and the request is refused
    let (status, body) = token(&s, "billing", &secret, "read").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");

    // When another scope is requested with them, then that one alone is issued, and the trail says why
    // the others were denied, without the url or the token
    let (status, body) = token(&s, "billing", &secret, "read ttl open").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "open");
    let trail = trail(&s, claims(&body)["jti"].as_str().unwrap()).await;
    for scope in ["read", "ttl"] {
        let line = scope_line(&trail, scope);
        assert_eq!(line["outcome"], "denied");
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.starts_with("http: decision point failed: "), "{reason}");
        assert!(
            !reason.contains("127.0.0.1") && !reason.contains(PDP_TOKEN),
            "{reason}"
        );
    }
}

on_both_stores!(
    the_decision_point_allows_denies_limits_and_times_out,
    an_unreachable_decision_point_denies,
);
