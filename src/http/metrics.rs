//! `GET /metrics` (Prometheus text format) and the layer that counts and times every routed request.
//!
//! Not public: the scrape needs `Authorization: Bearer` with the `metrics_token` (a token that can do
//! nothing else, for the scraper) or the admin token; with neither configured the route answers 404.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppRef;
use crate::oauth::client_auth::secrets_eq;

/// `GET /metrics`.
pub async fn metrics(State(app): State<AppRef>, headers: HeaderMap) -> Response {
    let tokens: Vec<&str> = [
        app.config.metrics_token.as_deref(),
        app.config.admin_token.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if tokens.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not enabled: set metrics_token",
        )
            .into_response();
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Every configured token is compared, so the time taken does not say which one matched.
    let matched = given.is_some_and(|g| {
        tokens
            .iter()
            .fold(false, |any, t| secrets_eq(t.as_bytes(), g.as_bytes()) | any)
    });
    if !matched {
        let mut r = (StatusCode::UNAUTHORIZED, "a metrics bearer token is required").into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    // Read now rather than on every append: a key lookup per scrape.
    if let Ok(head) = app.store.head().await {
        metrics::gauge!("ledger_head_position").set(head.position as f64);
    }
    let pool = app.store.connections();
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.open.saturating_sub(pool.idle)));
    metrics::gauge!("db_pool_connections_max").set(f64::from(pool.max));
    let mut r = crate::telemetry::render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Counts every routed request by route template, method and status, and times it by route.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = crate::telemetry::stopwatch();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}
