//! RFC 6749 §4.4: the client credentials grant. The client is the subject; no user, no consent.

use projections::clients::Client;

use super::{GrantType, TokenResponse, issue_access_token};
use crate::app::{App, now};
use crate::issuance::{self, IssuanceRequest};
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};

/// Issues an access token whose subject is the client itself.
pub async fn grant(app: &App, client: &Client, form: &Form) -> Result<TokenResponse, OAuthError> {
    let limits = &app.config.limits;
    let requested = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let decision = issuance::decide(
        &app.policy,
        &IssuanceRequest {
            client,
            requested: requested.as_deref(),
            resource: form.get("resource"),
            grant_type: GrantType::ClientCredentials.name(),
            now: now(),
        },
    )?;
    issue_access_token(
        app,
        client,
        &client.spec.client_id,
        GrantType::ClientCredentials,
        decision,
        None,
    )
    .await
}
