//! The error enum is the wire protocol: each variant displays exactly its RFC 6749 §5.2 / RFC 7009 code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error response. `error_description` never carries internal details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request: missing or repeated parameter, wrong content type. Fix the request.
    #[error("invalid_request")]
    InvalidRequest(String),
    /// Client authentication failed (401 with `WWW-Authenticate`). Check credentials and method.
    #[error("invalid_client")]
    InvalidClient(String),
    /// The grant or token presented is invalid, expired or revoked. Start the flow again.
    #[error("invalid_grant")]
    InvalidGrant(String),
    /// The client may not use this grant type. Change the client's registration.
    #[error("unauthorized_client")]
    UnauthorizedClient(String),
    /// The server does not implement this grant type.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType(String),
    /// Nothing requested can be granted, or a scope is malformed.
    #[error("invalid_scope")]
    InvalidScope(String),
    /// RFC 8707: the resource is unknown or not allowed for this client.
    #[error("invalid_target")]
    InvalidTarget(String),
    /// RFC 7009: the server cannot revoke this kind of token.
    #[error("unsupported_token_type")]
    UnsupportedTokenType(String),
    /// The user (or the server on the user's behalf) refused the request.
    #[error("access_denied")]
    AccessDenied(String),
    /// The server does not support this `response_type` for this client.
    #[error("unsupported_response_type")]
    UnsupportedResponseType(String),
    /// OpenID Connect: `prompt=none`, and nobody is signed in (or the sign-in is too old or too weak).
    #[error("login_required")]
    LoginRequired(String),
    /// OpenID Connect: `prompt=none`, and the user would have to be asked for consent.
    #[error("consent_required")]
    ConsentRequired(String),
    /// OpenID Connect: `prompt=none`, and some other interaction (a step-up) would be needed.
    #[error("interaction_required")]
    InteractionRequired(String),
    /// RFC 9126: the `request_uri` is unknown, expired, already used, or belongs to another client.
    #[error("invalid_request_uri")]
    InvalidRequestUri(String),
    /// RFC 9449 §5: the DPoP proof is missing where one is required, malformed, or does not match the
    /// request. Send a fresh, correct proof.
    #[error("invalid_dpop_proof")]
    InvalidDpopProof(String),
    /// RFC 9449 §8: the server requires a nonce in DPoP proofs; retry with the one in `DPoP-Nonce`.
    #[error("use_dpop_nonce")]
    UseDpopNonce(String),
    /// RFC 8628 §3.5: the user has not answered the device request yet. Poll again after the interval.
    #[error("authorization_pending")]
    AuthorizationPending(String),
    /// RFC 8628 §3.5: the device polled faster than its interval, which grows by 5 seconds.
    #[error("slow_down")]
    SlowDown(String),
    /// RFC 8628 §3.5: the device code expired before it was redeemed. Start again.
    #[error("expired_token")]
    ExpiredToken(String),
    /// OpenID CIBA Core §13: the hint names no user this server knows, or a disabled one.
    #[error("unknown_user_id")]
    UnknownUserId(String),
    /// OpenID CIBA Core §13: the binding message is too long or holds characters that cannot be shown.
    #[error("invalid_binding_message")]
    InvalidBindingMessage(String),
    /// The server failed; the details are in its log, not in the response. Retry later.
    #[error("server_error")]
    ServerError,
    /// The server is overloaded or its database unavailable. Retry later.
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
}

impl OAuthError {
    /// The HTTP status RFC 6749 gives this error.
    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The human-readable `error_description`, if any.
    pub fn description(&self) -> Option<&str> {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d)
            | OAuthError::UnsupportedTokenType(d)
            | OAuthError::AccessDenied(d)
            | OAuthError::UnsupportedResponseType(d)
            | OAuthError::LoginRequired(d)
            | OAuthError::ConsentRequired(d)
            | OAuthError::InteractionRequired(d)
            | OAuthError::InvalidRequestUri(d)
            | OAuthError::InvalidDpopProof(d)
            | OAuthError::UseDpopNonce(d)
            | OAuthError::AuthorizationPending(d)
            | OAuthError::SlowDown(d)
            | OAuthError::ExpiredToken(d)
            | OAuthError::UnknownUserId(d)
            | OAuthError::InvalidBindingMessage(d) => Some(d),
            OAuthError::ServerError | OAuthError::TemporarilyUnavailable => None,
        }
    }

    /// Logs an internal failure and returns the opaque error the client sees.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> OAuthError {
        tracing::error!(%error, "{context}");
        OAuthError::ServerError
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.to_string() });
        if let Some(d) = self.description() {
            body["error_description"] = json!(d);
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, OAuthError::TemporarilyUnavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        if let OAuthError::InvalidClient(description) = &self {
            headers.insert(header::WWW_AUTHENTICATE, basic_challenge(description));
        }
        response
    }
}

/// The challenge a 401 `invalid_client` carries (RFC 6749 §5.2, RFC 7235 §4.1), naming the OAuth error as
/// RFC 6750 §3 does for bearer tokens, so a client reports `invalid_client` rather than a bare challenge.
fn basic_challenge(description: &str) -> HeaderValue {
    // A quoted-string holds no `"` or `\` unescaped, and a header value only visible ASCII.
    let description: String = description
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    HeaderValue::from_str(&format!(
        "Basic realm=\"consent-ledger\", charset=\"UTF-8\", error=\"invalid_client\", error_description=\"{description}\""
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static("Basic realm=\"consent-ledger\", charset=\"UTF-8\", error=\"invalid_client\"")
    })
}

/// How long a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECONDS: &str = "5";

/// The one mapping of store failures to the wire, for reads and appends alike: what a retry may cure
/// (unreachable, not migrated, a conflicting writer, a failed group commit) is 503
/// `temporarily_unavailable` with `Retry-After`; corrupt data and the rest are `server_error`.
impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store");
        if e.is_transient() {
            OAuthError::TemporarilyUnavailable
        } else {
            OAuthError::ServerError
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_challenge_names_the_error_and_escapes_the_description() {
        let r = OAuthError::InvalidClient("a \"quoted\" \\ word\n".into()).into_response();
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"consent-ledger\", charset=\"UTF-8\", error=\"invalid_client\", \
             error_description=\"a \\\"quoted\\\" \\\\ word\""
        );
    }
}
