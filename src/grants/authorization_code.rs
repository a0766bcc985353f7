//! RFC 6749 §4.1.3: redeeming an authorization code, with RFC 7636 PKCE.

use projections::clients::Client;

use super::TokenResponse;
use crate::app::App;
use crate::oauth::OAuthError;
use crate::oauth::form::Form;

/// Exchanges a code for tokens.
pub async fn grant(_app: &App, _client: &Client, _form: &Form) -> Result<TokenResponse, OAuthError> {
    Err(OAuthError::UnsupportedGrantType("authorization_code is not available yet".into()))
}
