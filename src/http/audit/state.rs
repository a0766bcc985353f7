//! `GET /audit/tokens/{jti}`, `GET /audit/delegations/{id}` and `GET /audit/subjects/{sub}`: a token's
//! record and explanation, and a delegation's or a subject's state as of a point of the log (`as_of`, a
//! position or an RFC 3339 time; the head when absent).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{auth, invalid_request};
use crate::app::AppRef;
use crate::audit::as_of::{self, Point};
use crate::audit::events::{format_time, parse_time};
use crate::audit::replay::Until;
use crate::oauth::OAuthError;

/// The query of the state endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

/// `as_of` as a point to fold to: digits are a position, anything else an RFC 3339 time.
fn until(as_of: Option<&str>) -> Result<Until, String> {
    match as_of {
        None => Ok(Until::End),
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse()
            .map(Until::Position)
            .map_err(|_| "as_of is too large a position".to_owned()),
        Some(text) => parse_time(text)
            .map(Until::Time)
            .ok_or_else(|| "as_of is a position or an RFC 3339 time".to_owned()),
    }
}

fn not_found(description: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "error_description": description})),
    )
        .into_response()
}

fn answer(mut body: Value, point: Option<Point>) -> Response {
    if let (Some(p), Some(map)) = (point, body.as_object_mut()) {
        map.insert(
            "as_of".into(),
            json!({"position": p.position, "time": format_time(p.at.saturating_mul(1_000_000))}),
        );
    }
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A token's record and explanation: what `consent-ledger audit explain --json` prints.
pub async fn token(
    State(app): State<AppRef>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(jti): Path<String>,
) -> Response {
    let now = app.now();
    if let Err(refused) = auth::authorize(&app, &method, uri.path(), &headers, now).await {
        return refused.into_response();
    }
    match crate::audit::explain::explain(app.store.as_ref(), &jti).await {
        Ok(Some(e)) => answer(e, None),
        Ok(None) => not_found(format!("the ledger holds no token {jti:?}")),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// A delegation as of `as_of`.
pub async fn delegation(
    State(app): State<AppRef>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Response {
    let now = app.now();
    if let Err(refused) = auth::authorize(&app, &method, uri.path(), &headers, now).await {
        return refused.into_response();
    }
    let until = match query
        .map_err(|_| "the query takes as_of alone".to_owned())
        .and_then(|q| until(q.as_of.as_deref()))
    {
        Ok(u) => u,
        Err(problem) => return invalid_request(problem),
    };
    let store = app.store.as_ref();
    let folded = async {
        let Some(related) = as_of::fetch_delegation(store, &id).await? else {
            return Ok(None);
        };
        let point = as_of::point(store, until).await?;
        let state = as_of::fold_streams(store, &as_of::streams(&related), point.position).await?;
        Ok::<_, crate::store::StoreError>(Some((as_of::delegation(&state, &id, point.at), point)))
    };
    match folded.await {
        Ok(Some((Some(view), point))) => answer(view, Some(point)),
        Ok(Some((None, point))) => not_found(format!(
            "delegation {id:?} did not exist yet at position {}",
            point.position
        )),
        Ok(None) => not_found(format!("the ledger holds no delegation {id:?}")),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// A subject as of `as_of`.
pub async fn subject(
    State(app): State<AppRef>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(sub): Path<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Response {
    let now = app.now();
    if let Err(refused) = auth::authorize(&app, &method, uri.path(), &headers, now).await {
        return refused.into_response();
    }
    let until = match query
        .map_err(|_| "the query takes as_of alone".to_owned())
        .and_then(|q| until(q.as_of.as_deref()))
    {
        Ok(u) => u,
        Err(problem) => return invalid_request(problem),
    };
    let store = app.store.as_ref();
    let folded = async {
        let related = as_of::fetch_subject(store, &sub).await?;
        let point = as_of::point(store, until).await?;
        let state = as_of::fold_streams(store, &as_of::streams(&related), point.position).await?;
        Ok::<_, crate::store::StoreError>((as_of::subject(&state, &sub, point.at), point))
    };
    match folded.await {
        Ok((view, point)) => answer(view, Some(point)),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_a_position_or_a_time() {
        assert_eq!(until(None), Ok(Until::End));
        assert_eq!(until(Some("42")), Ok(Until::Position(42)));
        assert_eq!(
            until(Some("2023-11-14T22:13:20Z")),
            Ok(Until::Time(1_700_000_000_000_000))
        );
        assert!(until(Some("")).is_err());
        assert!(until(Some("-1")).is_err());
        assert!(until(Some("99999999999999999999999")).is_err());
    }
}
