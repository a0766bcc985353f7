//! `GET /audit/events`: the ledger's events as NDJSON, one page at a time, filtered; the next page is
//! named by a `Link: <…>; rel="next"` header, absent once a page reaches the end of the log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{auth, follow, invalid_request};
use crate::app::AppRef;
use crate::audit::events::{self, Filter, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::oauth::OAuthError;

/// The NDJSON media type of every page.
pub const NDJSON: &str = "application/x-ndjson";

/// The query of `GET /audit/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after: Option<u64>,
    limit: Option<u32>,
    stream: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl EventsQuery {
    /// The filter, or what is wrong with the query.
    fn filter(&self) -> Result<Filter, String> {
        let time = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| events::parse_time(t).ok_or_else(|| format!("{name} must be an RFC 3339 time")))
                .transpose()
        };
        Ok(Filter {
            stream: self.stream.clone(),
            event_type: self.event_type.clone(),
            subject: self.subject.clone(),
            client_id: self.client_id.clone(),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            through: None,
        })
    }

    /// The query of the page after `after`, the same otherwise.
    fn next(&self, after: u64, limit: u32) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("after", &after.to_string());
        q.append_pair("limit", &limit.to_string());
        for (name, value) in [
            ("stream", &self.stream),
            ("type", &self.event_type),
            ("subject", &self.subject),
            ("client_id", &self.client_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
        q.finish()
    }
}

/// Whether the client asks for Server-Sent Events rather than a page.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// 503: this node follows as many clients as it may.
fn too_many_followers() -> Response {
    let mut r = (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": "too_many_followers",
            "error_description": "this node follows as many clients as audit.followers_max allows; retry later",
        })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Answers one page of events (or, with `Accept: text/event-stream`, follows the log live).
pub async fn events(
    State(app): State<AppRef>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let now = app.now();
    if let Err(refused) = auth::authorize(&app, &method, uri.path(), &headers, now).await {
        return refused.into_response();
    }
    let Ok(Query(query)) = query else {
        return invalid_request(
            "the query takes after, limit (1 to 1000), stream, type, subject, client_id, from and to",
        );
    };
    let filter = match query.filter() {
        Ok(f) => f,
        Err(problem) => return invalid_request(problem),
    };
    let limit = query.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return invalid_request(format!("limit must be 1 to {PAGE_LIMIT_MAX}"));
    }
    if wants_event_stream(&headers) {
        let Ok(permit) = app.audit_followers.clone().try_acquire_owned() else {
            return too_many_followers();
        };
        let after = follow::last_event_id(&headers).unwrap_or(query.after.unwrap_or(0));
        return follow::follow(app, filter, after, permit);
    }
    let page = match events::page(app.store.as_ref(), &filter, query.after.unwrap_or(0), limit).await {
        Ok(p) => p,
        Err(e) => return OAuthError::from(e).into_response(),
    };
    let mut body = String::new();
    for line in &page.lines {
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(after) = page.next
        && let Ok(link) = HeaderValue::from_str(&format!(
            "</audit/events?{}>; rel=\"next\"",
            query.next(after, limit)
        ))
    {
        h.insert(header::LINK, link);
    }
    r
}
