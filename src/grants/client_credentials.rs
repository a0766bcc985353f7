//! RFC 6749 §4.4: the client credentials grant. The client is the subject; no user is present, so a
//! consent-requiring scope is issued only on a standing consent in the ledger, and step-up is impossible.

use projections::clients::Client;
use projections::consents::Consent;
use projections::event::AuthContext;
use serde_json::Value;

use super::{GrantType, TokenResponse, issue_access_token};
use crate::app::{App, now};
use crate::issuance::IssuanceRequest;
use crate::oauth::form::Form;
use crate::oauth::{OAuthError, scope};
use crate::store::{self, RowFilter};

/// Issues an access token whose subject is the client itself.
pub async fn grant(app: &App, client: &Client, form: &Form) -> Result<TokenResponse, OAuthError> {
    let limits = &app.config.limits;
    let requested = form
        .get("scope")
        .map(|s| scope::parse(s, limits.scopes_per_request_max, limits.scope_len_max))
        .transpose()?;
    let authorization_details = match form.get("authorization_details") {
        Some(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array)
            .ok_or_else(|| OAuthError::InvalidRequest("authorization_details must be a JSON array".into()))?,
        None => Value::Null,
    };
    let subject = client.spec.client_id.as_str();
    // Fetch first, then decide: the consents this machine subject holds, for the pure decision.
    let consents: Vec<Consent> = store::find(
        app.store.as_ref(),
        RowFilter {
            subject: Some(subject),
            client_id: Some(subject),
            ..RowFilter::default()
        },
    )
    .await?;
    let policy = app.policy();
    let now = now();
    let decision = super::decide(
        app,
        &policy,
        IssuanceRequest {
            client,
            subject,
            subject_attributes: &client.spec.metadata,
            requested: requested.as_deref(),
            resource: form.get("resource"),
            grant_type: GrantType::ClientCredentials.name(),
            user_present: false,
            auth: &AuthContext::default(),
            delegation: None,
            authorization_details: &authorization_details,
            consents: &consents,
            approved_now: &[],
            fresh_since: None,
            external: &Default::default(),
            now,
        },
    )
    .await?;
    issue_access_token(
        app,
        &policy,
        client,
        subject,
        GrantType::ClientCredentials,
        decision,
        None,
    )
    .await
}
