//! Who may read the audit API: the holder of an active access token granted `audit` (issued by client
//! credentials to a client registered as an auditor, which it must still be), or the admin token.
//!
//! [`authorize`] is a plain function so every audit route (and any added later) calls the same check
//! first: `let auditor = auth::authorize(&app, &method, uri.path(), &headers, now).await?;`. Errors
//! follow RFC 6750 §3 for `Bearer` and RFC 9449 §7.1 for DPoP-bound tokens; a refusal carries no data.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use projections::event::UnixSeconds;

use super::super::dpop;
use crate::access_tokens;
use crate::app::App;
use crate::issuance::AUDIT_SCOPE;
use crate::oauth::OAuthError;
use crate::oauth::client_auth::secrets_eq;
use crate::oauth::dpop::SIGNING_ALGS;

/// Who is reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auditor {
    /// The operator, with the configured admin token.
    Admin,
    /// An auditor client, with an access token granted `audit`.
    Client { client_id: String, jti: String },
}

/// Why a request may not read the audit API.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No credential, or one in a scheme this API does not take (401, the challenges alone).
    #[error("an auditor's access token or the admin token is required")]
    Missing,
    /// A token that is not an active access token, or a DPoP-bound one without its proof (401).
    #[error("{description}")]
    InvalidToken {
        dpop: bool,
        error: &'static str,
        description: String,
    },
    /// An active token that does not open the audit API (403 `insufficient_scope`).
    #[error("{0}")]
    InsufficientScope(&'static str),
    /// The ledger could not be read (503, as everywhere).
    #[error(transparent)]
    Unavailable(OAuthError),
}

/// The `WWW-Authenticate` challenges: both schemes, the failed one naming its error (and, for
/// `insufficient_scope`, the scope needed).
fn challenges(failed: Option<(bool, &str, &str)>, scope: Option<&str>) -> Vec<HeaderValue> {
    let error = |dpop: bool| match failed {
        Some((d, error, description)) if d == dpop => {
            let scope = scope.map(|s| format!(" scope=\"{s}\",")).unwrap_or_default();
            format!(" error=\"{error}\", error_description=\"{description}\",{scope}")
        }
        _ => String::new(),
    };
    let bearer = format!("Bearer{}", error(false));
    let dpop = format!("DPoP{} algs=\"{}\"", error(true), SIGNING_ALGS.join(" "));
    [bearer.trim_end_matches(',').to_owned(), dpop]
        .iter()
        .filter_map(|v| HeaderValue::from_str(v).ok())
        .collect()
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        if let Refused::Unavailable(e) = self {
            return e.into_response();
        }
        let (status, error, failed, scope) = match &self {
            Refused::Unavailable(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Refused::Missing => (StatusCode::UNAUTHORIZED, "unauthorized", None, None),
            Refused::InvalidToken { dpop, error, .. } => {
                (StatusCode::UNAUTHORIZED, *error, Some(*dpop), None)
            }
            Refused::InsufficientScope(_) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                Some(false),
                Some(AUDIT_SCOPE),
            ),
        };
        let description = self.to_string();
        let mut r = (
            status,
            Json(serde_json::json!({"error": error, "error_description": description})),
        )
            .into_response();
        let named = failed.map(|dpop| (dpop, error, description.as_str()));
        for challenge in challenges(named, scope) {
            r.headers_mut().append(header::WWW_AUTHENTICATE, challenge);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Refused::Unavailable(OAuthError::from(e))
    }
}

/// The credential in `Authorization`: the token, and whether it came as `DPoP`.
fn presented(headers: &HeaderMap) -> Option<(bool, &str)> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((false, token))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((true, token))
    } else {
        None
    }
}

/// Checks the request's credential for the audit resource at `path` (the DPoP proof's `htu` is the
/// issuer followed by it), with the clock read once by the caller.
pub async fn authorize(
    app: &App,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    now: UnixSeconds,
) -> Result<Auditor, Refused> {
    let Some((as_dpop, token)) = presented(headers) else {
        return Err(Refused::Missing);
    };
    if !as_dpop
        && let Some(admin) = app.config.admin_token.as_deref()
        && secrets_eq(admin.as_bytes(), token.as_bytes())
    {
        return Ok(Auditor::Admin);
    }
    let invalid = |dpop: bool, error: &'static str, description: &str| Refused::InvalidToken {
        dpop,
        error,
        description: description.to_owned(),
    };
    let proof = match as_dpop {
        false => None,
        true => {
            let url = format!("{}{path}", app.config.issuer);
            match dpop::check(app, headers, method.as_str(), &url, Some(token), now).await {
                Ok(Some(proof)) => Some(proof),
                Ok(None) => {
                    return Err(invalid(
                        true,
                        "invalid_dpop_proof",
                        "the DPoP scheme needs a DPoP proof",
                    ));
                }
                Err(e @ (OAuthError::InvalidDpopProof(_) | OAuthError::UseDpopNonce(_))) => {
                    let error = match e {
                        OAuthError::UseDpopNonce(_) => "use_dpop_nonce",
                        _ => "invalid_dpop_proof",
                    };
                    return Err(invalid(true, error, e.description().unwrap_or_default()));
                }
                Err(e) => return Err(Refused::Unavailable(e)),
            }
        }
    };
    let found = match access_tokens::find(app.store.as_ref(), &app.config.issuer, token, now).await? {
        Some(f) if f.active => f,
        _ => {
            return Err(invalid(
                as_dpop,
                "invalid_token",
                "the access token is not active",
            ));
        }
    };
    // A bound token is accepted only with a proof by its key (RFC 9449 §7.1).
    match (&found.token.dpop_jkt, &proof) {
        (None, None) => {}
        (Some(bound), Some(proof)) if *bound == proof.jkt => match dpop::claim(app, proof, now).await {
            Ok(()) => {}
            Err(e @ OAuthError::InvalidDpopProof(_)) => {
                return Err(invalid(
                    true,
                    "invalid_dpop_proof",
                    e.description().unwrap_or_default(),
                ));
            }
            Err(e) => return Err(Refused::Unavailable(e)),
        },
        (Some(_), None) => {
            return Err(invalid(
                false,
                "invalid_token",
                "the access token is bound to a DPoP key; present it with the DPoP scheme and a proof",
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                true,
                "invalid_token",
                "the DPoP proof's key is not the one the access token is bound to",
            ));
        }
    }
    if !found.token.scopes.iter().any(|s| s == AUDIT_SCOPE) {
        return Err(Refused::InsufficientScope("the token was not granted audit"));
    }
    // The operator may have unmarked the client since: its tokens stop opening the API at once.
    if !found.client.as_ref().is_some_and(|c| c.spec.auditor) {
        return Err(Refused::InsufficientScope(
            "the token's client is no longer registered as an auditor",
        ));
    }
    Ok(Auditor::Client {
        client_id: found.token.client_id,
        jti: found.token.jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_and_dpop_credentials_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  tok "));
        assert_eq!(presented(&h), Some((false, "tok")));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("DPoP tok"));
        assert_eq!(presented(&h), Some((true, "tok")));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn insufficient_scope_names_the_audit_scope() {
        let r = Refused::InsufficientScope("the token was not granted audit").into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let challenges: Vec<_> = r
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges[0].starts_with("Bearer error=\"insufficient_scope\"")
                && challenges[0].ends_with("scope=\"audit\""),
            "{challenges:?}"
        );
        assert!(challenges[1].starts_with("DPoP algs="), "{challenges:?}");
    }
}
