//! The HTTP edge: routes, and nothing that decides.

mod health;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::store::EventStore;

/// What every handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}
