//! `GET /metrics` over HTTP, on SQLite and PostgreSQL: not public, and counting what an operator needs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOKEN_CONFIG, TestDb, TestServer};
use serde_json::json;

const ADMIN: &str = "admin-token-admin-token-admin-token-0123";
const SCRAPER: &str = "metrics-token-metrics-token-metrics-01";

async fn scrape(s: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut req = s.http.get(format!("{}/metrics", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the series whose line starts with `series` (name and labels), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

on_both_stores!(metrics_need_a_token_and_count_tokens_requests_and_commits,);

async fn metrics_need_a_token_and_count_tokens_requests_and_commits(db: TestDb) {
    let config = format!("metrics_token = \"{SCRAPER}\"\n{TOKEN_CONFIG}");
    let s = TestServer::start(&db, &config).await;
    assert_eq!(scrape(&s, None).await.0, 401);
    assert_eq!(
        scrape(&s, Some("wrong-token-wrong-token-wrong-token-00")).await.0,
        401
    );
    let (status, before) = scrape(&s, Some(SCRAPER)).await;
    assert_eq!(status, 200);
    assert_eq!(scrape(&s, Some(ADMIN)).await.0, 200);

    let secret = s
        .register(json!({"client_id": "svc", "name": "Svc", "grant_types": ["client_credentials"], "scopes": ["read"]}))
        .await
        .unwrap();
    for _ in 0..3 {
        let (status, _, _) = s
            .post_form(
                "/token",
                Some(("svc", &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = s
        .post_form("/token", Some(("svc", &secret)), &[("grant_type", "password")])
        .await;
    assert_eq!(status, 400);

    let (_, after) = scrape(&s, Some(SCRAPER)).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        grew("tokens_issued_total{grant=\"client_credentials\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        grew("token_requests_refused_total{grant=\"password\",error=\"unauthorized_client\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        grew("http_requests_total{route=\"/token\",method=\"POST\",status=\"200\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        grew("issuance_scopes_total{grant=\"client_credentials\",outcome=\"issued\"}"),
        3.0,
        "{after}"
    );
    assert!(grew("ledger_commit_seconds_count") >= 4.0, "{after}");
    assert!(after.contains("ledger_append_batch_events_bucket"), "{after}");
    assert!(
        after.contains("http_request_duration_seconds_bucket{route=\"/token\""),
        "{after}"
    );
    let head = s.app.store.head().await.unwrap().position as f64;
    assert_eq!(value(&after, "ledger_head_position"), head, "{after}");
    // The database pool: its maximum, and the connections open (idle or in use) within it
    let max = value(&after, "db_pool_connections_max");
    let open = value(&after, "db_pool_connections{state=\"idle\"}")
        + value(&after, "db_pool_connections{state=\"in_use\"}");
    assert!(max >= 1.0 && (1.0..=max).contains(&open), "{after}");
    // Nothing secret: the client secret and tokens never appear
    assert!(!after.contains(&secret));
}
