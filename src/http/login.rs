//! Placeholder: routes are added here.

use axum::Router;

use crate::app::AppRef;

/// This module's routes.
pub fn routes() -> Router<AppRef> {
    Router::new()
}
