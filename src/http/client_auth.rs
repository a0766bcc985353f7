//! Authenticates the client calling an endpoint: parse, load the registration, verify, refuse replays.

use axum::http::HeaderMap;
use projections::clients::Client;
use projections::event::UnixSeconds;

use crate::app::App;
use crate::oauth::OAuthError;
use crate::oauth::client_auth::{AUTHENTICATION_FAILED, presented, verify};
use crate::oauth::form::Form;
use crate::store;

/// The registered, enabled client the request proves to be, or `invalid_client`.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    form: &Form,
    endpoint: &str,
    now: UnixSeconds,
) -> Result<Client, OAuthError> {
    let presented = presented(headers, form)?;
    let client: Option<Client> = store::get(app.store.as_ref(), presented.client_id()).await?;
    if let Some(used) = verify(
        &presented,
        client.as_ref(),
        &app.assertion_audiences(endpoint),
        now,
    )? {
        let key = format!("{}:{}", presented.client_id(), used.jti);
        if !app.store.claim_once(&key, used.expires_at, now).await? {
            return Err(OAuthError::InvalidClient(
                "client_assertion jti was already used".into(),
            ));
        }
    }
    client.ok_or_else(|| OAuthError::InvalidClient(AUTHENTICATION_FAILED.into()))
}
