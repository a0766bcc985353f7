//! The audit API: the ledger's events, token explanations and past state, for auditors (see
//! [`auth`] for who that is). Read-only: nothing here appends.

pub mod auth;
mod events;
mod follow;
mod state;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppRef;

/// The audit routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/audit/events", get(events::events))
        .route("/audit/tokens/{jti}", get(state::token))
        .route("/audit/delegations/{id}", get(state::delegation))
        .route("/audit/subjects/{sub}", get(state::subject))
}

/// A request the audit API cannot read: 400 `invalid_request`, saying what is wrong.
fn invalid_request(description: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_request", "error_description": description.into()})),
    )
        .into_response()
}
