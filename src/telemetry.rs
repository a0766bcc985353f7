//! The server's metrics, rendered at `GET /metrics` in the Prometheus text format. Code records through
//! the `metrics` facade (`metrics::counter!` and friends) wherever something happens; one recorder per
//! process collects it, so every app in a process (the tests run many) shares one set of series.

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the latency histograms, in seconds: a token answer takes milliseconds, a commit
/// with fsync about one.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the batch-size histogram, in events per group commit.
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// The process's recorder, installed the first time anyone asks; `None` when another recorder was
/// installed first (then `/metrics` has nothing of ours to show).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("ledger_append_batch_events".into()), EVENTS_BUCKETS)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Installs the recorder, so what happens from now on is counted.
pub fn install() {
    if handle().is_none() {
        tracing::warn!("another metrics recorder is installed; /metrics will be empty");
    }
}

/// Every series, in the Prometheus text exposition format.
pub fn render() -> String {
    match handle() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// A monotonic instant for timing what a histogram records; never for a decision.
#[allow(clippy::disallowed_methods)] // durations for metrics are what a monotonic clock is for
pub fn stopwatch() -> Instant {
    Instant::now()
}

tokio::task_local! {
    /// The id of the request whose handler is running (`http/request_id.rs` sets it).
    static REQUEST_ID: String;
}

/// Runs `work` as part of the request `id`: its appends record the id, its log lines carry it.
pub async fn in_request<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The id of the request this code runs for, if it runs for one.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
