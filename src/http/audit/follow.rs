//! `GET /audit/events` with `Accept: text/event-stream`: the log followed live. Historical events come
//! first, then each new one as its commit becomes durable, as Server-Sent Events whose `id` is the
//! position, so a client that reconnects with `Last-Event-ID` resumes exactly after the last event it
//! received.
//!
//! The follower reads a page only when the client has taken the previous one (the stream is polled as
//! the connection drains), so a slow client holds one page in memory and no more. An idle follower
//! waits for the store's committed position to move (`EventStore::committed`) and sends a heartbeat
//! comment every `audit.heartbeat_seconds`, reading the log again then in case a notification was lost.
//! Each node serves at most `audit.followers_max` followers at once.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use crate::app::AppRef;
use crate::audit::events::{self, Filter};

/// Events a follower reads per page: what one slow client may hold in memory.
pub const FOLLOW_PAGE_MAX: u32 = 100;

/// The position an SSE client asks to resume after (`Last-Event-ID`), when it is one.
pub fn last_event_id(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

/// The follow, holding `permit` until the client goes away.
pub fn follow(app: AppRef, filter: Filter, after: u64, permit: OwnedSemaphorePermit) -> Response {
    let heartbeat = Duration::from_secs(app.config.audit.heartbeat_seconds);
    let mut r = Sse::new(events_after(app, filter, after, heartbeat, permit)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

fn events_after(
    app: AppRef,
    filter: Filter,
    mut after: u64,
    heartbeat: Duration,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let _permit = permit;
        let mut committed = app.store.committed();
        loop {
            // Seen before reading: a commit after this read wakes the wait below.
            committed.mark_unchanged();
            let page = match events::page(app.store.as_ref(), &filter, after, FOLLOW_PAGE_MAX).await {
                Ok(page) => page,
                Err(e) => {
                    // The client reconnects with Last-Event-ID and resumes where it stopped.
                    tracing::warn!(error = %e, "audit follow stopped");
                    yield Ok(Event::default().event("error").data("the ledger could not be read; reconnect"));
                    break;
                }
            };
            for line in &page.lines {
                let Some(position) = line.get("position").and_then(Value::as_u64) else { continue };
                yield Ok(Event::default().id(position.to_string()).data(line.to_string()));
            }
            after = page.walked;
            if page.next.is_some() {
                continue;
            }
            let woken = tokio::select! {
                changed = committed.changed() => Some(changed.is_ok()),
                () = tokio::time::sleep(heartbeat) => None,
            };
            match woken {
                Some(true) => {}
                Some(false) => break, // the store is closing
                None => yield Ok(Event::default().comment("heartbeat")),
            }
        }
    }
}
